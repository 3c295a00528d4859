-- Webhooks: the endpoints each client registers, and an outbox of deliveries. A delivery is
-- written when its event happens and leaves the outbox only by succeeding or by running out of
-- attempts, so a restart loses none; each process claims due deliveries with a lease, so that
-- several processes on one database deliver each once.

CREATE TABLE webhook_endpoints (
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    -- A JSON array of event names.
    events TEXT NOT NULL,
    -- Signs each delivery (HMAC-SHA256), so it is kept sealed, not hashed.
    secret_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, id)
);

CREATE TABLE webhook_deliveries (
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    event TEXT NOT NULL,
    -- The exact body sent, every attempt the same.
    body TEXT NOT NULL,
    -- `pending`, `delivered` or `failed` (out of attempts).
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- A process attempting it holds it until then.
    leased_until BIGINT,
    last_status_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, endpoint_id)
        REFERENCES webhook_endpoints (client_id, id) ON DELETE CASCADE
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_client ON webhook_deliveries (client_id, created_at);
