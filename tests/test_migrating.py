"""docs/migrating.md cannot rot: its request pairs are replayed, in order, against a started app.

A fenced block tagged `http before` or `http after` is a request (the original's, and the changed one);
the plain `http` block after it is the answer the page promises: status, Content-Type, and every field
shown in the body (a subset: fields not shown may be present). `<token: a b>` is a token with scopes a, b.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from app.core.config import Settings
from tests.helpers import ROOT, bearer, started_app

DOC = ROOT / "docs" / "migrating.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
TOKEN = re.compile(r"^Bearer <token: (?P<scopes>[a-z0-9: ]+)>$")


@dataclass
class Exchange:
    section: str
    role: str  # "before" or "after"
    method: str
    target: str
    headers: dict[str, str]
    body: str
    status: int = 0
    answer_headers: dict[str, str] = field(default_factory=dict)
    answer_body: Any = None

    def __str__(self) -> str:
        return f"{self.section}: {self.role} {self.method} {self.target}"


def _head_and_body(block: str) -> tuple[list[str], str]:
    head, _, body = block.partition("\n\n")
    return head.splitlines(), body.strip()


def _headers(lines: list[str]) -> dict[str, str]:
    pairs = (line.split(": ", 1) for line in lines)
    return {name.lower(): value for name, value in pairs}


def exchanges(text: str) -> Iterator[Exchange]:
    """The page's requests with their promised answers, in order; each request block must be followed by
    its answer block."""
    section = ""
    pending: Exchange | None = None
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^### (.+)$", before, re.MULTILINE)
        section = headings[-1] if headings else ""
        info = match["info"].split()
        if not info or info[0] != "http":
            continue
        lines, body = _head_and_body(match["body"])
        if info[1:] in (["before"], ["after"]):
            assert pending is None, f"{pending}: no answer block before the next request"
            method, target, version = lines[0].split(" ")
            assert version == "HTTP/1.1", lines[0]
            pending = Exchange(section, info[1], method, target, _headers(lines[1:]), body)
        else:
            assert pending is not None, f"{section}: an answer block without a request"
            version, status, *_ = lines[0].split(" ")
            assert version == "HTTP/1.1", lines[0]
            pending.status = int(status)
            pending.answer_headers = _headers(lines[1:])
            pending.answer_body = json.loads(body) if body else None
            yield pending
            pending = None
    assert pending is None, f"{pending}: no answer block"


def contains(actual: Any, shown: Any, where: str = "body") -> None:
    """Every field the page shows is in the answer, with that value (dicts recursively, the rest equal)."""
    if isinstance(shown, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        for name, value in shown.items():
            assert name in actual, f"{where}.{name} missing from {actual!r}"
            contains(actual[name], value, f"{where}.{name}")
    elif isinstance(shown, list):
        assert isinstance(actual, list) and len(actual) == len(shown), f"{where}: {actual!r} != {shown!r}"
        for index, (item, expected) in enumerate(zip(actual, shown, strict=True)):
            contains(item, expected, f"{where}[{index}]")
    else:
        assert actual == shown, f"{where}: {actual!r} != {shown!r}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    kept = re.sub(r"[^\w\- ]", "", heading.lower())
    return kept.replace(" ", "-")


def test_every_client_difference_has_a_before_and_an_after_pair() -> None:
    text = DOC.read_text()
    client_part = text.split("## For API clients", 1)[1].split("\n## ", 1)[0]
    sections = re.findall(r"^### (.+)$", client_part, re.MULTILINE)
    roles: dict[str, set[str]] = {name: set() for name in sections}
    for exchange in exchanges(text):
        roles[exchange.section].add(exchange.role)
    assert len(sections) >= 6
    assert all(found == {"before", "after"} for found in roles.values()), roles
    anchors = set(re.findall(r"\]\(#([^)]+)\)", client_part))
    assert anchors == {slug(name) for name in sections}, "the summary table's links and the sections differ"


@pytest.fixture
def docs_database(new_database: Any) -> str:
    return str(new_database())


@pytest.fixture
def quiet_aws(moto_url: str) -> dict[str, str]:
    """A bucket and a topic of the page's own: nothing it uploads reaches the suite's queue or consumer."""
    options: dict[str, Any] = {
        "endpoint_url": moto_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    boto3.client("s3", **options).create_bucket(Bucket="migrating-docs")
    topic = boto3.client("sns", **options).create_topic(Name="migrating-docs")["TopicArn"]
    return {"s3_bucket_name": "migrating-docs", "sns_topic_arn": topic}


async def test_migrating_guide_requests_get_the_answers_it_shows(
    settings: Settings, docs_database: str, quiet_aws: dict[str, str]
) -> None:
    replayed = list(exchanges(DOC.read_text()))
    assert len(replayed) >= 12
    async with started_app(settings, database_url=docs_database, **quiet_aws) as (_, http):
        for exchange in replayed:
            headers = dict(exchange.headers)
            if "authorization" in headers:
                token = TOKEN.match(headers.pop("authorization"))
                assert token, f"{exchange}: write the token as <token: scope ...>"
                headers.update(bearer(token["scopes"].split()))
            response = await http.request(
                exchange.method, exchange.target, headers=headers, content=exchange.body.encode() or None
            )
            answer = f"{exchange}: {response.status_code} {response.headers} {response.text}"
            assert response.status_code == exchange.status, answer
            for name, value in exchange.answer_headers.items():
                assert response.headers[name].startswith(value), answer
            if exchange.answer_body is not None:
                contains(response.json(), exchange.answer_body, str(exchange))
