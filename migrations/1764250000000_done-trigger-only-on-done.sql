-- Up Migration

-- The guard that keeps done final only has work to do on a task that is done: say so in
-- the trigger's WHEN, so an update of any other task (every claim and every settlement)
-- does not call the function at all. Same function, same refusal.
DROP TRIGGER tasks_done_is_final ON tasks;
CREATE TRIGGER tasks_done_is_final BEFORE UPDATE ON tasks
  FOR EACH ROW WHEN (OLD.state = 'done') EXECUTE FUNCTION tasks_keep_done_final();

-- Down Migration
DROP TRIGGER tasks_done_is_final ON tasks;
CREATE TRIGGER tasks_done_is_final BEFORE UPDATE ON tasks
  FOR EACH ROW EXECUTE FUNCTION tasks_keep_done_final();
