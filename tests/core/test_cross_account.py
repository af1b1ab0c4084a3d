"""Cross-account reads against real moto servers: S3_BUCKET_ROLES parsing, AssumeRole on first use,
credentials cached and refreshed before expiry, AccessDenied and an unreachable STS."""

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
import httpx
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field
from pydantic_settings import BaseSettings

from app.core import aws
from app.core.config import SettingsError, load
from app.core.cross_account import (
    ROLE_SESSION_SECONDS,
    BucketRole,
    BucketRolesSetting,
    RoleAssumptionDenied,
    S3ClientsByBucket,
    parse_bucket_roles,
)
from devtools.servers import MotoServer, free_port, start_moto
from tests.aws import AWS_REGION, assumed, boto_client

CLIENT_ACCOUNT = "111122223333"
ARN = f"arn:aws:iam::{CLIENT_ACCOUNT}:role/reader"
KEY = "drop/data.json"
CONTENT = b'[{"id": 1}]'
MakeClients = Callable[..., S3ClientsByBucket]
# One attempt: the unreachable-STS test must fail at once, not after backoff.
CONFIG = AioConfig(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 1})


class Clock:
    """The wall clock, or as far ahead of it as a test says."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def new_role_arn() -> str:
    return f"arn:aws:iam::{CLIENT_ACCOUNT}:role/reader-{secrets.token_hex(4)}"


def signing_keys(client: Any) -> list[str]:
    """The access key ids the client's GetObject requests are signed with, as they are sent."""
    keys: list[str] = []

    def record(request: Any, **_: Any) -> None:
        match = re.search(r"Credential=(\w+)/", str(request.headers["Authorization"]))
        assert match is not None
        keys.append(match.group(1))

    client.meta.events.register("before-send.s3.GetObject", record)
    return keys


async def read(clients: S3ClientsByBucket, bucket: str, key: str = KEY) -> bytes:
    response = await clients.client_for(bucket).get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        content: bytes = await body.read()
    return content


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server of this module's own.

    The tests read moto's record of AssumeRole calls from /moto-api/data.json, which fails on the
    suite's shared server (500, MissingBucket) once another test has deleted a bucket that held keys.
    """
    with start_moto(log_path=tmp_path_factory.mktemp("cross-account-moto") / "moto.log") as server:
        yield server.endpoint_url


@pytest.fixture(scope="module")
def admin_s3(moto_endpoint: str) -> Any:
    """Sets up the client buckets, as their owners would."""
    return boto_client("s3", moto_endpoint)


@pytest.fixture
async def default_s3(moto_endpoint: str) -> AsyncIterator[Any]:
    async with aioboto3.Session(region_name=AWS_REGION).client("s3", endpoint_url=moto_endpoint) as client:
        yield client


@pytest.fixture
async def sts(moto_endpoint: str) -> AsyncIterator[Any]:
    async with aioboto3.Session(region_name=AWS_REGION).client("sts", endpoint_url=moto_endpoint) as client:
        yield client


@pytest.fixture
def client_bucket(admin_s3: Any) -> str:
    """A client account's bucket holding one file to ingest."""
    name = f"client-{secrets.token_hex(6)}"
    admin_s3.create_bucket(Bucket=name)
    admin_s3.put_object(Bucket=name, Key=KEY, Body=CONTENT)
    return name


@pytest.fixture
def by_bucket(default_s3: Any, sts: Any, moto_endpoint: str) -> MakeClients:
    """Makes the object under test, on this module's moto server."""

    def make(roles: dict[str, BucketRole], clock: Clock | None = None) -> S3ClientsByBucket:
        return S3ClientsByBucket(
            default_s3,
            sts,
            roles,
            config=CONFIG,
            endpoint_url=moto_endpoint,
            region=AWS_REGION,
            clock=clock or Clock(),
        )

    return make


async def test_mapped_bucket_is_read_with_the_assumed_role_credentials(
    by_bucket: MakeClients, client_bucket: str, moto_endpoint: str
) -> None:
    role_arn = new_role_arn()
    async with by_bucket({client_bucket: BucketRole(role_arn)}) as clients:
        keys = signing_keys(clients.client_for(client_bucket))
        assert await assumed(moto_endpoint, role_arn) == []  # nothing assumed before the first read

        assert await read(clients, client_bucket) == CONTENT

    [role] = await assumed(moto_endpoint, role_arn)
    assert role["session_name"].startswith("aws-s3-service-")
    assert role["external_id"] is None
    assert keys == [role["access_key_id"]]
    assert keys[0].startswith("ASIA")  # temporary credentials, not the service's own "test" key


async def test_credentials_are_cached_one_assume_role_for_concurrent_and_later_reads(
    by_bucket: MakeClients, client_bucket: str, moto_endpoint: str
) -> None:
    role_arn = new_role_arn()
    async with by_bucket({client_bucket: BucketRole(role_arn)}) as clients:
        first = await asyncio.gather(*(read(clients, client_bucket) for _ in range(8)))
        later = await read(clients, client_bucket)

    assert first == [CONTENT] * 8
    assert later == CONTENT
    assert len(await assumed(moto_endpoint, role_arn)) == 1


async def test_credentials_are_refreshed_before_expiry_on_the_same_client(
    by_bucket: MakeClients, client_bucket: str, moto_endpoint: str
) -> None:
    role_arn = new_role_arn()
    clock = Clock()
    async with by_bucket({client_bucket: BucketRole(role_arn)}, clock) as clients:
        client = clients.client_for(client_bucket)
        keys = signing_keys(client)
        await read(clients, client_bucket)
        await read(clients, client_bucket)
        assert len(await assumed(moto_endpoint, role_arn)) == 1

        clock.ahead = timedelta(seconds=ROLE_SESSION_SECONDS - 4 * 60)  # 4 minutes left
        assert await read(clients, client_bucket) == CONTENT
        assert len(await assumed(moto_endpoint, role_arn)) == 2

        clock.ahead = timedelta(0)  # the new credentials have an hour again
        await read(clients, client_bucket)
        assert clients.client_for(client_bucket) is client

    first, second = await assumed(moto_endpoint, role_arn)
    assert keys == [first["access_key_id"]] * 2 + [second["access_key_id"]] * 2
    assert first["access_key_id"] != second["access_key_id"]


async def test_unmapped_bucket_is_read_with_the_default_client(
    by_bucket: MakeClients, default_s3: Any, client_bucket: str, admin_s3: Any, moto_endpoint: str
) -> None:
    own = f"own-{secrets.token_hex(6)}"
    admin_s3.create_bucket(Bucket=own)
    admin_s3.put_object(Bucket=own, Key=KEY, Body=b"own")
    role_arn = new_role_arn()
    async with by_bucket({client_bucket: BucketRole(role_arn)}) as clients:
        assert clients.client_for(own) is default_s3
        assert await read(clients, own) == b"own"

    assert await assumed(moto_endpoint, role_arn) == []


async def test_buckets_mapped_to_one_role_share_its_client_and_credentials(
    by_bucket: MakeClients, client_bucket: str, admin_s3: Any, moto_endpoint: str
) -> None:
    other = f"client-{secrets.token_hex(6)}"
    admin_s3.create_bucket(Bucket=other)
    admin_s3.put_object(Bucket=other, Key=KEY, Body=b"other")
    role = BucketRole(new_role_arn())
    async with by_bucket({client_bucket: role, other: role}) as clients:
        assert clients.client_for(client_bucket) is clients.client_for(other)
        assert await read(clients, client_bucket) == CONTENT
        assert await read(clients, other) == b"other"

    assert len(await assumed(moto_endpoint, role.role_arn)) == 1


async def test_external_id_is_passed_to_sts(
    by_bucket: MakeClients, client_bucket: str, moto_endpoint: str
) -> None:
    role = BucketRole(new_role_arn(), external_id="tenant-42:ingest")
    async with by_bucket({client_bucket: role}) as clients:
        await read(clients, client_bucket)

    [assumed_role] = await assumed(moto_endpoint, role.role_arn)
    assert assumed_role["external_id"] == "tenant-42:ingest"


@pytest.fixture(scope="module")
def strict_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """A moto server of its own that enforces IAM, and the keys of a user no policy allows anything."""
    server = start_moto(log_path=tmp_path_factory.mktemp("strict-moto") / "moto.log")
    try:
        # Two unauthenticated calls to create the user and its key; every later request is checked.
        httpx.post(
            f"{server.endpoint_url}/moto-api/reset-auth", content=b"2", headers={"Content-Type": "text/plain"}
        ).raise_for_status()
        iam = boto_client("iam", server.endpoint_url)
        iam.create_user(UserName="service")
        key = iam.create_access_key(UserName="service")["AccessKey"]
        user = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        yield server, user
    finally:
        server.stop()


async def test_assume_role_access_denied_is_role_assumption_denied(
    strict_moto: tuple[MotoServer, dict[str, str]], default_s3: Any, client_bucket: str
) -> None:
    server, credentials = strict_moto
    role_arn = new_role_arn()
    session = aioboto3.Session(region_name=AWS_REGION, **credentials)
    async with (
        session.client("sts", endpoint_url=server.endpoint_url, config=CONFIG) as sts,
        S3ClientsByBucket(
            default_s3,
            sts,
            {client_bucket: BucketRole(role_arn)},
            config=CONFIG,
            endpoint_url=server.endpoint_url,
            region=AWS_REGION,
        ) as clients,
    ):
        with pytest.raises(RoleAssumptionDenied) as denied:
            await read(clients, client_bucket)

    assert denied.value.role_arn == role_arn
    # What the loader's S3 error handling sees: a permanent AccessDenied.
    assert isinstance(denied.value, ClientError)
    assert aws.error_code(denied.value) == "AccessDenied"
    assert not aws.is_transient(denied.value)


async def test_unreachable_sts_fails_the_read_with_a_transport_error(
    default_s3: Any, client_bucket: str, moto_endpoint: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with (
        aioboto3.Session(region_name=AWS_REGION).client("sts", endpoint_url=closed, config=CONFIG) as sts,
        S3ClientsByBucket(
            default_s3,
            sts,
            {client_bucket: BucketRole(new_role_arn())},
            config=CONFIG,
            endpoint_url=moto_endpoint,
            region=AWS_REGION,
        ) as clients,
    ):
        # A BotoCoreError, which the loader already treats as transient.
        with pytest.raises(BotoCoreError):
            await read(clients, client_bucket)


def test_parse_accepts_a_role_arn_or_an_object_with_an_external_id() -> None:
    value = (
        '{"client-a": "' + ARN + '", '
        '"client.b-2": {"role_arn": "arn:aws-cn:iam::123456789012:role/path/to/r+w", "external_id": "ext-1"}}'
    )

    assert parse_bucket_roles(value) == {
        "client-a": BucketRole(ARN),
        "client.b-2": BucketRole("arn:aws-cn:iam::123456789012:role/path/to/r+w", "ext-1"),
    }


@pytest.mark.parametrize("value", ["", "  ", "{}"])
def test_parse_blank_or_empty_means_no_cross_account_bucket(value: str) -> None:
    assert parse_bucket_roles(value) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("client-a=" + ARN, "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        (f'["{ARN}"]', "must be a JSON object from bucket name to role ARN"),
        (f'{{"Client_A": "{ARN}"}}', "bucket 'Client_A': not an S3 bucket name"),
        (f'{{"ab": "{ARN}"}}', "bucket 'ab': not an S3 bucket name"),
        (f'{{"a..b": "{ARN}"}}', "bucket 'a..b': not an S3 bucket name"),
        (f'{{"192.168.1.10": "{ARN}"}}', "bucket '192.168.1.10': not an S3 bucket name"),
        (
            '{"client-a": "arn:aws:iam::1234:role/reader"}',
            "bucket 'client-a': 'arn:aws:iam::1234:role/reader' is not an IAM role ARN",
        ),
        (
            '{"client-a": "arn:aws:iam::123456789012:user/reader"}',
            "bucket 'client-a': 'arn:aws:iam::123456789012:user/reader' is not an IAM role ARN",
        ),
        ('{"client-a": {"role_arn": 7}}', "bucket 'client-a': 7 is not an IAM role ARN"),
        ('{"client-a": 7}', "bucket 'client-a': expected a role ARN or {"),
        ('{"client-a": {"external_id": "ext-1"}}', "bucket 'client-a': expected a role ARN or {"),
        (f'{{"client-a": {{"role_arn": "{ARN}", "externalId": "e"}}}}', "bucket 'client-a': expected"),
        (f'{{"client-a": {{"role_arn": "{ARN}", "external_id": "x"}}}}', "bucket 'client-a': external_id"),
        (f'{{"client-a": "{ARN}", "client-a": "{ARN}"}}', "'client-a' appears twice"),
    ],
)
def test_parse_refuses_a_bad_setting_naming_the_entry(value: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_bucket_roles(value)

    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


class RolesSettings(BaseSettings):
    """The S3_BUCKET_ROLES field as Settings declares it."""

    s3_bucket_roles: BucketRolesSetting = Field(default_factory=dict)


def test_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_BUCKET_ROLES", f'{{"client-a": {{"role_arn": "{ARN}", "external_id": "ext-1"}}}}')

    assert load(RolesSettings).s3_bucket_roles == {"client-a": BucketRole(ARN, "ext-1")}


def test_setting_defaults_to_no_cross_account_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3_BUCKET_ROLES", raising=False)
    assert load(RolesSettings).s3_bucket_roles == {}
    monkeypatch.setenv("S3_BUCKET_ROLES", "")
    assert load(RolesSettings).s3_bucket_roles == {}


def test_setting_accepts_an_already_parsed_mapping() -> None:
    settings = RolesSettings(
        s3_bucket_roles={"client-a": ARN, "client-b": {"role_arn": ARN}, "client-c": BucketRole(ARN, "ext-1")}
    )

    assert settings.s3_bucket_roles == {
        "client-a": BucketRole(ARN),
        "client-b": BucketRole(ARN),
        "client-c": BucketRole(ARN, "ext-1"),
    }


def test_bad_setting_stops_start_up_with_one_line_naming_variable_and_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3_BUCKET_ROLES", '{"client-a": "arn:aws:iam::1234:role/reader"}')

    with pytest.raises(SettingsError) as refused:
        load(RolesSettings)

    assert str(refused.value) == (
        "invalid configuration: S3_BUCKET_ROLES: Value error, "
        "bucket 'client-a': 'arn:aws:iam::1234:role/reader' is not an IAM role ARN"
    )
