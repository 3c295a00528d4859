-- What identity needs besides the templates themselves.

-- Bumped in the transaction of every change to a client's templates (an enrollment, a user
-- deleted), so that each process knows when the gallery it holds in memory is stale.
ALTER TABLE clients ADD COLUMN gallery_version BIGINT NOT NULL DEFAULT 0;

-- The key of the seed's `encrypted_data` is SHA-256 of the API key, which is stored only as
-- a domain-separated hash; that key is kept sealed (AES-256-GCM under the master key) beside
-- it. Clients whose credentials were made before this migration have none until they rotate.
ALTER TABLE clients ADD COLUMN result_key_sealed TEXT;

-- How an issued session's identity step ended, as a JSON object (matched user, confidence,
-- error code); the sealed templates stay in `face_templates`.
ALTER TABLE sessions ADD COLUMN outcome TEXT;

-- Whether a template may match its user: a live enrollment's always; a reference photo's only
-- where the tenant asked (until the user has a live enrollment).
ALTER TABLE face_templates ADD COLUMN for_matching BIGINT NOT NULL DEFAULT 1;
