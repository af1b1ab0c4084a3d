"""One aioboto3 session and long-lived S3/SNS/SQS clients, entered once in the lifespan's exit stack."""

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from app.core.config import Settings
from app.core.cross_account import S3ClientsByBucket

if TYPE_CHECKING:  # the stub packages are dev dependencies, absent from the runtime image
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sts import STSClient

SQS_MAX_WAIT_SECONDS = 20  # API limit for long polling
_CONNECT_TIMEOUT_SECONDS = 5
_READ_TIMEOUT_SECONDS = 30  # above the 20 s long poll, so a poll never times out by itself
_MAX_POOL_CONNECTIONS = 50


# Error codes that mean "AWS is busy or briefly failing": the client should retry later.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def is_transient(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error_code(exc) in TRANSIENT_ERROR_CODES or status >= 500


@dataclass(frozen=True, slots=True)
class AwsClients:
    s3: "S3Client"
    sns: "SNSClient"
    sqs: "SQSClient"
    sts: "STSClient"  # AssumeRole for cross-account buckets (app.core.cross_account)


def client_config() -> AioConfig:
    """Timeouts, retries and connection pool of every client the service opens."""
    return AioConfig(
        connect_timeout=_CONNECT_TIMEOUT_SECONDS,
        read_timeout=_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=_MAX_POOL_CONNECTIONS,
    )


def make_session(settings: Settings) -> aioboto3.Session:
    secret = settings.aws_secret_access_key
    return aioboto3.Session(
        region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )


async def open_clients(settings: Settings, stack: AsyncExitStack) -> AwsClients:
    session = make_session(settings)
    config = client_config()
    endpoint = str(settings.aws_endpoint_url) if settings.aws_endpoint_url else None

    enter = stack.enter_async_context
    # One call per service: each literal name selects the stubs' overload that returns its client type.
    return AwsClients(
        s3=await enter(session.client("s3", endpoint_url=endpoint, config=config)),
        sns=await enter(session.client("sns", endpoint_url=endpoint, config=config)),
        sqs=await enter(session.client("sqs", endpoint_url=endpoint, config=config)),
        sts=await enter(session.client("sts", endpoint_url=endpoint, config=config)),
    )


async def open_bucket_clients(
    settings: Settings, clients: AwsClients, stack: AsyncExitStack
) -> S3ClientsByBucket:
    """The S3 client to read each bucket with: S3_BUCKET_ROLES buckets through their role, others aws.s3."""
    return await stack.enter_async_context(
        S3ClientsByBucket(
            clients.s3,
            clients.sts,
            settings.s3_bucket_roles,
            config=client_config(),
            endpoint_url=str(settings.aws_endpoint_url) if settings.aws_endpoint_url else None,
            region=settings.aws_region,
        )
    )
