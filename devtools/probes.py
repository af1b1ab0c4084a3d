"""What the crash tests and the recovery benchmark look at in PostgreSQL from outside the service."""

import asyncpg

# The worker whose session holds a file's claim lock (migration 0005) while that session is COPYing the
# file's rows: a file caught mid-load, not just claimed.
_LOADING_PID = """
    SELECT log.lease_owner
    FROM file_processing_log AS log
    JOIN pg_locks AS lock
      ON lock.locktype = 'advisory' AND lock.granted AND lock.objsubid = 1
     AND lock.classid::bigint = file_claim_lock_key(log.id) >> 32
     AND lock.objid::bigint = file_claim_lock_key(log.id) & 4294967295
    JOIN pg_stat_progress_copy AS copy ON copy.pid = lock.pid
    WHERE log.bucket = $1 AND log.status = 'processing' AND copy.tuples_processed > 0
    LIMIT 1
"""


async def pid_loading(conn: asyncpg.Connection, bucket: str) -> int | None:
    """The process id of the service process in the middle of loading a file of `bucket`, if any."""
    owner = await conn.fetchval(_LOADING_PID, bucket)
    return None if owner is None else int(owner.split(":")[-2])  # lease owners are host:pid:nonce
