"""What the crash tests and the recovery benchmark look at in PostgreSQL from outside the service."""

import asyncpg

# The worker whose session holds a file's claim lock (migration 0005) while that session's load transaction
# is open and has written (the staging table, rows): a file caught mid-load, not just claimed. (Not "while
# a COPY runs": the loader COPYs chunk by chunk between parses, and a poll can miss every COPY of a fast
# file.)
_LOADING_PID = """
    SELECT log.lease_owner
    FROM file_processing_log AS log
    JOIN pg_locks AS lock
      ON lock.locktype = 'advisory' AND lock.granted AND lock.objsubid = 1
     AND lock.classid::bigint = file_claim_lock_key(log.id) >> 32
     AND lock.objid::bigint = file_claim_lock_key(log.id) & 4294967295
    JOIN pg_stat_activity AS activity ON activity.pid = lock.pid
    WHERE log.bucket = $1 AND log.status = 'processing' AND activity.backend_xid IS NOT NULL
    LIMIT 1
"""


async def pid_loading(conn: asyncpg.Connection, bucket: str) -> int | None:
    """The process id of the service process in the middle of loading a file of `bucket`, if any."""
    owner = await conn.fetchval(_LOADING_PID, bucket)
    return None if owner is None else int(owner.split(":")[-2])  # lease owners are host:pid:nonce
