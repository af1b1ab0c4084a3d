"""POST /sns/webhook with messages signed by a test key whose certificate a loopback server hands out."""

import asyncio
import base64
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings, SettingsError, load
from app.core.logging import HANDLER_NAME
from app.notifications.deps import get_notification_handler
from app.notifications.sns_verification import (
    CERT_MAX_BYTES,
    MAX_MESSAGE_AGE,
    HandledMessageIds,
    NotificationHandler,
    SnsMessageVerifier,
)
from tests.aws import AWS_REGION
from tests.helpers import ROOT, client_of, problem_of, resources, started_app, unique_id

OTHER_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:someone-elses-topic"
# The keys AWS documents for the string to sign, written out here independently of the app.
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SNS_HEADERS = {"Content-Type": "text/plain; charset=UTF-8"}  # what SNS sends, JSON notwithstanding

Document = dict[str, Any]


# --- a loopback stand-in for SNS: signing certificates and SubscribeURLs ---------------------------


class Loopback:
    """Serves the test certificate at any `.pem` path and records every request path it sees."""

    def __init__(self, certificate_pem: bytes) -> None:
        self.requests: list[str] = []
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                loopback.requests.append(self.path)
                status, body, headers = loopback.answer(self.path, certificate_pem)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def answer(self, path: str, certificate_pem: bytes) -> tuple[int, bytes, dict[str, str]]:
        if path.startswith("/sns/huge/"):
            return 200, b"A" * (CERT_MAX_BYTES + 1), {}
        if path.startswith("/sns/garbage/"):
            return 200, b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n", {}
        if path.startswith("/sns/missing/"):
            return 404, b"", {}
        if path.startswith("/sns/redirect/"):
            return 302, b"", {"Location": f"{self.base}/elsewhere{path}"}
        if path.endswith(".pem"):
            return 200, certificate_pem, {"Content-Type": "application/x-x509-ca-cert"}
        if path.startswith("/sns/confirm-fails/"):
            return 500, b"<Error/>", {}
        if path.startswith("/sns/confirm/"):
            return 200, b"<ConfirmSubscriptionResponse/>", {"Content-Type": "text/xml"}
        return 404, b"", {}

    def seen(self, path_prefix: str) -> int:
        return sum(1 for path in self.requests if path.startswith(path_prefix))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _self_signed(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def loopback(signing_key: rsa.RSAPrivateKey) -> Iterator[Loopback]:
    server = Loopback(_self_signed(signing_key))
    yield server
    server.stop()


# --- the apps: the webhook trusting only the loopback's /sns/ paths, or with the default rule -------


@pytest.fixture(scope="module")
def loopback_settings(settings: Settings, loopback: Loopback) -> Settings:
    # Trusting only /sns/ keeps an untrusted URL on the same live server: a fetch of it would show.
    trusted = rf"^http://127\.0\.0\.1:{loopback.port}/sns/"
    return settings.model_copy(update={"sns_trusted_url_pattern": trusted})


@pytest.fixture(scope="module")
async def webhook_app(loopback_settings: Settings) -> AsyncIterator[FastAPI]:
    async with started_app(loopback_settings) as (app, _):
        yield app


@pytest.fixture(scope="module")
async def webhook(webhook_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(webhook_app) as http:
        yield http


@pytest.fixture(scope="module")
async def v1_webhook_app(loopback_settings: Settings) -> AsyncIterator[FastAPI]:
    """The webhook with SNS_ALLOW_SIGNATURE_V1 on."""
    async with started_app(loopback_settings, sns_allow_signature_v1=True) as (app, _):
        yield app


@dataclass
class DefaultRuleWebhook:
    """A client of an app with the default URL rule, and every URL its outbound HTTP client was asked for."""

    client: httpx.AsyncClient
    outbound: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def default_rule_app(settings: Settings) -> AsyncIterator[FastAPI]:
    # The class default, not whatever the environment says: this is the rule a deployment gets.
    default = Settings.model_fields["sns_trusted_url_pattern"].default
    async with started_app(settings, sns_trusted_url_pattern=default) as (app, _):
        yield app


@pytest.fixture
async def default_rule_webhook(default_rule_app: FastAPI) -> AsyncIterator[DefaultRuleWebhook]:
    async with client_of(default_rule_app) as http:
        webhook = DefaultRuleWebhook(http)

        # Recorded, then refused: the test needs no network, and a fetch shows as a 503.
        async def refuse(request: httpx.Request) -> None:
            webhook.outbound.append(str(request.url))
            raise httpx.ConnectError("no outbound request in this test", request=request)

        resources(default_rule_app).http.event_hooks = {"request": [refuse], "response": []}
        yield webhook


@contextmanager
def handler_installed(app: FastAPI, handler: NotificationHandler) -> Iterator[None]:
    """`handler` instead of the app's ingestion dispatcher for the duration."""

    async def installed() -> NotificationHandler:
        return handler

    app.dependency_overrides[get_notification_handler] = installed
    try:
        yield
    finally:
        del app.dependency_overrides[get_notification_handler]


@contextmanager
def recording_dispatcher(app: FastAPI) -> Iterator[list[tuple[str, str]]]:
    """A dispatcher that records (message, message id) per call."""
    calls: list[tuple[str, str]] = []

    async def handle(message: str, message_id: str) -> None:
        calls.append((message, message_id))

    with handler_installed(app, handle):
        yield calls


@pytest.fixture
def dispatched(webhook_app: FastAPI) -> Iterator[list[tuple[str, str]]]:
    with recording_dispatcher(webhook_app) as calls:
        yield calls


# --- building and signing messages as SNS does ---------------------------------------------------


def _timestamp(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(document: Document, key: rsa.RSAPrivateKey, version: str | None = None) -> Document:
    """`document` with Signature over its own fields, by SignatureVersion (or `version` if given)."""
    keys = NOTIFICATION_KEYS if document["Type"] == "Notification" else CONFIRMATION_KEYS
    string_to_sign = "".join(f"{name}\n{document[name]}\n" for name in keys if name in document)
    sha1 = (version or document["SignatureVersion"]) == "1"
    algorithm = hashes.SHA1() if sha1 else hashes.SHA256()  # noqa: S303  (SNS's SignatureVersion 1)
    signature = key.sign(string_to_sign.encode(), padding.PKCS1v15(), algorithm)
    return {**document, "Signature": base64.b64encode(signature).decode()}


class Sns:
    """Makes signed messages for one test, each test with its own certificate path."""

    def __init__(self, key: rsa.RSAPrivateKey, loopback: Loopback, topic_arn: str) -> None:
        self.key = key
        self.loopback = loopback
        self.topic_arn = topic_arn
        self.cert_path = f"/sns/{unique_id('cert')}.pem"
        self.cert_url = loopback.base + self.cert_path

    def notification(self, message: str = '{"order": 1}', **fields: Any) -> Document:
        document = {
            "Type": "Notification",
            "MessageId": unique_id("msg"),
            "TopicArn": self.topic_arn,
            "Message": message,
            "Timestamp": _timestamp(),
            "SignatureVersion": "2",
            "SigningCertURL": self.cert_url,
            "UnsubscribeURL": f"{self.loopback.base}/sns/unsubscribe",
            **fields,
        }
        return sign(document, self.key)

    def confirmation(
        self, subscribe_path: str, kind: str = "SubscriptionConfirmation", **fields: Any
    ) -> Document:
        token = unique_id("token")
        document = {
            "Type": kind,
            "MessageId": unique_id("msg"),
            "Token": token,
            "TopicArn": self.topic_arn,
            "Message": "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
            "SubscribeURL": f"{self.loopback.base}{subscribe_path}?Action=ConfirmSubscription&Token={token}",
            "Timestamp": _timestamp(),
            "SignatureVersion": "2",
            "SigningCertURL": self.cert_url,
            **fields,
        }
        return sign(document, self.key)


@pytest.fixture
def sns(signing_key: rsa.RSAPrivateKey, loopback: Loopback, settings: Settings) -> Sns:
    return Sns(signing_key, loopback, settings.sns_topic_arn)


async def post(
    client: httpx.AsyncClient, document: Document, header_type: str | None = None
) -> httpx.Response:
    headers = {**SNS_HEADERS, "x-amz-sns-message-type": header_type or str(document.get("Type"))}
    return await client.post("/sns/webhook", content=json.dumps(document), headers=headers)


def assert_refused(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 403, response.text
    problem = problem_of(response)
    assert problem["type"] == "/problems/sns-signature"
    assert detail in problem["detail"]


# --- genuine messages ------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", [None, "Hi"])
async def test_signed_notification_is_accepted_and_dispatched_once(
    webhook: httpx.AsyncClient, sns: Sns, dispatched: list[tuple[str, str]], subject: str | None
) -> None:
    fields = {"Subject": subject} if subject else {}
    document = sns.notification('{"key": "in/file.csv"}\nsecond line', **fields)
    response = await post(webhook, document)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "message_id": document["MessageId"]}
    assert dispatched == [('{"key": "in/file.csv"}\nsecond line', document["MessageId"])]


async def test_signature_v1_notification_is_403_by_default(
    webhook: httpx.AsyncClient, sns: Sns, loopback: Loopback, dispatched: list[tuple[str, str]]
) -> None:
    response = await post(webhook, sns.notification(SignatureVersion="1"))
    assert_refused(response, "SignatureVersion 1 (SHA1) is not accepted")
    assert dispatched == []
    assert loopback.seen(sns.cert_path) == 0


@pytest.mark.parametrize("subject", [None, "Hi"])
async def test_signature_v1_notification_is_accepted_when_allowed(
    v1_webhook_app: FastAPI, sns: Sns, subject: str | None
) -> None:
    fields = {"SignatureVersion": "1"} | ({"Subject": subject} if subject else {})
    document = sns.notification('{"key": "in/file.csv"}', **fields)
    with recording_dispatcher(v1_webhook_app) as dispatched:
        async with client_of(v1_webhook_app) as v1_webhook:
            response = await post(v1_webhook, document)
            tampered = await post(v1_webhook, {**document, "Message": "tampered"})
    assert response.status_code == 200, response.text
    assert_refused(tampered, "does not match")
    assert dispatched == [('{"key": "in/file.csv"}', document["MessageId"])]


async def test_replayed_notification_is_answered_200_as_a_duplicate_and_not_dispatched_again(
    webhook: httpx.AsyncClient, sns: Sns, dispatched: list[tuple[str, str]]
) -> None:
    document = sns.notification()
    first = await post(webhook, document)
    replays = [await post(webhook, document) for _ in range(2)]
    assert first.json() == {"status": "accepted", "message_id": document["MessageId"]}
    for replay in replays:
        assert replay.status_code == 200, replay.text
        assert replay.json() == {"status": "duplicate", "message_id": document["MessageId"]}
    assert dispatched == [(document["Message"], document["MessageId"])]


async def test_notification_whose_delivery_failed_is_dispatched_again_on_redelivery(
    webhook: httpx.AsyncClient, webhook_app: FastAPI, sns: Sns
) -> None:
    attempts: list[str] = []

    async def fail_first_attempt(message: str, message_id: str) -> None:
        attempts.append(message_id)
        if len(attempts) == 1:
            raise RuntimeError("ingestion is down")

    document = sns.notification()
    with handler_installed(webhook_app, fail_first_attempt):
        failed = await post(webhook, document)
        redelivered = await post(webhook, document)
        replayed = await post(webhook, document)
    assert failed.status_code == 500
    assert redelivered.json() == {"status": "accepted", "message_id": document["MessageId"]}
    assert replayed.json() == {"status": "duplicate", "message_id": document["MessageId"]}
    assert attempts == [document["MessageId"]] * 2


def test_handled_message_ids_are_forgotten_once_their_message_is_too_old_to_accept() -> None:
    handled = HandledMessageIds(max_entries=10)
    now = datetime.now(UTC)
    handled.add("fresh", sent=now - MAX_MESSAGE_AGE + timedelta(minutes=1))
    handled.add("stale", sent=now - MAX_MESSAGE_AGE - timedelta(seconds=1))
    assert "fresh" in handled
    assert "stale" not in handled


def test_handled_message_ids_keep_at_most_their_cap_forgetting_the_oldest() -> None:
    handled = HandledMessageIds(max_entries=2)
    for message_id in ("a", "b", "c"):
        handled.add(message_id, sent=datetime.now(UTC))
    assert ["a" in handled, "b" in handled, "c" in handled] == [False, True, True]
    assert len(handled) == 2


async def test_notification_with_null_subject_is_signed_without_it(
    webhook: httpx.AsyncClient, sns: Sns, dispatched: list[tuple[str, str]]
) -> None:
    document = {**sns.notification(), "Subject": None}
    assert (await post(webhook, document)).status_code == 200
    assert len(dispatched) == 1


async def test_notification_is_handled_and_its_body_never_logged(
    webhook: httpx.AsyncClient, sns: Sns, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "ada.lovelace@example.com blood type AB-"
    document = sns.notification(json.dumps({"email": canary}))
    tampered = {**sns.notification(json.dumps({"email": canary})), "MessageId": "other"}
    with caplog.at_level(logging.INFO):
        accepted = await post(webhook, document)
        refused = await post(webhook, tampered)
    assert accepted.status_code == 200
    assert accepted.json() == {"status": "accepted", "message_id": document["MessageId"]}
    assert refused.status_code == 403
    ours = next(h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME)
    logged = "\n".join(ours.format(record) for record in caplog.records)
    assert "sns notification is not a file event" in logged  # what ingestion's dispatcher said of it
    assert document["MessageId"] in logged
    assert "ada.lovelace" not in logged


async def test_subscription_confirmation_visits_the_subscribe_url_once(
    webhook: httpx.AsyncClient, sns: Sns, loopback: Loopback, settings: Settings
) -> None:
    path = f"/sns/confirm/{unique_id()}"
    response = await post(webhook, sns.confirmation(path))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "confirmed", "topic_arn": settings.sns_topic_arn}
    assert loopback.seen(path) == 1


@pytest.mark.parametrize("prefix", ["/sns/confirm-fails/", "/sns/redirect/"], ids=["500", "redirect"])
async def test_subscription_confirmation_that_fails_is_502_and_redirects_are_not_followed(
    webhook: httpx.AsyncClient, sns: Sns, loopback: Loopback, prefix: str
) -> None:
    path = f"{prefix}{unique_id()}"
    response = await post(webhook, sns.confirmation(path))
    assert response.status_code == 502
    assert problem_of(response)["detail"] == "Could not confirm the subscription."
    assert loopback.seen(path) == 1
    assert loopback.seen(f"/elsewhere{path}") == 0


async def test_unsubscribe_confirmation_is_acknowledged_without_resubscribing(
    webhook: httpx.AsyncClient, sns: Sns, loopback: Loopback
) -> None:
    path = f"/sns/confirm/{unique_id()}"
    response = await post(webhook, sns.confirmation(path, kind="UnsubscribeConfirmation"))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "unsubscribed"}
    assert loopback.seen(path) == 0


async def test_certificate_is_fetched_once_for_many_messages(
    webhook: httpx.AsyncClient, sns: Sns, loopback: Loopback, dispatched: list[tuple[str, str]]
) -> None:
    concurrent = await asyncio.gather(*(post(webhook, sns.notification()) for _ in range(8)))
    later = [await post(webhook, sns.notification()) for _ in range(3)]
    assert [response.status_code for response in concurrent + later] == [200] * 11
    assert len(dispatched) == 11
    assert loopback.seen(sns.cert_path) == 1


# --- forged and unacceptable messages: 403, and nothing happens ------------------------------------


FORGERIES: dict[str, tuple[Callable[[Sns, rsa.RSAPrivateKey], Document], str, bool]] = {
    # name: (make the message, what the detail says, whether the certificate had to be fetched)
    "tampered-message": (
        lambda sns, _: {**sns.notification(), "Message": '{"order": 2}'},
        "does not match",
        True,
    ),
    "subject-added-after-signing": (
        lambda sns, _: {**sns.notification(), "Subject": "Injected"},
        "does not match",
        True,
    ),
    "signed-by-another-key": (
        lambda sns, other: sign({**sns.notification(), "Signature": ""}, other),
        "does not match",
        True,
    ),
    "sha1-signature-declared-v2": (
        lambda sns, _: sign(sns.notification(), sns.key, version="1"),
        "does not match",
        True,
    ),
    "unsigned": (
        lambda sns, _: {k: v for k, v in sns.notification().items() if k != "Signature"},
        "no `Signature`",
        False,
    ),
    "signature-not-base64": (
        lambda sns, _: {**sns.notification(), "Signature": "not base64!"},
        "base64",
        False,
    ),
    "unknown-signature-version": (
        lambda sns, _: sign({**sns.notification(), "SignatureVersion": "3"}, sns.key, version="2"),
        "version is not supported",
        False,
    ),
    "unknown-type": (lambda sns, _: {**sns.notification(), "Type": "Other"}, "type is not supported", False),
    "missing-message-id": (
        lambda sns, _: sign({k: v for k, v in sns.notification().items() if k != "MessageId"}, sns.key),
        "no `MessageId`",
        False,
    ),
    "message-not-a-string": (
        lambda sns, _: {**sns.notification(), "Message": {"order": 1}},
        "`Message` is not a string",
        False,
    ),
    "topic-not-accepted": (
        lambda sns, _: sns.notification(TopicArn=OTHER_TOPIC_ARN),
        "topic is not accepted",
        False,
    ),
    "stale-timestamp": (
        lambda sns, _: sns.notification(Timestamp=_timestamp(-timedelta(hours=1, minutes=1))),
        "too old",
        False,
    ),
    "future-timestamp": (
        lambda sns, _: sns.notification(Timestamp=_timestamp(timedelta(minutes=10))),
        "from the future",
        False,
    ),
    "timestamp-without-zone": (
        lambda sns, _: sns.notification(Timestamp=datetime.now(UTC).replace(tzinfo=None).isoformat()),
        "no time zone",
        False,
    ),
}


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("name", list(FORGERIES))
async def test_forged_or_unacceptable_notification_is_403_and_not_dispatched(
    webhook: httpx.AsyncClient,
    sns: Sns,
    loopback: Loopback,
    other_key: rsa.RSAPrivateKey,
    dispatched: list[tuple[str, str]],
    name: str,
) -> None:
    make, detail, needs_certificate = FORGERIES[name]
    response = await post(webhook, make(sns, other_key))
    assert_refused(response, detail)
    assert dispatched == []
    assert loopback.seen(sns.cert_path) == (1 if needs_certificate else 0)


async def test_header_type_that_differs_from_the_body_is_403(
    webhook: httpx.AsyncClient, sns: Sns, loopback: Loopback, dispatched: list[tuple[str, str]]
) -> None:
    path = f"/sns/confirm/{unique_id()}"
    confirmation = await post(webhook, sns.confirmation(path), header_type="Notification")
    notification = await post(webhook, sns.notification(), header_type="SubscriptionConfirmation")
    assert_refused(confirmation, "header does not match")
    assert_refused(notification, "header does not match")
    assert loopback.seen(path) == 0
    assert dispatched == []


@pytest.mark.parametrize(
    "cert_url",
    [
        "{base}/elsewhere/{id}.pem",  # live and serving the certificate, but outside the trusted pattern
        "{base}/sns/{id}.txt",  # trusted location, but not a .pem
        "http://127.0.0.2:{port}/sns/{id}.pem",
        "https://evil.example/{id}.pem",  # unresolvable: a fetch would have been a 503, not a 403
    ],
    ids=["untrusted-path", "not-pem", "untrusted-host", "untrusted-https-host"],
)
async def test_untrusted_certificate_url_is_403_without_fetching_it(
    webhook: httpx.AsyncClient,
    sns: Sns,
    loopback: Loopback,
    dispatched: list[tuple[str, str]],
    cert_url: str,
) -> None:
    cert_id = unique_id("cert")
    url = cert_url.format(base=loopback.base, port=loopback.port, id=cert_id)
    response = await post(webhook, sns.notification(SigningCertURL=url))
    assert_refused(response, "signing certificate URL is not trusted")
    assert dispatched == []
    assert [path for path in loopback.requests if cert_id in path] == []


async def test_untrusted_subscribe_url_in_a_signed_confirmation_is_403_and_not_visited(
    webhook: httpx.AsyncClient, sns: Sns, loopback: Loopback
) -> None:
    path = f"/elsewhere/confirm/{unique_id()}"
    response = await post(webhook, sns.confirmation(path))
    assert_refused(response, "subscribe URL is not trusted")
    assert loopback.seen(path) == 0
    assert loopback.seen(sns.cert_path) == 0


@pytest.mark.parametrize(
    ("prefix", "detail"),
    [
        ("/sns/huge/", "too large"),
        ("/sns/garbage/", "not a valid certificate"),
        ("/sns/missing/", "could not be fetched"),
        ("/sns/redirect/", "could not be fetched"),
    ],
)
async def test_bad_certificate_at_a_trusted_url_is_403(
    webhook: httpx.AsyncClient,
    sns: Sns,
    loopback: Loopback,
    dispatched: list[tuple[str, str]],
    prefix: str,
    detail: str,
) -> None:
    path = f"{prefix}{unique_id('cert')}.pem"
    response = await post(webhook, sns.notification(SigningCertURL=loopback.base + path))
    assert_refused(response, detail)
    assert dispatched == []
    assert loopback.seen(path) == 1
    assert loopback.seen(f"/elsewhere{path}") == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"Notification"', b"\xff\xfe\x00", b"[" * 100_000],
    ids=["malformed", "array", "string", "not-utf8", "deeply-nested"],
)
async def test_body_that_is_not_a_json_object_is_400(webhook: httpx.AsyncClient, body: bytes) -> None:
    response = await webhook.post("/sns/webhook", content=body, headers=SNS_HEADERS)
    assert response.status_code == 400
    assert problem_of(response)["type"] == "/problems/json"


def _counter(metrics: str, kind: str, outcome: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "sns_webhook_messages_total" and sample.labels == {"type": kind, "outcome": outcome}
    )


async def test_outcomes_are_counted_by_known_type_only(
    webhook: httpx.AsyncClient, sns: Sns, dispatched: list[tuple[str, str]]
) -> None:
    before = (await webhook.get("/metrics")).text
    await post(webhook, sns.notification())
    await post(webhook, {**sns.notification(), "Message": "tampered"})
    await post(webhook, {**sns.notification(), "Type": "Forged-Type-123"}, header_type="Forged-Type-123")
    after = (await webhook.get("/metrics")).text
    assert _counter(after, "Notification", "accepted") == _counter(before, "Notification", "accepted") + 1
    assert _counter(after, "Notification", "rejected") == _counter(before, "Notification", "rejected") + 1
    assert _counter(after, "unknown", "rejected") == _counter(before, "unknown", "rejected") + 1
    assert "Forged-Type-123" not in after


# --- the default URL rule: the regional SNS host of the message's topic -----------------------------


TOPIC_REGION_HOST = f"https://sns.{AWS_REGION}.amazonaws.com"  # the suite's topic is in AWS_REGION


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.s3.amazonaws.com/{id}.pem",  # an S3 bucket named `sns`: anyone can host a file there
        "https://sns.s3-external-1.amazonaws.com/{id}.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-{id}.pem",
        f"{TOPIC_REGION_HOST}.cn/SimpleNotificationService-{{id}}.pem",
        f"{TOPIC_REGION_HOST.replace('https', 'http')}/SimpleNotificationService-{{id}}.pem",
    ],
    ids=["s3-bucket-named-sns", "s3-external-1", "other-region", "cn-domain-for-aws-topic", "plain-http"],
)
async def test_default_rule_refuses_certificate_url_off_the_topics_sns_host_without_fetching(
    default_rule_webhook: DefaultRuleWebhook, sns: Sns, cert_url: str
) -> None:
    url = cert_url.format(id=unique_id("cert"))
    response = await post(default_rule_webhook.client, sns.notification(SigningCertURL=url))
    assert_refused(response, "signing certificate URL is not trusted")
    assert default_rule_webhook.outbound == []


async def test_default_rule_refuses_subscribe_url_off_the_topics_sns_host_without_fetching(
    default_rule_webhook: DefaultRuleWebhook, sns: Sns
) -> None:
    cert_url = f"{TOPIC_REGION_HOST}/SimpleNotificationService-{unique_id('cert')}.pem"
    subscribe_url = "https://sns.s3.amazonaws.com/?Action=ConfirmSubscription&Token=t"
    confirmation = sns.confirmation("/", SigningCertURL=cert_url, SubscribeURL=subscribe_url)
    response = await post(default_rule_webhook.client, confirmation)
    assert_refused(response, "subscribe URL is not trusted")
    assert default_rule_webhook.outbound == []


async def test_default_rule_fetches_the_certificate_from_the_topics_regional_sns_host(
    default_rule_webhook: DefaultRuleWebhook, sns: Sns
) -> None:
    cert_url = f"{TOPIC_REGION_HOST}/SimpleNotificationService-{unique_id('cert')}.pem"
    response = await post(default_rule_webhook.client, sns.notification(SigningCertURL=cert_url))
    assert response.status_code == 503  # the fixture refuses every outbound connection
    assert cert_url in default_rule_webhook.outbound


AWS_TOPIC = "arn:aws:sns:us-east-1:123456789012:topic"
CN_TOPIC = "arn:aws-cn:sns:cn-north-1:123456789012:topic"
GOV_TOPIC = "arn:aws-us-gov:sns:us-gov-west-1:123456789012:topic.fifo"
CERT = "SimpleNotificationService-abc.pem"


@pytest.mark.parametrize(
    ("topic_arn", "url", "trusted"),
    [
        (AWS_TOPIC, f"https://sns.us-east-1.amazonaws.com/{CERT}", True),
        (AWS_TOPIC, "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t", True),
        (CN_TOPIC, f"https://sns.cn-north-1.amazonaws.com.cn/{CERT}", True),
        (GOV_TOPIC, f"https://sns.us-gov-west-1.amazonaws.com/{CERT}", True),
        (AWS_TOPIC, "https://sns.s3.amazonaws.com/x.pem", False),
        (AWS_TOPIC, "https://sns.s3-external-1.amazonaws.com/x.pem", False),
        (AWS_TOPIC, f"https://sns.us-west-2.amazonaws.com/{CERT}", False),
        (AWS_TOPIC, f"https://sns.us-east-1.amazonaws.com.cn/{CERT}", False),
        (CN_TOPIC, f"https://sns.cn-north-1.amazonaws.com/{CERT}", False),
        (GOV_TOPIC, f"https://sns.us-gov-west-1.amazonaws.com.cn/{CERT}", False),
        (AWS_TOPIC, f"http://sns.us-east-1.amazonaws.com/{CERT}", False),
        (AWS_TOPIC, f"https://SNS.us-east-1.amazonaws.com/{CERT}", False),
        (AWS_TOPIC, f"https://sns.us-east-1.amazonaws.com./{CERT}", False),
        (AWS_TOPIC, f"https://sns.us-east-1.amazonaws.com.evil.example/{CERT}", False),
        (AWS_TOPIC, f"https://sns.us-east-1.amazonaws.com:443/{CERT}", False),
        (AWS_TOPIC, f"https://sns.us-east-1.amazonaws.com:8443/{CERT}", False),
        (AWS_TOPIC, f"https://sns.us-east-1.amazonaws.com@evil.example/{CERT}", False),
        (AWS_TOPIC, f"https://evil.example/?https://sns.us-east-1.amazonaws.com/{CERT}", False),
        (AWS_TOPIC, f" https://sns.us-east-1.amazonaws.com/{CERT}", False),
        (AWS_TOPIC, f"https://sns.us-east-1.amazonaws.com\\@evil.example/{CERT}", False),
        (AWS_TOPIC, "https://sns.us-east-1.amazonaws.com", False),
        (
            "arn:aws-iso:sns:us-iso-east-1:123456789012:topic",
            f"https://sns.us-iso-east-1.c2s.ic.gov/{CERT}",
            False,
        ),
        ("arn:aws:sns:s3:123456789012:topic", f"https://sns.s3.amazonaws.com/{CERT}", False),
        ("not an arn", f"https://sns.us-east-1.amazonaws.com/{CERT}", False),
    ],
)
async def test_default_rule_trusts_only_the_https_sns_host_of_the_topics_region_and_partition(
    topic_arn: str, url: str, trusted: bool
) -> None:
    async with httpx.AsyncClient() as http:
        verifier = SnsMessageVerifier(None, http, accepted_topic_arns=[topic_arn], allow_signature_v1=False)
        assert verifier.is_trusted(url, topic_arn) is trusted


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://sns.example/x.pem", True),
        ("http://sns.example/x.pem", False),  # the pattern decides the scheme too
        # A lax pattern still cannot be steered to another host by the URL's syntax.
        ("https://sns.example@evil.example/x.pem", False),
        ("https://sns.example:secret@evil.example/x.pem", False),
        ("https://sns.example\\@evil.example/x.pem", False),
        ("https://sns.example:99999/x.pem", False),
        ("https://sns.example/x\n.pem", False),
    ],
)
async def test_explicit_pattern_replaces_the_host_rule_but_not_the_syntax_checks(
    url: str, trusted: bool
) -> None:
    async with httpx.AsyncClient() as http:
        verifier = SnsMessageVerifier(
            r"^https://sns\.example", http, accepted_topic_arns=[AWS_TOPIC], allow_signature_v1=False
        )
        assert verifier.is_trusted(url, AWS_TOPIC) is trusted


# --- the webhook's settings ------------------------------------------------------------------------


REQUIRED_ENV = {
    "DATABASE_URL": "postgresql://app@db.internal/app",
    "S3_BUCKET_NAME": "bucket",
    "SNS_TOPIC_ARN": AWS_TOPIC,
    "SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/queue",
    "JWT_SECRET": "x" * 40,
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The required settings in the environment, read from a directory without a `.env`."""
    monkeypatch.chdir(ROOT / "tests")
    for name, value in REQUIRED_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_webhook_defaults_are_the_strict_ones(env: pytest.MonkeyPatch) -> None:
    settings = load(Settings)
    assert settings.sns_trusted_url_pattern is None
    assert settings.sns_allow_signature_v1 is False


def test_empty_sns_trusted_url_pattern_means_the_default_rule_not_match_anything(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("SNS_TRUSTED_URL_PATTERN", "")
    assert load(Settings).sns_trusted_url_pattern is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SNS_TRUSTED_URL_PATTERN", "(", "SNS_TRUSTED_URL_PATTERN: Value error, not a regular expression"),
        ("SNS_ALLOW_SIGNATURE_V1", "maybe", "SNS_ALLOW_SIGNATURE_V1: Input should be a valid boolean"),
    ],
)
def test_bad_webhook_setting_is_one_line_naming_it(
    env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    env.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load(Settings)
    assert str(refused.value).startswith(f"invalid configuration: {message}")
    assert "\n" not in str(refused.value)


async def test_user_records_message_through_the_webhook_rewrites_nothing(
    webhook: httpx.AsyncClient, sns: Sns, s3: Any, bucket: str
) -> None:
    # Only /users/sqs/send's messages, straight from the service's own queue, may write user files:
    # a topic can have publishers the service does not know.
    user_id = unique_id()
    message = {
        "message_type": "user_records",
        "data_type": "financial",
        "user_id": user_id,
        "record": {"user_id": user_id, "account_number": "ATTACKER0001"},
    }
    response = await post(webhook, sns.notification(json.dumps(message)))
    assert response.status_code == 200, response.text  # acknowledged, so SNS does not deliver it again
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"users/financial/{user_id}.json")
    assert listed.get("KeyCount", 0) == 0
