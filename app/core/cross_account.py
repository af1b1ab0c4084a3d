"""Cross-account sources (SPEC 7): buckets that `S3_BUCKET_ROLES` maps to an IAM role are read with that
role's STS AssumeRole credentials, refreshed before they expire."""

# This module imports neither app.core.config nor app.core.aws: config imports it for the type of
# S3_BUCKET_ROLES, and aws imports config, so either import would be circular.

import json
import logging
import re
import socket
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Self, TypeGuard

from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioCredentialResolver,
    AioDeferredRefreshableCredentials,
    AioRefreshableCredentials,
)
from aiobotocore.session import AioSession
from botocore.credentials import CredentialProvider
from botocore.exceptions import ClientError
from pydantic import BeforeValidator
from pydantic_settings import NoDecode

if TYPE_CHECKING:  # the stub packages are dev dependencies, absent from the runtime image
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sts import STSClient
    from types_aiobotocore_sts.type_defs import AssumeRoleRequestTypeDef

logger = logging.getLogger(__name__)

ROLE_SESSION_SECONDS = 3600  # STS's default; a role's MaxSessionDuration may refuse longer sessions
ROLE_SESSION_NAME_MAX = 64  # STS limit on RoleSessionName
ROLE_SESSION_NAME_PREFIX = "aws-s3-service-"  # how the client account's CloudTrail names us

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$", re.ASCII)
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$", re.ASCII)  # STS constraints on ExternalId
# S3 naming rules for general purpose buckets: 3-63 characters, no "..", not an IP address.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_NOT_IN_SESSION_NAME = re.compile(r"[^\w+=,.@-]", re.ASCII)


@dataclass(frozen=True, slots=True)
class BucketRole:
    """The IAM role to read a bucket with, and the external id its trust policy may require."""

    role_arn: str
    external_id: str | None = None


class RoleAssumptionDenied(ClientError):
    """STS refused AssumeRole (AccessDenied): reads of the role's buckets fail until its trust policy
    lets the service in. A ClientError carrying STS's response, so S3 error handling sees AccessDenied."""

    def __init__(self, cause: ClientError, role_arn: str) -> None:
        super().__init__(cause.response, cause.operation_name)
        self.role_arn = role_arn


def parse_bucket_roles(value: str) -> dict[str, BucketRole]:
    """Parse S3_BUCKET_ROLES: a JSON object from bucket name to a role ARN or to
    `{"role_arn": ..., "external_id": ...}`; blank means no cross-account bucket."""
    if not value.strip():
        return {}
    try:
        document = json.loads(value, object_pairs_hook=_without_duplicates)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    return _bucket_roles(document)


def _bucket_roles_setting(value: object) -> dict[str, BucketRole]:
    return parse_bucket_roles(value) if isinstance(value, str) else _bucket_roles(value)


# The type of the S3_BUCKET_ROLES setting: JSON text from the environment, or a mapping in code.
BucketRolesSetting = Annotated[dict[str, BucketRole], NoDecode, BeforeValidator(_bucket_roles_setting)]


def _without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads would keep the last of two entries for one bucket; a mapping that says two things fails.
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"{key!r} appears twice")
        seen.add(key)
    return dict(pairs)


def _bucket_roles(document: object) -> dict[str, BucketRole]:
    if not isinstance(document, Mapping):
        raise ValueError("must be a JSON object from bucket name to role ARN")
    return {_bucket_name(bucket): _bucket_role(bucket, entry) for bucket, entry in document.items()}


def is_bucket_name(bucket: object) -> TypeGuard[str]:
    """S3's naming rules for general purpose buckets."""
    return (
        isinstance(bucket, str)
        and bool(_BUCKET_NAME.match(bucket))
        and ".." not in bucket
        and not _IP_ADDRESS.match(bucket)
    )


def _bucket_name(bucket: object) -> str:
    if not is_bucket_name(bucket):
        raise ValueError(
            f"bucket {bucket!r}: not an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)"
        )
    return bucket


def _bucket_role(bucket: str, entry: object) -> BucketRole:
    if isinstance(entry, BucketRole):
        role = entry
    elif isinstance(entry, str):
        role = BucketRole(entry)
    elif isinstance(entry, Mapping) and "role_arn" in entry and entry.keys() <= {"role_arn", "external_id"}:
        role = BucketRole(entry["role_arn"], entry.get("external_id"))
    else:
        raise ValueError(f'bucket {bucket!r}: expected a role ARN or {{"role_arn": ..., "external_id": ...}}')
    if not isinstance(role.role_arn, str) or not _ROLE_ARN.match(role.role_arn):
        raise ValueError(f"bucket {bucket!r}: {role.role_arn!r} is not an IAM role ARN")
    if role.external_id is not None and not (
        isinstance(role.external_id, str) and _EXTERNAL_ID.match(role.external_id)
    ):
        raise ValueError(f"bucket {bucket!r}: external_id must be 2-1224 characters of [A-Za-z0-9_+=,.@:/-]")
    return role


def _role_session_name(hostname: str) -> str:
    host = _NOT_IN_SESSION_NAME.sub("-", hostname.split(".")[0]) or "unknown"
    return (ROLE_SESSION_NAME_PREFIX + host)[:ROLE_SESSION_NAME_MAX]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _GivenCredentials(CredentialProvider):
    """Makes a botocore session use one credentials object, and nothing from its environment."""

    METHOD = "assume-role"
    CANONICAL_NAME = "custom-assume-role"  # botocore asks providers it does not ship to prefix "custom"

    def __init__(self, credentials: AioRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    async def load(self) -> AioRefreshableCredentials:
        return self._credentials


class S3ClientsByBucket:
    """The S3 client to read a bucket with: the service's own, or the client of the bucket's role.

    Each role gets one client, open until `aclose()`. botocore signs every request with the role's
    current credentials: it assumes the role on first use, not at start-up, and again before expiry
    (botocore's windows: from 15 minutes before, one caller refreshes while the others go on with the
    still valid credentials, and a failure is only logged; from 10 minutes before, requests wait for
    fresh credentials and fail if STS does). Credentials change under the client, so a refresh never
    cuts off a download still reading from it.
    """

    def __init__(
        self,
        default: "S3Client",
        sts: "STSClient",
        roles: Mapping[str, BucketRole],
        *,
        config: AioConfig,
        endpoint_url: str | None,
        region: str,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._default = default
        self._sts = sts
        self._roles = dict(roles)
        self._config = config
        self._endpoint_url = endpoint_url
        self._region = region
        self._clock = clock
        self._session_name = _role_session_name(socket.gethostname())
        self._clients: dict[str, S3Client] = {}
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        buckets_by_role: dict[BucketRole, list[str]] = {}
        for bucket, role in self._roles.items():
            buckets_by_role.setdefault(role, []).append(bucket)
        async with AsyncExitStack() as stack:
            for role, buckets in buckets_by_role.items():
                client = await stack.enter_async_context(self._role_client(role, tuple(buckets)))
                self._clients.update(dict.fromkeys(buckets, client))
            self._stack = stack.pop_all()
        if buckets_by_role:
            logger.info(
                "cross-account roles configured",
                extra={"roles": len(buckets_by_role), "buckets": sorted(self._roles)},
            )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def client_for(self, bucket: str) -> "S3Client":
        """The client to read `bucket` with; the Ingestor's `s3_for`."""
        return self._clients.get(bucket, self._default)

    async def aclose(self) -> None:
        await self._stack.aclose()

    def _role_client(self, role: BucketRole, buckets: tuple[str, ...]) -> "ClientCreatorContext[S3Client]":
        credentials = AioDeferredRefreshableCredentials(
            refresh_using=partial(self._assume, role, buckets),
            method=_GivenCredentials.METHOD,
            time_fetcher=self._clock,
        )
        session = AioSession()
        session.register_component(
            "credential_provider", AioCredentialResolver([_GivenCredentials(credentials)])
        )
        return session.create_client(
            "s3", region_name=self._region, endpoint_url=self._endpoint_url, config=self._config
        )

    async def _assume(self, role: BucketRole, buckets: tuple[str, ...]) -> dict[str, str]:
        params: AssumeRoleRequestTypeDef = {
            "RoleArn": role.role_arn,
            "RoleSessionName": self._session_name,
            "DurationSeconds": ROLE_SESSION_SECONDS,
        }
        if role.external_id is not None:
            params["ExternalId"] = role.external_id
        try:
            response = await self._sts.assume_role(**params)
        except ClientError as exc:
            # Other STS errors (throttling, 5xx) propagate as botocore raised them, like transport errors:
            # callers classify them as they do S3's (app.core.aws.is_transient).
            if exc.response.get("Error", {}).get("Code") == "AccessDenied":
                raise RoleAssumptionDenied(exc, role.role_arn) from None
            raise
        credentials = response["Credentials"]
        expires_at = credentials["Expiration"].isoformat()
        logger.info(
            "assumed role",
            extra={"role_arn": role.role_arn, "buckets": list(buckets), "expires_at": expires_at},
        )
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": expires_at,
        }
