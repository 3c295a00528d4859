-- The face-service processes sharing this database, each alive while its heartbeat is fresh,
-- and which process holds each open session, so that a surviving process can end the sessions
-- of one that died.

CREATE TABLE processes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    -- The address it listens on, as it bound it.
    address TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    -- Set once: by the process itself when it stops, or by the process that found it dead.
    stopped_at BIGINT,
    -- `stopped` or `reaped`.
    stop_reason TEXT
);

CREATE INDEX processes_alive ON processes (stopped_at, heartbeat_at);

ALTER TABLE sessions ADD COLUMN process_id TEXT;

CREATE INDEX sessions_by_process ON sessions (process_id, status);
