"""Bearer JWT checks: HS256, RS256 from a loopback JWKS server (and how its keys are cached),
issuer/audience, scopes, attacks."""

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.core.config import AuthSettings, Settings, SettingsError, load
from app.core.errors import DomainError
from app.core.security import TokenVerifier, Unauthorized, mint_token
from tests.conftest import JWKS_KID, JwksServer, public_jwk
from tests.helpers import (
    ALL_SCOPES,
    TEST_JWT_SECRET,
    api_only,
    eventually,
    make_token,
    problem_of,
    run_cli,
    started_app,
)

PROTECTED = "/users/nobody-here/personal"  # 404 once authorized: proves the token got through
ISSUER = "https://issuer.test/"
AUDIENCE = "aws-s3-service"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "scope": " ".join(ALL_SCOPES), "iat": now, "exp": now + 300, **overrides}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _status(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})
    if response.status_code in (401, 403):
        problem_of(response)
    return response.status_code


async def test_valid_hs256_token_passes(client: httpx.AsyncClient) -> None:
    assert await _status(client, make_token()) == 404


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(jwt.encode(_claims(exp=int(time.time()) - 120), TEST_JWT_SECRET), id="expired"),
        pytest.param(jwt.encode(_claims(nbf=int(time.time()) + 600), TEST_JWT_SECRET), id="not-yet-valid"),
        pytest.param(jwt.encode(_claims(), "another-secret-" + "y" * 40), id="wrong-secret"),
        pytest.param(jwt.encode({"sub": "alice", "scope": "users:read"}, TEST_JWT_SECRET), id="no-exp"),
        pytest.param(_b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".", id="alg-none"),
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param(jwt.encode(_claims(sub=42), TEST_JWT_SECRET), id="non-string-sub"),
    ],
)
async def test_invalid_tokens_are_401(client: httpx.AsyncClient, token: str) -> None:
    assert await _status(client, token) == 401


async def test_non_bearer_scheme_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(PROTECTED, headers={"Authorization": f"Basic {make_token()}"})
    assert response.status_code == 401


async def test_missing_scope_is_403(client: httpx.AsyncClient) -> None:
    assert await _status(client, make_token(["s3:read"])) == 403


# --- RS256 through a JWKS endpoint on loopback ---------------------------------------------------


def _rs_settings(settings: Settings, jwks_url: str, **updates: Any) -> Settings:
    return api_only(settings).model_copy(
        update={"jwt_jwks_url": jwks_url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE, **updates}
    )


@pytest.fixture(scope="module")
async def rs_client(settings: Settings, jwks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with started_app(_rs_settings(settings, jwks_url)) as (_, http):
        yield http


def _rs_token(key: rsa.RSAPrivateKey, *, kid: str = JWKS_KID, **overrides: Any) -> str:
    claims = _claims(**{"iss": ISSUER, "aud": AUDIENCE, **overrides})
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def test_rs256_token_from_jwks_passes(rs_client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey) -> None:
    assert await _status(rs_client, _rs_token(rsa_key)) == 404


@pytest.mark.parametrize(
    "overrides", [{"iss": "https://evil.test/"}, {"aud": "someone-else"}], ids=["issuer", "audience"]
)
async def test_rs256_wrong_issuer_or_audience_is_401(
    rs_client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey, overrides: dict[str, str]
) -> None:
    assert await _status(rs_client, _rs_token(rsa_key, **overrides)) == 401


async def test_rs256_token_signed_by_unknown_key_is_401(rs_client: httpx.AsyncClient) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await _status(rs_client, _rs_token(stranger)) == 401


async def test_hs256_token_signed_with_the_public_key_is_401(
    rs_client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    # Algorithm confusion: an attacker signs HS256 with the (public) RSA key as the HMAC secret.
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": JWKS_KID})
    payload = _b64(_claims(iss=ISSUER, aud=AUDIENCE))
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    # The RS app also trusts JWT_SECRET for HS256; the forged token is not signed with it.
    assert await _status(rs_client, forged) == 401


# --- the JWKS: one fetch at a time, at most one per interval, trusted for JWKS_CACHE_SECONDS ----------


async def _answers(verifier: TokenVerifier, token: str, status: int) -> bool:
    """Whether a request with `token` gets `status` from the verifier (200: it passes)."""
    try:
        await verifier.verify(token)
    except DomainError as exc:
        return exc.status == status
    return status == HTTPStatus.OK


async def test_tokens_with_made_up_key_ids_are_401_without_refetching_the_jwks(
    settings: Settings, jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = [_rs_token(stranger, kid=secrets.token_hex(8)) for _ in range(200)]
    async with started_app(_rs_settings(settings, jwks_server.url)) as (_, client):
        statuses = await asyncio.gather(*(_status(client, token) for token in tokens))
        assert statuses == [401] * len(tokens)
        assert await _status(client, _rs_token(rsa_key)) == 404
    assert jwks_server.requests == 1


async def test_a_jwks_endpoint_that_is_down_is_503_and_asked_once_per_interval(
    settings: Settings, jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.status = HTTPStatus.SERVICE_UNAVAILABLE
    headers = {"Authorization": f"Bearer {_rs_token(rsa_key)}"}
    async with started_app(_rs_settings(settings, jwks_server.url)) as (_, client):
        for _ in range(2):  # a burst, then another while the interval since the failed fetch runs
            responses = await asyncio.gather(*(client.get(PROTECTED, headers=headers) for _ in range(100)))
            assert {response.status_code for response in responses} == {503}
            assert problem_of(responses[0])["detail"] == "The token signing keys cannot be fetched."
    assert jwks_server.requests == 1


async def test_the_jwks_is_fetched_again_once_the_endpoint_is_back(
    settings: Settings, jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.status = HTTPStatus.SERVICE_UNAVAILABLE
    verifier = TokenVerifier(_rs_settings(settings, jwks_server.url), jwks_min_refresh_seconds=0.5)
    token = _rs_token(rsa_key)
    assert await _answers(verifier, token, HTTPStatus.SERVICE_UNAVAILABLE)

    jwks_server.status = HTTPStatus.OK
    await eventually(lambda: _answers(verifier, token, HTTPStatus.OK), timeout=10)


async def test_a_key_removed_from_the_jwks_stops_verifying_once_the_cached_set_expires(
    settings: Settings, jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    rs_settings = _rs_settings(settings, jwks_server.url, jwks_cache_seconds=1)
    verifier = TokenVerifier(rs_settings, jwks_min_refresh_seconds=0.5)
    assert await _answers(verifier, _rs_token(rsa_key), HTTPStatus.OK)

    successor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_server.keys = [public_jwk(successor, "successor")]

    # A new token each time: a token verified before is remembered for up to VERIFIED_CACHE_SECONDS.
    await eventually(
        lambda: _answers(verifier, _rs_token(rsa_key, jti=secrets.token_hex(8)), HTTPStatus.UNAUTHORIZED),
        timeout=10,
    )
    assert await _answers(verifier, _rs_token(successor, kid="successor"), HTTPStatus.OK)


async def test_a_key_added_to_the_jwks_is_picked_up_once_the_refresh_interval_allows(
    settings: Settings, jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(_rs_settings(settings, jwks_server.url), jwks_min_refresh_seconds=1)
    assert await _answers(verifier, _rs_token(rsa_key), HTTPStatus.OK)

    successor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_server.keys = [*jwks_server.keys, public_jwk(successor, "successor")]
    rotated = _rs_token(successor, kid="successor")

    await eventually(lambda: _answers(verifier, rotated, HTTPStatus.OK), timeout=10)
    # Polled every 0.1 s, the new kid caused one refetch, not one per try.
    assert jwks_server.requests == 2
    assert await _answers(verifier, _rs_token(rsa_key), HTTPStatus.OK)


@pytest.mark.parametrize(
    ("missing", "value"),
    [("JWT_ISSUER", None), ("JWT_AUDIENCE", None), ("JWT_AUDIENCE", "")],
    ids=["no-issuer", "no-audience", "empty-audience"],
)
def test_jwks_without_issuer_or_audience_stops_startup_naming_it(
    service_env: dict[str, str], jwks_url: str, tmp_path: Path, missing: str, value: str | None
) -> None:
    # Without both, a token the identity provider minted for another of its applications would pass.
    env = {**service_env, "JWT_JWKS_URL": jwks_url, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}
    del env[missing]
    if value is not None:
        env[missing] = value
    result = run_cli(["serve", "--port", "1"], env, tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"invalid configuration: {missing}: Value error, required when JWT_JWKS_URL is set"
    )


def test_jwks_settings_with_issuer_and_audience_load(
    monkeypatch: pytest.MonkeyPatch, jwks_url: str, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("JWT_JWKS_URL", jwks_url)
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    auth = load(AuthSettings)
    assert (auth.jwt_issuer, auth.jwt_audience) == (ISSUER, AUDIENCE)

    monkeypatch.delenv("JWT_ISSUER")
    with pytest.raises(SettingsError, match=r"^invalid configuration: JWT_ISSUER: "):
        load(AuthSettings)


# --- canonical encoding: one token, one spelling -------------------------------------------------------

BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _decoded(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _other_spelling(segment: str) -> str:
    """`segment` with its last character's lowest bit flipped: base64 ignores it when the segment's
    length is not a multiple of 4, so it decodes to the same bytes."""
    other = segment[:-1] + BASE64URL[BASE64URL.index(segment[-1]) ^ 1]
    assert _decoded(other) == _decoded(segment)
    return other


async def test_a_token_spelled_other_than_canonical_base64url_is_401_and_not_remembered(
    settings: Settings,
) -> None:
    verifier = TokenVerifier(settings)
    token = make_token()
    header, payload, signature = token.split(".")
    assert len(signature) % 4  # an HS256 signature (32 bytes) is 43 characters: it has spare bits
    assert (await verifier.verify(token)).subject == "tester"
    remembered = len(verifier._verified)  # the tokens the verifier will not check again

    for variant in (
        token + "=",  # the padding base64 would write: PyJWT accepts it
        token + "!",
        token + " ",
        f" {token}",
        f"{header}.{payload}.{_other_spelling(signature)}",
        f"{token}.",
    ):
        with pytest.raises(Unauthorized):
            await verifier.verify(variant)
    assert len(verifier._verified) == remembered
    assert (await verifier.verify(token)).subject == "tester"


# --- python -m app token ------------------------------------------------------------------------


def test_token_cli_mints_a_token_with_the_scopes_asked(tmp_path: Path) -> None:
    result = run_cli(
        ["token", "--scopes", "users:read", "--subject", "cli-user"],
        {"JWT_SECRET": TEST_JWT_SECRET},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "cli-user"
    assert claims["scope"] == "users:read"
    assert claims["exp"] > time.time()


def test_token_cli_refuses_unknown_scope(tmp_path: Path) -> None:
    result = run_cli(["token", "--scopes", "users:read admin"], {"JWT_SECRET": TEST_JWT_SECRET}, tmp_path)
    assert result.returncode == 2
    assert "admin" in result.stderr
    assert result.stdout == ""


async def test_a_remembered_token_is_refused_once_it_expires(settings: Settings) -> None:
    """Verified tokens are remembered (no signature check per request), but never past their `exp`."""
    verifier = TokenVerifier(settings.model_copy(update={"jwt_leeway_seconds": 0}))
    token = mint_token(TEST_JWT_SECRET, subject="short", scopes=["users:read"], ttl_seconds=2)

    assert (await verifier.verify(token)).subject == "short"
    assert (await verifier.verify(token)).scopes == frozenset({"users:read"})  # from memory

    async def refused() -> bool:
        try:
            await verifier.verify(token)
        except Unauthorized:
            return True
        return False

    await eventually(refused, timeout=10)
