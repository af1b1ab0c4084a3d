"""SNS HTTP(S) messages as AWS documents their authentication: the signature, the certificate's host, the
topic, the time window; and the MessageIds already handled (replays)."""

import asyncio
import base64
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.core.errors import DomainError, ServiceUnavailable

logger = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
MESSAGE_TYPE_HEADER = "x-amz-sns-message-type"

CERT_MAX_BYTES = 16_384  # an SNS signing certificate is about 2 KiB; anything far bigger is not one
CERT_CACHE_ENTRIES = 32  # SNS signs with one certificate per region at a time
MAX_MESSAGE_AGE = timedelta(hours=1)  # replay guard; SNS stops retrying an HTTP delivery after 3600 s
MAX_CLOCK_SKEW = timedelta(minutes=5)  # a Timestamp this far in the future is still believed
# About 10 MiB, 14 notifications a second for all of MAX_MESSAGE_AGE; past it the oldest ids are
# forgotten first, and a replay of one is only ingested again (ingestion is idempotent).
HANDLED_IDS_MAX = 50_000
SIGNATURE_V1 = "1"  # SHA1withRSA: refused unless SNS_ALLOW_SIGNATURE_V1

# The keys each type signs, in the order of AWS's "string to sign"; Subject only when present.
_CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SIGNED_KEYS: dict[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: _CONFIRMATION_KEYS,
    UNSUBSCRIBE_CONFIRMATION: _CONFIRMATION_KEYS,
}
_OPTIONAL_SIGNED_KEYS = frozenset({"Subject"})
SIGNED_TYPES = frozenset(_SIGNED_KEYS)  # the message types SNS signs (and the webhook knows)
# SignatureVersion 1 is SHA1withRSA by SNS's definition; only version 2 avoids SHA-1.
_SIGNATURE_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    SIGNATURE_V1: hashes.SHA1,
    "2": hashes.SHA256,
}
# URL parsers disagree on whitespace, control characters and backslashes (WHATWG reads `\` as `/`),
# so a URL holding any could be matched as one host and fetched from another.
_AMBIGUOUS_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f\\]")
# `arn:<partition>:sns:<region>:<account>:<name>`; the region as AWS names them (`us-gov-west-1`), so
# no ARN can make the rule's host one that S3 serves buckets on (`sns.s3.amazonaws.com`).
_TOPIC_ARN = re.compile(
    r"arn:(?P<partition>[a-z-]+):sns:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+):\d{12}:[A-Za-z0-9_.-]+"
)
# SNS's endpoint domain in each partition the default URL rule knows; for any other partition the
# operator sets SNS_TRUSTED_URL_PATTERN.
_SNS_DOMAINS = {"aws": "amazonaws.com", "aws-us-gov": "amazonaws.com", "aws-cn": "amazonaws.com.cn"}

# Called with (message body, SNS message id) for each verified Notification (ingestion's dispatcher, wired
# by the composition root). An exception makes the webhook fail, so SNS retries.
NotificationHandler = Callable[[str, str], Awaitable[None]]


class SnsMessageRejected(DomainError):
    """The message is not provably from SNS for an accepted topic; nothing is done with it."""

    status = HTTPStatus.FORBIDDEN
    slug = "sns-signature"


@dataclass(frozen=True, slots=True)
class SnsNotification:
    message_id: str
    topic_arn: str
    message: str
    sent: datetime  # its signed Timestamp: a replay is refused as stale from sent + MAX_MESSAGE_AGE


@dataclass(frozen=True, slots=True)
class SnsConfirmation:
    """A SubscriptionConfirmation or UnsubscribeConfirmation; `subscribe_url` matched the trusted pattern."""

    type: str
    message_id: str
    topic_arn: str
    subscribe_url: str


def _field(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if value is None:
        raise SnsMessageRejected(f"The SNS message has no `{key}`.")
    if not isinstance(value, str):
        raise SnsMessageRejected(f"The SNS message's `{key}` is not a string.")
    return value


def _check_fresh(timestamp: str) -> datetime:
    """When the message was sent, if that is within the replay window."""
    try:
        sent = datetime.fromisoformat(timestamp)
    except ValueError:
        raise SnsMessageRejected("The SNS message's `Timestamp` is not a valid time.") from None
    if sent.tzinfo is None:
        raise SnsMessageRejected("The SNS message's `Timestamp` has no time zone.")
    now = datetime.now(UTC)
    if not now - MAX_MESSAGE_AGE <= sent <= now + MAX_CLOCK_SKEW:
        raise SnsMessageRejected("The SNS message is too old or from the future.")
    return sent


def _sns_host(topic_arn: str) -> str | None:
    """`sns.<region>.<domain>` of the topic's region and partition; None for an ARN the rule does not know."""
    arn = _TOPIC_ARN.fullmatch(topic_arn)
    domain = None if arn is None else _SNS_DOMAINS.get(arn["partition"])
    return None if arn is None or domain is None else f"sns.{arn['region']}.{domain}"


def _signature(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII string
        raise SnsMessageRejected("The SNS signature is not valid base64.") from None


class SnsMessageVerifier:
    """Verifies SNS messages as AWS documents; certificates come only from trusted URLs, then are cached.

    A URL is trusted when it is https on exactly the SNS host of the message topic's region and partition,
    or, with `trusted_url_pattern` (an emulator's host), when it matches that pattern instead.
    """

    def __init__(
        self,
        trusted_url_pattern: str | None,
        http: httpx.AsyncClient,
        *,
        accepted_topic_arns: Collection[str],
        allow_signature_v1: bool,
    ) -> None:
        self._trusted = None if trusted_url_pattern is None else re.compile(trusted_url_pattern)
        self._http = http
        self._topics = frozenset(accepted_topic_arns)
        self._allow_signature_v1 = allow_signature_v1
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._fetching: dict[str, asyncio.Task[rsa.RSAPublicKey]] = {}

    async def verify(self, document: dict[str, Any]) -> SnsNotification | SnsConfirmation:
        """The verified message, or SnsMessageRejected; every cheap check runs before any fetch."""
        kind = _field(document, "Type")
        signed_keys = _SIGNED_KEYS.get(kind)
        if signed_keys is None:
            raise SnsMessageRejected("The SNS message type is not supported.")
        version = _field(document, "SignatureVersion")
        algorithm = _SIGNATURE_HASHES.get(version)
        if algorithm is None:
            raise SnsMessageRejected("The SNS signature version is not supported.")
        if version == SIGNATURE_V1 and not self._allow_signature_v1:
            raise SnsMessageRejected(
                "SignatureVersion 1 (SHA1) is not accepted; set the topic's SignatureVersion to 2."
            )
        signed = {
            key: _field(document, key)
            for key in signed_keys
            if not (key in _OPTIONAL_SIGNED_KEYS and document.get(key) is None)
        }
        topic_arn = signed["TopicArn"]
        if topic_arn not in self._topics:
            raise SnsMessageRejected("The SNS topic is not accepted here.")
        sent = _check_fresh(signed["Timestamp"])
        cert_url = _field(document, "SigningCertURL")
        if not self.is_trusted(cert_url, topic_arn) or not urlsplit(cert_url).path.endswith(".pem"):
            raise SnsMessageRejected("The signing certificate URL is not trusted.")
        subscribe_url = signed.get("SubscribeURL")
        if subscribe_url is not None and not self.is_trusted(subscribe_url, topic_arn):
            raise SnsMessageRejected("The subscribe URL is not trusted.")
        signature = _signature(_field(document, "Signature"))
        public_key = await self._public_key(cert_url)
        string_to_sign = "".join(f"{key}\n{value}\n" for key, value in signed.items())
        try:
            public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise SnsMessageRejected("The SNS signature does not match the message.") from None
        if subscribe_url is None:
            return SnsNotification(signed["MessageId"], topic_arn, signed["Message"], sent)
        return SnsConfirmation(kind, signed["MessageId"], topic_arn, subscribe_url)

    def is_trusted(self, url: str, topic_arn: str) -> bool:
        """Whether the service may fetch `url` for a message of `topic_arn`.

        The URL must parse unambiguously and be on the topic's SNS host, or match the configured pattern.
        """
        if _AMBIGUOUS_URL_CHARS.search(url):
            return False
        try:
            parts = urlsplit(url)
            valid_port = parts.port is None or parts.port > 0  # `.port` raises on a malformed port
        except ValueError:
            return False
        # Userinfo lets a lax pattern match `https://trusted@other/`, which is fetched from `other`.
        if not (
            parts.scheme in {"http", "https"}
            and bool(parts.hostname)
            and "@" not in parts.netloc
            and valid_port
        ):
            return False
        if self._trusted is not None:
            return self._trusted.match(url) is not None
        # The whole netloc, so no port, other case or trailing dot: only the name AWS signs from. Any
        # other host under amazonaws.com may be a customer's (`sns.s3.amazonaws.com` is a bucket).
        host = _sns_host(topic_arn)
        return (
            parts.scheme == "https"
            and host is not None
            and parts.netloc == host
            and parts.path.startswith("/")
        )

    async def _public_key(self, url: str) -> rsa.RSAPublicKey:
        cached = self._keys.get(url)
        if cached is not None:
            self._keys.move_to_end(url)
            return cached
        fetch = self._fetching.get(url)
        if fetch is None:
            fetch = asyncio.create_task(self._fetch(url))
            self._fetching[url] = fetch
            fetch.add_done_callback(lambda _: self._fetching.pop(url, None))
        # Concurrent messages share one fetch; shielded so one caller going away cannot cancel it.
        return await asyncio.shield(fetch)

    async def _fetch(self, url: str) -> rsa.RSAPublicKey:
        pem = bytearray()
        try:
            # Identity encoding and raw bytes: the size cap counts what arrives, not a decompressed bomb.
            async with self._http.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
                if response.status_code != HTTPStatus.OK:
                    raise SnsMessageRejected("The signing certificate could not be fetched.")
                async for chunk in response.aiter_raw():
                    pem += chunk
                    if len(pem) > CERT_MAX_BYTES:
                        raise SnsMessageRejected("The signing certificate is too large.")
        except httpx.InvalidURL:
            raise SnsMessageRejected("The signing certificate URL is not trusted.") from None
        except httpx.TransportError:
            raise ServiceUnavailable(
                "The signing certificate cannot be fetched now; retry shortly."
            ) from None
        try:
            public_key = x509.load_pem_x509_certificate(bytes(pem)).public_key()
        except ValueError:
            raise SnsMessageRejected("The signing certificate is not a valid certificate.") from None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise SnsMessageRejected("The signing certificate does not hold an RSA key.")
        self._keys[url] = public_key
        if len(self._keys) > CERT_CACHE_ENTRIES:
            self._keys.popitem(last=False)
        return public_key


class HandledMessageIds:
    """MessageIds of notifications handled successfully, kept while their message could still be replayed.

    Per process: across replicas a replay is ingested again, which changes nothing (ingestion is
    idempotent); this only spares the work. So are two deliveries of one message handled at the same
    time. Bounded by `max_entries`, the oldest forgotten first.
    """

    def __init__(self, max_entries: int = HANDLED_IDS_MAX) -> None:
        self._max_entries = max_entries
        self._expiry: OrderedDict[str, datetime] = OrderedDict()  # in the order handled

    def __contains__(self, message_id: str) -> bool:
        expiry = self._expiry.get(message_id)
        return expiry is not None and datetime.now(UTC) < expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, message_id: str, *, sent: datetime) -> None:
        """Remembers `message_id` until its message, sent at `sent`, is refused as stale anyway."""
        self._expiry[message_id] = sent + MAX_MESSAGE_AGE
        self._expiry.move_to_end(message_id)
        now = datetime.now(UTC)
        # Timestamps arrive nearly in order, so expired ids gather at the front; one that is not
        # there is still refused by `__contains__` and goes by the cap.
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)
        while len(self._expiry) > self._max_entries:
            self._expiry.popitem(last=False)
