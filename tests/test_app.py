"""App-wide behaviour: health, readiness, metrics, request ids and problem+json for every error path."""

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.core.http import BodyTooLarge, EdgeMiddleware
from app.core.logging import HANDLER_NAME
from app.main import create_app
from tests.faults import TcpProxy
from tests.helpers import bearer, client_of, eventually, problem_of, started_app, unique_id


async def test_health_is_ok_without_auth(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"message": "ok"}


async def test_ready_reports_each_check_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "s3": "ok", "sqs": "ok", "consumer": "ok"},
    }


async def test_ready_is_503_naming_the_failed_check(settings: Settings) -> None:
    async with started_app(settings, s3_bucket_name="no-such-bucket-here") as (_, http):
        response = await http.get("/ready")
    assert response.status_code == 503
    problem = problem_of(response)
    assert problem["checks"] == {"database": "ok", "s3": "failed: ClientError", "sqs": "ok"}
    assert "s3" in problem["detail"]


async def test_metrics_exposes_request_counts_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/users/someone-unknown/personal", headers=bearer())
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'route="/users/{user_id}/personal",status="404"' in text
    assert "someone-unknown" not in text
    assert "http_request_duration_seconds_bucket" in text


async def test_each_request_logs_one_json_access_line_with_route_template_and_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        response = await client.get(
            "/users/someone-unknown/personal", headers={**bearer(), "X-Request-ID": "trace-77"}
        )
    assert response.status_code == 404
    # Written when the request ended: nothing is buffered, so a crash that follows cannot lose it.
    lines = access_lines(caplog, request_id="trace-77")
    assert len(lines) == 1
    line = lines[0]
    assert line["route"] == "/users/{user_id}/personal"
    assert (line["method"], line["status"], line["request_id"]) == ("GET", 404, "trace-77")
    assert line["duration_ms"] >= 0
    assert "someone-unknown" not in json.dumps(line)


def access_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, Any]]:
    ours = next(h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME)
    lines = [json.loads(ours.format(r)) for r in caplog.records if r.name == "app.access"]
    return [line for line in lines if line["request_id"] == request_id]


async def test_request_id_is_echoed_when_sent(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "client-id-123"})
    assert response.headers["x-request-id"] == "client-id-123"


async def test_request_id_is_generated_when_absent_or_unsafe(client: httpx.AsyncClient) -> None:
    plain = await client.get("/health")
    unsafe = await client.get("/health", headers={"X-Request-ID": 'bad id\n{"level":"ERROR"}'})
    assert len(plain.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != 'bad id\n{"level":"ERROR"}'
    assert len(unsafe.headers["x-request-id"]) == 32


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope", headers={"X-Request-ID": "r-404"})
    assert response.status_code == 404
    assert problem_of(response)["title"] == "Not Found"
    assert response.headers["x-request-id"] == "r-404"


async def test_wrong_method_is_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.put("/health")
    assert response.status_code == 405
    problem_of(response)
    assert "GET" in response.headers["allow"]


async def test_crash_is_500_problem_without_details_or_message_in_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    crashing = create_app(settings)

    @crashing.get("/boom")
    async def boom(email: str) -> None:
        raise RuntimeError(f"secret {email} SELECT * FROM users_personal")

    with caplog.at_level(logging.ERROR):
        async with client_of(crashing) as http:
            response = await http.get("/boom?email=ada@example.com", headers={"X-Request-ID": "r-500"})
    assert response.status_code == 500
    problem = problem_of(response)
    assert "secret" not in response.text
    assert "SELECT" not in response.text
    assert problem["detail"] == "An unexpected error occurred."
    assert response.headers["x-request-id"] == "r-500"
    ours = next(h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME)
    logged = "\n".join(ours.format(record) for record in caplog.records)
    assert "RuntimeError" in logged
    assert "ada@example.com" not in logged


async def test_docs_and_openapi_are_public_and_declare_bearer_auth(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    create = spec["paths"]["/users/personal"]["post"]
    assert create["security"] == [{"HTTPBearer": ["users:write"]}]  # the scope, as OpenAPI 3.1 allows
    assert {"401", "403", "409", "415", "422"} <= create["responses"].keys()


@asynccontextmanager
async def behind_a_database_proxy(settings: Settings) -> AsyncIterator[tuple[TcpProxy, httpx.AsyncClient]]:
    """A client of an API-only app whose database connections go through a fault proxy."""
    proxy, proxied_url = await TcpProxy.in_front_of(str(settings.database_url))
    async with started_app(settings, database_url=proxied_url) as (_, http):
        yield proxy, http
    await proxy.stop()


async def test_database_outage_is_503_problem_then_recovers(settings: Settings) -> None:
    async with behind_a_database_proxy(settings) as (proxy, http):
        path = f"/users/{unique_id()}/personal"
        assert (await http.get(path, headers=bearer())).status_code == 404
        await proxy.cut()
        down = await http.get(path, headers=bearer())
        assert down.status_code == 503
        assert problem_of(down)["detail"] == "A backing service is unavailable; retry shortly."
        assert down.headers["retry-after"]
        not_ready = await http.get("/ready")
        assert not_ready.status_code == 503
        assert problem_of(not_ready)["checks"]["database"].startswith("failed")
        await proxy.restore()
        assert (await http.get(path, headers=bearer())).status_code == 404

        async def ready_again() -> bool:  # /ready reuses its checks for a second
            return (await http.get("/ready")).status_code == 200

        await eventually(ready_again, timeout=10)


async def test_a_content_length_that_is_not_a_number_does_not_lift_the_body_limit() -> None:
    # uvicorn's parsers refuse such a header; behind anything that passes it on, the body is counted.
    read: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            read.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                return

    edge = EdgeMiddleware(app, request_id_pattern=re.compile(r"^\w+$"), max_body_bytes=1024)
    chunks = iter([{"type": "http.request", "body": b"x" * 1000, "more_body": True}] * 3)

    async def receive() -> dict[str, Any]:
        return next(chunks)

    async def send(_: Any) -> None:
        return None

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [(b"content-length", b"12abc")]}
    with pytest.raises(BodyTooLarge):
        await edge(scope, receive, send)
    assert read == [1000]  # the second chunk took it over the limit


async def test_ready_runs_its_checks_at_most_about_once_a_second(settings: Settings) -> None:
    # /ready is public: each round costs a query and two AWS calls, so a flood must not multiply them.
    async with behind_a_database_proxy(settings) as (proxy, http):
        before = proxy.requests
        answers = await asyncio.gather(*(http.get("/ready") for _ in range(50)))
        assert {response.status_code for response in answers} == {200}
        assert proxy.requests - before <= 4  # one round of checks (two, if a second passed)
