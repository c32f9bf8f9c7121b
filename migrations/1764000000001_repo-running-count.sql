-- Up Migration

-- How many of the repository's tasks are running, kept by a trigger on every change of a
-- task's state. Claiming locks the repository row and re-checks this count against the
-- repository's concurrency; a claimer that waited for that lock sees the count the other
-- claim committed (PostgreSQL re-evaluates a locked row's conditions on its newest
-- version), so concurrent runners cannot overshoot the limit.
ALTER TABLE repos ADD COLUMN running integer NOT NULL DEFAULT 0
  CONSTRAINT repos_running_not_negative CHECK (running >= 0);

UPDATE repos SET running = (
  SELECT count(*) FROM tasks WHERE tasks.repo_id = repos.id AND tasks.state = 'running');

CREATE FUNCTION tasks_count_running() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND OLD.repo_id = NEW.repo_id THEN
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state = 'running' THEN
    UPDATE repos SET running = running - 1 WHERE id = OLD.repo_id;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.state = 'running' THEN
    UPDATE repos SET running = running + 1 WHERE id = NEW.repo_id;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_count_running
  AFTER INSERT OR DELETE OR UPDATE OF state, repo_id ON tasks
  FOR EACH ROW EXECUTE FUNCTION tasks_count_running();

-- TRUNCATE fires no row triggers.
CREATE FUNCTION tasks_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE repos SET running = 0 WHERE running <> 0;
  RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_truncated AFTER TRUNCATE ON tasks
  FOR EACH STATEMENT EXECUTE FUNCTION tasks_truncated();

-- Down Migration
DROP TRIGGER tasks_truncated ON tasks;
DROP FUNCTION tasks_truncated();
DROP TRIGGER tasks_count_running ON tasks;
DROP FUNCTION tasks_count_running();
ALTER TABLE repos DROP COLUMN running;
