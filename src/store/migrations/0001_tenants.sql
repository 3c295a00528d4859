-- Tenants, their users and sessions, and what they did. One schema for SQLite and PostgreSQL:
-- only types both know (TEXT, BIGINT, DOUBLE PRECISION); times are milliseconds since the Unix
-- epoch (UTC); booleans are 0/1; JSON documents are TEXT. Every table of tenant data has the
-- client's id in its primary key.

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tier TEXT NOT NULL,
    status TEXT NOT NULL,
    -- SHA-256 of the API key (domain-separated), never the key itself.
    api_key_hash TEXT NOT NULL UNIQUE,
    -- The API secret signs the client's JWTs, so it is kept encrypted (AES-256-GCM under the
    -- server's master key), not hashed.
    api_secret_sealed TEXT NOT NULL,
    per_hour BIGINT NOT NULL,
    per_day BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    credentials_rotated_at BIGINT NOT NULL
);

CREATE TABLE users (
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    external_user_id TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    profile TEXT NOT NULL,
    metadata TEXT NOT NULL,
    is_active BIGINT NOT NULL,
    face_auth_enabled BIGINT NOT NULL,
    is_enrolled BIGINT NOT NULL,
    enrollment_completed_at BIGINT,
    last_recognition_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, external_user_id)
);

CREATE INDEX users_by_creation ON users (client_id, created_at);

CREATE TABLE enrollments (
    client_id TEXT NOT NULL,
    id TEXT NOT NULL,
    external_user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    target_samples BIGINT NOT NULL,
    quality_score DOUBLE PRECISION,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, external_user_id)
        REFERENCES users (client_id, external_user_id) ON DELETE CASCADE
);

CREATE INDEX enrollments_by_user ON enrollments (client_id, external_user_id);

-- One row per session issued over REST. A user's sessions go with the user.
CREATE TABLE sessions (
    client_id TEXT NOT NULL,
    id TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    external_user_id TEXT,
    enrollment_id TEXT,
    session_type TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    required_blinks BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    opened_at BIGINT,
    completed_at BIGINT,
    frames_processed BIGINT,
    liveness_verified BIGINT,
    liveness_score DOUBLE PRECISION,
    blinks_detected BIGINT,
    motion_events BIGINT,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, external_user_id)
        REFERENCES users (client_id, external_user_id) ON DELETE CASCADE
);

CREATE INDEX sessions_by_creation ON sessions (client_id, created_at);

-- Requests a client made in each hour and each day, for its rate limits; shared by every
-- process on the same database.
CREATE TABLE client_usage (
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    window_kind TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (client_id, window_kind, window_start)
);

-- Authentication successes and failures, session creation, credential rotation. A failure
-- whose credentials name no client is kept under the client id ''.
CREATE TABLE audit_logs (
    client_id TEXT NOT NULL,
    id TEXT NOT NULL,
    event TEXT NOT NULL,
    success BIGINT NOT NULL,
    detail TEXT NOT NULL,
    remote_addr TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, id)
);

CREATE INDEX audit_logs_by_client ON audit_logs (client_id, created_at);
