# syntax=docker/dockerfile:1
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
# git for workspaces; bubblewrap sandboxes workers (the container needs a seccomp and
# AppArmor profile that lets it create namespaces, see README "Security model"); tini
# reaps worker processes and forwards signals.
RUN apt-get update \
  && apt-get install -y --no-install-recommends git bubblewrap tini ca-certificates \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production OVERSEER_HOME=/data PORT=3000
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json app.yml ./
COPY bin ./bin
COPY migrations ./migrations
RUN useradd --system --create-home --home-dir /home/overseer overseer \
  && mkdir -p /data && chown overseer:overseer /data
USER overseer
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "fetch('http://127.0.0.1:'+process.env.PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=4", "bin/overseer.js"]
CMD ["start"]
