"""Bearer JWT authentication (HS256 secret or RS256 from a JWKS URL) and per-route scope checks."""

import asyncio
import base64
import binascii
import logging
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, cast

import jwt
from fastapi import Request, Security
from fastapi.security import HTTPBearer, SecurityScopes
from fastapi.security.utils import get_authorization_scheme_param

from app.core.config import AuthSettings
from app.core.errors import DomainError, ServiceUnavailable

logger = logging.getLogger(__name__)

SCOPES: dict[str, str] = {
    "s3:read": "Read JSON objects from the bucket",
    "s3:write": "Merge-update and upload objects",
    "sns:publish": "Publish to the SNS topic",
    "users:read": "Read user records",
    "users:write": "Create, update, delete and send user records",
    "ingestion:read": "Read the file processing log and reports",
    "ingestion:write": "Trigger, retry and redrive ingestion",
    "ingestion:admin": "Create, change and delete sources",
}
HS256 = "HS256"
RS256 = "RS256"
VERIFIED_CACHE_SECONDS = 60.0  # how long a verified token is trusted without checking it again
VERIFIED_CACHE_SIZE = 10_000  # tokens remembered (least recently used first out)
# JWKS fetches are at least this far apart, failed or not: tokens naming made-up key ids, or an identity
# provider that is down, cannot make the service hammer it; a rotated-in key waits at most this long.
JWKS_MIN_REFRESH_SECONDS = 30.0
JWKS_FETCH_TIMEOUT_SECONDS = 5.0  # requests waiting for the keys wait no longer for the identity provider
# A compact JWS (RFC 7515 7.1): three base64url segments, without padding.
COMPACT_JWS = re.compile(r"([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)")

BEARER_SCHEME = "HTTPBearer"  # the OpenAPI security scheme's name
BEARER_DESCRIPTION = (
    "A JWT with a space-separated `scope` claim. Dev tokens: `python -m app token --scopes '...'`."
)


class Unauthorized(DomainError):
    status = HTTPStatus.UNAUTHORIZED
    slug = "unauthorized"


class Forbidden(DomainError):
    status = HTTPStatus.FORBIDDEN
    slug = "forbidden"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    scopes: frozenset[str]


def is_canonical(token: str) -> bool:
    """Whether the token is three base64url segments spelled as an encoder writes them: no padding, no
    character outside the alphabet, no spare bit set. Decoders are lenient, so one token could
    otherwise be sent in many spellings, each verified and remembered on its own."""
    match = COMPACT_JWS.fullmatch(token)
    if match is None:
        return False
    for segment in match.groups():
        try:
            decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except binascii.Error:  # 4n+1 characters are no base64
            return False
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment.encode():
            return False
    return True


class JwksKeys:
    """The identity provider's signing keys by key id, fetched and parsed by PyJWT from the JWKS URL.

    One fetch at a time, shared by every request waiting for keys, and fetches at least
    `min_refresh_seconds` apart, failed or not: until then a token naming an unknown key id is refused
    with the keys at hand, and an endpoint that is down is asked once per interval (503 meanwhile).
    Fetched keys are trusted for `lifetime` seconds (at least that interval), then fetched again on
    the next use, so a key the provider withdraws stops verifying.
    """

    def __init__(self, url: str, *, lifetime: float, min_refresh_seconds: float) -> None:
        # PyJWT's own caches stay off: they never expire a key once looked up (`cache_keys`), and
        # they would fetch on every unknown key id while the endpoint is down.
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=JWKS_FETCH_TIMEOUT_SECONDS)
        # Keys that expired before a new fetch is allowed would leave nothing to verify with.
        self._lifetime = max(lifetime, min_refresh_seconds)
        self._min_refresh = min_refresh_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._expires = -math.inf  # time.monotonic() from which the keys are no longer trusted
        self._next_fetch = -math.inf  # time.monotonic() before which the endpoint is not asked
        self._fetch: asyncio.Task[bool] | None = None

    async def get(self, kid: object) -> jwt.PyJWK:
        if not isinstance(kid, str):
            raise Unauthorized("The token names no signing key (`kid`).")
        now = time.monotonic()
        if now < self._expires and kid in self._keys:
            return self._keys[kid]
        if self._fetch is None and now >= self._next_fetch:
            self._next_fetch = now + self._min_refresh
            self._fetch = asyncio.create_task(self._refresh())
        # Shielded: a request that goes away must not cancel the fetch others are waiting for.
        fetched = await asyncio.shield(self._fetch) if self._fetch is not None else False
        if not fetched and time.monotonic() >= self._expires:
            raise ServiceUnavailable("The token signing keys cannot be fetched.")
        key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("The token's key id is not one of the identity provider's keys.")
        return key

    async def _refresh(self) -> bool:
        """Fetch the keys; whether that worked (if not, the keys at hand stay until they expire)."""
        try:
            # PyJWKClient fetches over blocking HTTP.
            keys = await asyncio.to_thread(self._client.get_signing_keys)
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            # The type only: the message may quote whatever the endpoint answered.
            logger.warning("jwks fetch failed", extra={"error_type": type(exc).__name__})
            return False
        finally:
            self._fetch = None
        self._keys = {key.key_id: key for key in keys if key.key_id is not None}
        self._expires = time.monotonic() + self._lifetime
        return True


class TokenVerifier:
    """Verifies tokens; the algorithm is chosen by configuration, never trusted from the token alone."""

    def __init__(
        self, settings: AuthSettings, *, jwks_min_refresh_seconds: float = JWKS_MIN_REFRESH_SECONDS
    ) -> None:
        secret = settings.jwt_secret
        self._secret = secret.get_secret_value() if secret else None
        self._jwks = (
            JwksKeys(
                str(settings.jwt_jwks_url),
                lifetime=settings.jwks_cache_seconds,
                min_refresh_seconds=jwks_min_refresh_seconds,
            )
            if settings.jwt_jwks_url
            else None
        )
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        # token -> (principal, when to verify it again): clients send the same token many times.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def _key_for(self, algorithm: object, kid: object) -> Any:
        if algorithm == HS256 and self._secret is not None:
            return self._secret
        if algorithm == RS256 and self._jwks is not None:
            return (await self._jwks.get(kid)).key
        raise Unauthorized("The token's algorithm is not accepted.")

    async def verify(self, token: str) -> Principal:
        """The token's principal; a token verified in the last VERIFIED_CACHE_SECONDS (and not expired
        since) is not verified again, so a key withdrawn from the JWKS stops working within
        JWKS_CACHE_SECONDS (the keys' lifetime) and VERIFIED_CACHE_SECONDS more."""
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached[1] > now:
            self._verified.move_to_end(token)
            return cached[0]
        principal, expires = await self._verify(token)
        self._verified[token] = (principal, min(expires, now + VERIFIED_CACHE_SECONDS))
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        # Here, not in verify(): a remembered token passed this check when it was first seen.
        if not is_canonical(token):
            raise Unauthorized("The bearer token is not three base64url segments in canonical form.")
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg", "")
            key = await self._key_for(algorithm, header.get("kid"))
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The bearer token is not valid ({type(exc).__name__}).") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str) or not isinstance(claims["sub"], str):
            raise Unauthorized("The token's `sub` and `scope` claims must be strings.")
        return Principal(subject=claims["sub"], scopes=frozenset(scope.split())), float(claims["exp"])


def mint_token(
    secret: str,
    *,
    subject: str,
    scopes: list[str],
    ttl_seconds: int,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token for local development and tests."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=HS256)


class BearerPrincipal(HTTPBearer):
    """The principal of the request's `Authorization: Bearer <JWT>`, holding every scope the route names
    with `Security(bearer_principal, scopes=[...])`: 401 without a valid token, 403 without a scope.

    It is the OpenAPI bearer scheme itself, so Swagger's Authorize button and each operation's security
    requirement (with its scopes) are FastAPI's own, and one dependency (FastAPI resolves each level of
    dependencies on every request). Routes list it first, so a request without a valid token learns
    nothing of the route's other rules (401 before 415 or 422).
    """

    def __init__(self) -> None:
        super().__init__(
            bearerFormat="JWT", auto_error=False, scheme_name=BEARER_SCHEME, description=BEARER_DESCRIPTION
        )

    async def __call__(  # type: ignore[override]  # FastAPI injects the route's scopes
        self, request: Request, security_scopes: SecurityScopes
    ) -> Principal:
        scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() != "bearer" or not credentials:
            raise Unauthorized("A bearer token is required.")
        principal = await cast(_HasVerifier, request.app.state.resources).token_verifier.verify(credentials)
        missing = [scope for scope in security_scopes.scopes if scope not in principal.scopes]
        if missing:
            raise Forbidden(f"This operation needs the `{missing[0]}` scope.")
        return principal


class _HasVerifier(Protocol):
    """What the bearer dependency reads from the app's resources."""

    @property
    def token_verifier(self) -> TokenVerifier: ...


bearer_principal = BearerPrincipal()


def requires(scope: str) -> Any:
    """`Security(bearer_principal, scopes=[scope])`: a route parameter's principal that holds `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return Security(bearer_principal, scopes=[scope])
