"""The users/ layout in S3: `users/{type}/{user_id}.json` files, the `users/{type}/` prefixes whose files
are ingested into the users_* tables, and when the data a file's record holds is as of."""

import re
from datetime import datetime, timedelta

from app.users.schemas import USER_ID_PATTERN, RecordType

USERS_PREFIX = "users/"
LAST_MODIFIED_RESOLUTION = timedelta(seconds=1)  # S3 reports Last-Modified in whole seconds
_USER_FILE = re.compile(rf"^users/(personal|financial|health)/({USER_ID_PATTERN[1:-1]})\.json$")


def user_file_key(kind: RecordType, user_id: str) -> str:
    return f"users/{kind.value}/{user_id}.json"


def is_user_key(key: str) -> bool:
    """Whether `key` is under users/: what only the users:* scopes may read or write."""
    return key.startswith(USERS_PREFIX)


def record_type_of(key: str) -> RecordType | None:
    """The record type whose prefix `key` is under (`users/health/...` -> health), else None."""
    for kind in RecordType:
        if key.startswith(f"{USERS_PREFIX}{kind.value}/"):
            return kind
    return None


def user_id_of(key: str) -> str | None:
    """The user of a `users/{type}/{user_id}.json` key; None for any other key (a batch file, say)."""
    found = _USER_FILE.match(key)
    return found.group(2) if found else None


def as_of(record_time: datetime | None, last_modified: datetime) -> datetime:
    """When a file's record is as of: its own `updated_at` (a snapshot of the database, as /users/sqs/send
    writes), never later than the object was written; without one, when the object was written.

    A record cannot describe the future of its own file, so a future `updated_at` cannot lock a record
    against later files. S3's Last-Modified has whole seconds: the object was written before the end of
    that second.
    """
    if record_time is None:
        return last_modified
    return min(record_time, last_modified + LAST_MODIFIED_RESOLUTION)


def record_time(value: object) -> datetime | None:
    """A record's `updated_at` as an aware time; None when it is missing or not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
