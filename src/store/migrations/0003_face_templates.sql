-- Face templates: biometric data. The store only ever holds them sealed (AES-256-GCM, by the
-- caller, under the server's template key), and a user's templates go with the user.

CREATE TABLE face_templates (
    client_id TEXT NOT NULL,
    external_user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    -- `live` (from an enrollment session) or `photo` (from a reference photo).
    source TEXT NOT NULL,
    template_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, external_user_id)
        REFERENCES users (client_id, external_user_id) ON DELETE CASCADE
);

CREATE INDEX face_templates_by_user ON face_templates (client_id, external_user_id, created_at);
