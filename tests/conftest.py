"""Real servers for the suite: PostgreSQL (embedded, or TEST_DATABASE_URL) and a moto server over HTTP."""

import asyncio
import json
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from app.core.config import Settings
from devtools.bootstrap import bootstrap_aws
from devtools.servers import start_moto, start_postgres
from tests.aws import AWS_REGION, boto_client
from tests.helpers import TEST_JWT_SECRET, ServiceProcess, bearer, started_app

# boto3 must never find real credentials or reach AWS from a test.
os.environ.update(
    AWS_ACCESS_KEY_ID="test",
    AWS_SECRET_ACCESS_KEY="test",
    AWS_DEFAULT_REGION=AWS_REGION,
)
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin DSN of a PostgreSQL server the suite may create databases on."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = start_postgres(tmp_path_factory.mktemp("postgres"), durable=False)
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(scope="session")
def new_database(postgres_server: str) -> Callable[[], str]:
    """Makes an empty database with a unique name and returns its DSN."""

    def make() -> str:
        name = f"test_{secrets.token_hex(6)}"
        asyncio.run(_create_database(postgres_server, name))
        return _with_database(postgres_server, name)

    return make


@pytest.fixture(scope="session")
def database_url(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_moto(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server.endpoint_url


@pytest.fixture(scope="session")
def aws_resources(moto_url: str) -> dict[str, str]:
    return bootstrap_aws(
        moto_url,
        AWS_REGION,
        bucket="test-bucket",
        topic="test-events",
        queue="test-ingest",
        dlq="test-ingest-dlq",
    )


@pytest.fixture(scope="session")
def service_env(database_url: str, moto_url: str, aws_resources: dict[str, str]) -> dict[str, str]:
    """The environment a real service process of the suite runs with."""
    return {
        "DATABASE_URL": database_url,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": AWS_REGION,
        "S3_BUCKET_NAME": aws_resources["S3_BUCKET_NAME"],
        "SNS_TOPIC_ARN": aws_resources["SNS_TOPIC_ARN"],
        "SQS_QUEUE_URL": aws_resources["SQS_QUEUE_URL"],
        "JWT_SECRET": TEST_JWT_SECRET,
    }


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]) -> Settings:
    # The in-process app leaves dead claims to the tests that make them (tests/ingestion/test_dead_claims.py).
    env = {**service_env, "INGEST_RECOVERY_INTERVAL_SECONDS": "0"}
    return Settings(**{name.lower(): value for name, value in env.items()})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def session_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The suite's service, with its consumer on the suite's queue, and a client of it."""
    async with started_app(settings, sqs_consumer_enabled=True) as (application, http):
        yield application, http


@pytest.fixture(scope="session")
def app(session_app: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return session_app[0]


@pytest.fixture(scope="session")
def client(session_app: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return session_app[1]


@pytest.fixture(scope="session")
def auth() -> dict[str, str]:
    return bearer()


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection for checking what the service wrote."""
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def spawn_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def spawn(env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(env, tmp_path / f"service-{len(started)}.log")
        started.append(service)
        return service

    yield spawn
    for service in started:
        service.stop()


JWKS_KID = "test-key"  # the key id the RS256 test tokens name


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """The identity provider's signing key for RS256 tests."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    """The public half of `key` as an entry of a JWKS document."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class JwksServer:
    """An identity provider's JWKS endpoint on loopback that counts the requests it answers; a test may
    change the keys it serves or make it fail with another status."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.status = HTTPStatus.OK
        self.requests = 0
        lock = threading.Lock()  # the server answers each request on a thread of its own
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    jwks.requests += 1
                    status, body = jwks.status, json.dumps({"keys": jwks.keys}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def jwks_url(rsa_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """The public half of `rsa_key` served as a JWKS document on loopback, as an identity provider would."""
    server = JwksServer([public_jwk(rsa_key, JWKS_KID)])
    yield server.url
    server.stop()


@pytest.fixture
def jwks_server(rsa_key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    """A JWKS endpoint of the test's own, serving `rsa_key` as JWKS_KID until the test changes it."""
    server = JwksServer([public_jwk(rsa_key, JWKS_KID)])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3(moto_url: str) -> Any:
    return boto_client("s3", moto_url)


@pytest.fixture(scope="session")
def sqs(moto_url: str) -> Any:
    return boto_client("sqs", moto_url)


@pytest.fixture(scope="session")
def bucket(aws_resources: dict[str, str]) -> str:
    return aws_resources["S3_BUCKET_NAME"]


@pytest.fixture(scope="session")
def notifications_queue(moto_url: str, aws_resources: dict[str, str], sqs: Any) -> str:
    """A queue subscribed to the service's topic, as a subscriber of its notifications would be."""
    url: str = sqs.create_queue(QueueName="test-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto_client("sns", moto_url).subscribe(
        TopicArn=aws_resources["SNS_TOPIC_ARN"], Protocol="sqs", Endpoint=arn
    )
    return url
