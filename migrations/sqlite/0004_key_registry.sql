-- The keys each replica has made primary: the data key that seals personal
-- data, the audit key that chains events. A replica records its primary
-- when it starts, if it is new, as the newest (after every time recorded
-- before it). The newest of each kind is the one every replica's ring must
-- hold to start (so that no replica writes what another cannot read), and
-- the one the re-seal moves personal data to. A key recorded here may leave
-- a ring once nothing stored needs it: it is then retired, never deleted,
-- and never made primary again. The keys of the first start also cover
-- what was written before key ids (values and hashes that name no key).
-- No key material: ids only (see store::crypt and store::audit).
CREATE TABLE key_registry (
    purpose TEXT NOT NULL CHECK (purpose IN ('data', 'audit')),
    key_id TEXT NOT NULL CHECK (length(key_id) = 12),
    primary_since INTEGER NOT NULL,
    retired_since INTEGER,
    covers_unnamed INTEGER NOT NULL DEFAULT 0 CHECK (covers_unnamed IN (0, 1)),
    PRIMARY KEY (purpose, key_id)
) STRICT;
