"""Fixtures of the ingestion tests."""

import secrets
from typing import Any

import pytest


@pytest.fixture
def quiet_bucket(s3: Any) -> str:
    """A bucket without notifications: only what the test asks for gets ingested."""
    name = f"quiet-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name
