"""Forged and broken bearer tokens on representative routes of every area (tests/core/test_security.py
checks each attack once; this is the matrix): 401 or 403 with problem+json, and nothing done."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.core.config import Settings
from tests.conftest import JWKS_KID
from tests.helpers import ALL_SCOPES, TEST_JWT_SECRET, bearer, problem_of, started_app

ISSUER = "https://issuer.test/"
AUDIENCE = "aws-s3-service"
# One route per scope; each would answer 2xx/4xx-but-not-401/403 once the token got through.
ROUTES = [
    ("GET", "/users/nobody-here/personal", None, "users:read"),
    ("PATCH", "/users/nobody-here/health", {"blood_type": "O+"}, "users:write"),
    ("GET", "/s3/nothing/here.json", None, "s3:read"),
    ("PUT", "/s3/nothing/here.json", {"a": 1}, "s3:write"),
    ("POST", "/sns/publish", {"message": "hello"}, "sns:publish"),
    ("GET", "/ingestion/files", None, "ingestion:read"),
    ("POST", "/ingestion/dlq/redrive?limit=1", None, "ingestion:write"),
]
ROUTE_IDS = [f"{method} {path.split('?')[0]}" for method, path, _, _ in ROUTES]
READ_ONLY = [0, 2, 5]  # routes a valid token may reach without changing anything the suite shares


def claims(**overrides: Any) -> dict[str, Any]:
    issued = int(time.time())
    return {"sub": "mallory", "scope": " ".join(ALL_SCOPES), "iat": issued, "exp": issued + 300, **overrides}


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256(payload: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(payload, TEST_JWT_SECRET, algorithm="HS256", headers=headers or None)


def unsigned(alg: str, payload: dict[str, Any]) -> str:
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(payload)}."


def with_hmac(
    header: dict[str, Any], payload: dict[str, Any], secret: bytes, digest: Any = hashlib.sha256
) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), digest).digest())}"


async def call(
    client: httpx.AsyncClient, route: tuple[str, str, Any, str], token: str | None
) -> httpx.Response:
    method, path, body, _ = route
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await client.request(method, path, json=body, headers=headers)


def tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["scope"] += " admin"
    return f"{header}.{b64(forged)}.{signature}"


def spare_bit_flipped(token: str) -> str:
    """The token with its signature's last character changed in a bit base64 ignores (43 characters
    carry 258 bits for the 256 of an HS256 signature): the same bytes, spelled differently."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]


def now() -> int:
    return int(time.time())


# Made when the test runs, not at collection: a long suite would otherwise age them past their claims.
BROKEN_TOKENS: dict[str, Callable[[], str]] = {
    "expired-beyond-leeway": lambda: hs256(claims(exp=now() - 120)),
    "not-yet-valid-beyond-leeway": lambda: hs256(claims(nbf=now() + 120)),
    "nbf-string": lambda: hs256({"sub": "mallory", "scope": "users:read", "exp": now() + 300, "nbf": "soon"}),
    "scope-as-list": lambda: hs256(claims(scope=ALL_SCOPES)),
    "null-sub": lambda: hs256(claims(sub=None)),
    "alg-none": lambda: unsigned("none", claims()),
    "alg-None": lambda: unsigned("None", claims()),
    "alg-NONE": lambda: unsigned("NONE", claims()),
    "no-alg": lambda: f"{b64({'typ': 'JWT'})}.{b64(claims())}.",
    "hs512-same-secret": lambda: with_hmac(
        {"alg": "HS512", "typ": "JWT"}, claims(), TEST_JWT_SECRET.encode(), hashlib.sha512
    ),
    "rs256-hmac": lambda: with_hmac({"alg": "RS256", "typ": "JWT"}, claims(), TEST_JWT_SECRET.encode()),
    "unknown-crit-header": lambda: hs256(claims(), crit=["exp"]),
    "payload-tampered": lambda: tamper(hs256(claims())),
    "signature-cut": lambda: hs256(claims())[:-4],
    "signature-stripped": lambda: hs256(claims()).rsplit(".", 1)[0] + ".",
    "100-kb-garbage": lambda: "a" * 100_000,
    "empty-segments": lambda: "..",
    "header-not-an-object": lambda: f"{b64(b'[1]')}.{b64(claims())}.x",
    "header-not-json": lambda: f"{b64(b'{')}.{b64(claims())}.x",
    # One token, one spelling: otherwise each spelling is verified and remembered on its own.
    "base64-padding": lambda: hs256(claims()) + "=",
    "outside-the-base64url-alphabet": lambda: hs256(claims()) + "!",
    "signature-spare-bits-changed": lambda: spare_bit_flipped(hs256(claims())),
    "a-fourth-segment": lambda: hs256(claims()) + ".",
}


@pytest.mark.parametrize("broken", BROKEN_TOKENS)
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_a_broken_or_forged_token_is_401_on_every_route(
    client: httpx.AsyncClient, route: tuple[str, str, Any, str], broken: str
) -> None:
    response = await call(client, route, BROKEN_TOKENS[broken]())
    assert response.status_code == 401, response.text
    problem_of(response)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/users/not%20a%20valid%20id!/personal", None),
        ("PATCH", "/users/nobody-here/health", {"blood_type": ["not", "a", "string"]}),
        ("GET", "/ingestion/files?limit=-5", None),
    ],
)
async def test_the_token_is_checked_before_anything_else_of_the_request(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    # A request with no valid token learns nothing of the route's other rules: 401, not 422.
    unauthenticated = await client.request(method, path, json=body)
    authenticated = await client.request(method, path, json=body, headers=bearer(ALL_SCOPES))
    assert unauthenticated.status_code == 401, unauthenticated.text
    assert authenticated.status_code == 422, authenticated.text


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a b", "Bearer\tabc"],
    ids=repr,
)
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_a_malformed_authorization_header_is_401(
    client: httpx.AsyncClient, route: tuple[str, str, Any, str], authorization: str
) -> None:
    method, path, body, _ = route
    response = await client.request(method, path, json=body, headers={"Authorization": authorization})
    assert response.status_code == 401, response.text
    problem_of(response)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_every_scope_but_the_one_a_route_needs_is_403(
    client: httpx.AsyncClient, route: tuple[str, str, Any, str]
) -> None:
    needed = route[3]
    response = await call(client, route, hs256(claims(scope=" ".join(s for s in ALL_SCOPES if s != needed))))
    assert response.status_code == 403, response.text
    assert needed in problem_of(response)["detail"]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_the_scope_is_matched_whole_not_by_prefix_or_case(
    client: httpx.AsyncClient, route: tuple[str, str, Any, str]
) -> None:
    needed = route[3]
    near_misses = f"{needed}x {needed.upper()} {needed.split(':')[0]} *"
    response = await call(client, route, hs256(claims(scope=near_misses)))
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    ("claim", "offset", "status"),
    [
        pytest.param("exp", -10, 404, id="expired-within-leeway-passes"),
        pytest.param("nbf", 10, 404, id="nbf-within-leeway-passes"),
        pytest.param("iat", 3600, 401, id="issued-in-the-future"),
        pytest.param("exp", -45, 401, id="expired-past-leeway"),
        pytest.param("nbf", 45, 401, id="nbf-past-leeway"),
    ],
)
async def test_clock_skew_is_tolerated_only_within_the_leeway(
    client: httpx.AsyncClient, settings: Settings, claim: str, offset: int, status: int
) -> None:
    assert settings.jwt_leeway_seconds == 30
    response = await call(client, ROUTES[0], hs256(claims(**{claim: now() + offset})))
    assert response.status_code == status, response.text


# --- an HS256 app that checks issuer and audience --------------------------------------------------


@pytest.fixture(scope="module")
async def iss_aud_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with started_app(settings, jwt_issuer=ISSUER, jwt_audience=AUDIENCE) as (_, http):
        yield http


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        pytest.param({"iss": ISSUER, "aud": AUDIENCE}, 404, id="right-issuer-and-audience"),
        pytest.param({"iss": ISSUER, "aud": [AUDIENCE, "other"]}, 404, id="audience-among-several"),
        pytest.param({}, 401, id="neither"),
        pytest.param({"aud": AUDIENCE}, 401, id="no-issuer"),
        pytest.param({"iss": ISSUER}, 401, id="no-audience"),
        pytest.param({"iss": "https://evil.test/", "aud": AUDIENCE}, 401, id="wrong-issuer"),
        pytest.param({"iss": ISSUER.rstrip("/"), "aud": AUDIENCE}, 401, id="issuer-near-miss"),
        pytest.param({"iss": ISSUER, "aud": "aws-s3-service-evil"}, 401, id="wrong-audience"),
        pytest.param({"iss": [ISSUER], "aud": AUDIENCE}, 401, id="issuer-as-list"),
    ],
)
@pytest.mark.parametrize("route", [ROUTES[i] for i in READ_ONLY], ids=[ROUTE_IDS[i] for i in READ_ONLY])
async def test_issuer_and_audience_are_checked_when_configured(
    iss_aud_client: httpx.AsyncClient,
    route: tuple[str, str, Any, str],
    overrides: dict[str, Any],
    status: int,
) -> None:
    # Signed by hand: PyJWT's encoder itself refuses some of these claims.
    token = with_hmac({"alg": "HS256", "typ": "JWT"}, claims(**overrides), TEST_JWT_SECRET.encode())
    response = await call(iss_aud_client, route, token)
    if status == 401:
        assert response.status_code == 401, response.text
        problem_of(response)
    else:  # through the token check, and no crash (answered 500 by the client, not raised)
        assert response.status_code not in (401, 403, 500), response.text


# --- an RS256-only app (JWKS, no JWT_SECRET): algorithm confusion ----------------------------------


@pytest.fixture(scope="module")
async def rs_only(settings: Settings, jwks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    rs_only = {"jwt_secret": None, "jwt_jwks_url": jwks_url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    async with started_app(settings, **rs_only) as (_, http):
        yield http


def idp_claims() -> dict[str, Any]:
    """Claims as the identity provider issues them for this service: its issuer, this audience."""
    return claims(iss=ISSUER, aud=AUDIENCE)


def rs256(key: rsa.RSAPrivateKey, **headers: Any) -> str:
    return jwt.encode(idp_claims(), key, algorithm="RS256", headers={"kid": JWKS_KID, **headers})


async def test_rs256_token_from_the_jwks_passes(
    rs_only: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    assert (await call(rs_only, ROUTES[0], rs256(rsa_key))).status_code == 404


async def test_hs256_signed_with_the_public_key_is_401_without_any_secret(
    rs_only: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, public_der):
        forged = with_hmac({"alg": "HS256", "typ": "JWT", "kid": JWKS_KID}, idp_claims(), secret)
        for route in ROUTES:
            response = await call(rs_only, route, forged)
            assert response.status_code == 401, response.text


async def test_an_hs256_token_with_the_old_dev_secret_is_401_on_an_rs_only_app(
    rs_only: httpx.AsyncClient,
) -> None:
    assert (await call(rs_only, ROUTES[0], hs256(idp_claims()))).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"kid": "unknown"}, id="unknown-kid"),
        pytest.param({"kid": JWKS_KID, "jku": "http://127.0.0.1:9/evil.json"}, id="jku-to-attacker-keys"),
        pytest.param({"kid": "../../k1"}, id="kid-path-traversal"),
        pytest.param({"kid": "k1' OR '1'='1"}, id="kid-injection"),
    ],
)
async def test_an_rs256_token_signed_by_another_key_is_401_whatever_its_header_says(
    rs_only: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = await call(rs_only, ROUTES[0], rs256(stranger, **headers))
    assert response.status_code == 401, response.text
    problem_of(response)
