-- The keys each replica has made primary: the data key that seals personal
-- data, the audit key that chains events. A replica records its primaries
-- when it starts, at the time it first did so. The newest of each kind is
-- the one every replica's ring must hold to start (so that no replica
-- writes what another cannot read), the one the re-seal moves personal
-- data to, and a key recorded here may leave a ring only once nothing
-- stored needs it. No key material: ids only (see store::crypt and
-- store::audit for how they are derived).
CREATE TABLE key_registry (
    purpose TEXT NOT NULL CHECK (purpose IN ('data', 'audit')),
    key_id TEXT NOT NULL CHECK (length(key_id) = 12),
    primary_since BIGINT NOT NULL,
    PRIMARY KEY (purpose, key_id)
);
