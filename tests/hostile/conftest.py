"""Fixtures of the hostile-input tests: an isolated service for schemathesis to hammer."""

import secrets
from collections.abc import Callable

import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from devtools.bootstrap import bootstrap_aws
from tests.aws import AWS_REGION


@pytest.fixture(scope="session")
def fuzz_settings(service_env: dict[str, str], new_database: Callable[[], str], moto_url: str) -> Settings:
    """Its own database, bucket, topic and queues, and no consumer: what schemathesis creates, publishes or
    redrives cannot reach the data or the queue the rest of the suite watches."""
    suffix = secrets.token_hex(4)
    resources = bootstrap_aws(
        moto_url,
        AWS_REGION,
        bucket=f"fuzz-{suffix}",
        topic=f"fuzz-events-{suffix}",
        queue=f"fuzz-ingest-{suffix}",
        dlq=f"fuzz-ingest-dlq-{suffix}",
    )
    env = {**service_env, **resources, "DATABASE_URL": new_database()}
    return Settings(  # type: ignore[arg-type]
        **{name.lower(): value for name, value in env.items()}, sqs_consumer_enabled=False
    )


@pytest.fixture(scope="session")
def fuzz_app(fuzz_settings: Settings) -> FastAPI:
    """Not started here: schemathesis runs its lifespan on its own event loop, per test."""
    return create_app(fuzz_settings)
