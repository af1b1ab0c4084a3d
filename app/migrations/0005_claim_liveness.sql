-- A claim on a file lives as long as the database session of the worker that holds it: that session takes
-- a session-level advisory lock on the file (key 2^62 + file id, far from the job locks' keys) in the claim
-- statement itself and keeps it until the load ends. When the worker dies (kill -9, OOM, lost host), its
-- session ends and PostgreSQL drops the lock at once, so the claim is free without waiting for its lease.
CREATE FUNCTION file_claim_lock_key(file_id bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 4611686018427387904 + file_id $$;

-- Whether some session holds the file's claim lock (a bigint advisory key is stored as classid = high 32
-- bits, objid = low 32 bits, objsubid = 1).
CREATE FUNCTION file_claim_alive(file_id bigint) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND objsubid = 1
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid::bigint = file_claim_lock_key(file_id) >> 32
              AND objid::bigint = file_claim_lock_key(file_id) & 4294967295
        )
    $$;
