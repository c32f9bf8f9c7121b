/** The parser ships no types; it returns prom2json's shape (one entry per metric family). */
declare module "parse-prometheus-text-format" {
  export default function parsePrometheusTextFormat(text: string): unknown[];
}
