import type { Migration } from './migrations.js';

/**
 * The run's state is its latest event's: `to_state`, plus the `last_error` and `state_at` (when
 * the state or error last changed) that event left behind. Writing an event no longer rewrites a
 * second table and its state index on every commit; `run_states` stays, as a view, for every query
 * that reads it. Kept in a file of its own so other migrations can be added beside it.
 */
export const EVENT_STATE_MIGRATIONS: Migration[] = [
  {
    version: 17,
    name: 'events: the run state is the latest event (run_states becomes a view)',
    sql: `
ALTER TABLE events ADD COLUMN last_error TEXT;
ALTER TABLE events ADD COLUMN state_at TEXT;
-- Each run's latest event takes over what run_states held (its to_state already is the state).
UPDATE events SET
  last_error = (SELECT s.last_error FROM run_states s WHERE s.run_id = events.run_id),
  state_at = (SELECT s.updated_at FROM run_states s WHERE s.run_id = events.run_id)
WHERE event_id IN (SELECT MAX(event_id) FROM events GROUP BY run_id);
DROP TABLE run_states;
CREATE VIEW run_states AS
  SELECT r.run_id AS run_id, e.to_state AS current_state, e.last_error AS last_error, COALESCE(e.state_at, e.created_at) AS updated_at
  FROM runs r JOIN events e ON e.event_id = (SELECT MAX(x.event_id) FROM events x WHERE x.run_id = r.run_id);
`,
  },
];
