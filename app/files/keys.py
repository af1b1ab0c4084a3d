"""S3 key rules (SPEC 5) and the content type of each uploadable file kind."""

from http import HTTPStatus

from app.core.errors import DomainError

S3_MAX_KEY_BYTES = 1024  # API limit
GZIP_SUFFIX = ".gz"
CONTENT_TYPES = {
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".csv": "text/csv",
}
GZIP_CONTENT_TYPE = "application/gzip"


class InvalidKey(DomainError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "invalid-key"


class UnsupportedFileType(DomainError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    slug = "unsupported-file-type"


def key_rule_broken(key: str) -> str | None:
    """Which rule of SPEC 5 `key` breaks, in a sentence; None for a good key."""
    if not key:
        return "The key is empty."
    if len(key.encode("utf-8", errors="surrogatepass")) > S3_MAX_KEY_BYTES:
        return f"The key is longer than {S3_MAX_KEY_BYTES} bytes."
    if key.startswith("/"):
        return "The key must not start with '/'."
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key):
        return "The key must not contain control characters."
    if ".." in key.split("/"):
        return "The key must not contain a '..' segment."
    return None


def validate_key(key: str, location: str = "path") -> str:
    """The key itself, or InvalidKey (422 naming the `key` field) saying which rule it breaks."""
    broken = key_rule_broken(key)
    if broken is not None:
        raise InvalidKey(broken, field="key", location=location)
    return key


def file_kind(key: str) -> tuple[str, bool]:
    """(the base suffix, gzipped?) of an uploadable key, or UnsupportedFileType."""
    lowered = key.lower()
    gzipped = lowered.endswith(GZIP_SUFFIX)
    base = lowered.removesuffix(GZIP_SUFFIX) if gzipped else lowered
    for suffix in CONTENT_TYPES:
        if base.endswith(suffix):
            return suffix, gzipped
    allowed = ", ".join(CONTENT_TYPES)
    raise UnsupportedFileType(f"Uploads must end in {allowed} (optionally followed by {GZIP_SUFFIX}).")


def content_type_for(key: str) -> str:
    suffix, gzipped = file_kind(key)
    return GZIP_CONTENT_TYPE if gzipped else CONTENT_TYPES[suffix]
