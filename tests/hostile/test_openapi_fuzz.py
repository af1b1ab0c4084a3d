"""schemathesis against the app's OpenAPI, in-process: every operation, with a token holding every scope."""

from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.core.config import Settings
from app.main import create_app
from tests.helpers import TEST_JWT_SECRET, bearer, problem_of

# What every response must satisfy. Left out: positive_data_acceptance (the API rightly refuses schema-valid
# values it cannot serve, such as a cursor it never issued), negative_data_rejection (pydantic's lax mode
# takes 0 as a date, FastAPI ignores unknown query parameters), unsupported_method and
# allow_header_conformance (/s3/{key:path} also serves GET and PUT /s3/upload, which the document cannot
# say; Allow is tested below).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


class DeferredApp:
    """The ASGI app schemathesis calls: it must exist when the module is collected, but the service it
    forwards to is only built once the suite's PostgreSQL and moto are up."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "the fuzz_app fixture binds the service"
        await self.app(scope, receive, send)


def _openapi() -> dict[str, Any]:
    # The document depends on the code only; an app that is never started, on placeholder settings, gives it.
    unused = Settings(  # type: ignore[call-arg]
        database_url="postgresql://unused@127.0.0.1:1/unused",
        s3_bucket_name="unused",
        sns_topic_arn="arn:aws:sns:us-east-1:000000000000:unused",
        sqs_queue_url="http://127.0.0.1:1/000000000000/unused",
        jwt_secret=TEST_JWT_SECRET,
    )
    return create_app(unused).openapi()


SERVICE = DeferredApp()
schema = schemathesis.openapi.from_dict(_openapi())
schema.app = SERVICE  # as from_asgi() binds its app: requests go in-process, lifespan included


@pytest.fixture(autouse=True)
def _bind_service(fuzz_app: FastAPI) -> None:
    SERVICE.app = fuzz_app


# schemathesis 4.32's from_fixture() reads pytest's removed Item._nodeid under pytest 9.2, hence the eager
# schema above. /sns/webhook is fuzzed too, but declares no body (SNS posts JSON as text/plain), so it only
# gets bodiless requests; its signature checks are in tests/notifications/test_webhook.py.
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    """Positive and negative cases: no 5xx; documented status, content type, headers, body; auth enforced."""
    case.call_and_validate(headers=bearer(), checks=CHECKS)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/users/someone/personal", "DELETE, GET, PATCH"),
        ("POST", "/users/someone/health", "DELETE, GET, PATCH"),
        ("DELETE", "/s3/a/b.json", "GET, PUT"),
        ("DELETE", "/s3/upload", "GET, POST, PUT"),  # /s3/{key} serves the key "upload" too
        ("PUT", "/health", "GET"),
    ],
)
async def test_a_wrong_method_is_405_with_every_method_of_the_path_in_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    # Found by schemathesis (allow_header_conformance): Allow named only the first route's methods.
    response = await client.request(method, path, headers=bearer())
    assert response.status_code == 405
    problem_of(response)
    assert response.headers["allow"] == allow
