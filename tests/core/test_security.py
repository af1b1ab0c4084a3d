"""Bearer JWT checks: HS256, RS256 from a loopback JWKS server, issuer/audience, scopes, attacks."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from app.core.config import Settings
from app.core.security import TokenVerifier, Unauthorized, mint_token
from app.main import create_app
from tests.conftest import JWKS_KID
from tests.helpers import ALL_SCOPES, TEST_JWT_SECRET, api_only, make_token, problem_of, run_cli
from tests.ingestion.helpers import wait_until

PROTECTED = "/users/nobody-here/personal"  # 404 once authorized: proves the token got through


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


@pytest.fixture(scope="module")
async def rs_client(settings: Settings, jwks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    rs_settings = api_only(settings).model_copy(
        update={
            "jwt_jwks_url": jwks_url,
            "jwt_issuer": "https://issuer.test/",
            "jwt_audience": "aws-s3-service",
        }
    )
    app: FastAPI = create_app(rs_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def _rs_token(key: rsa.RSAPrivateKey, **overrides: Any) -> str:
    claims = _claims(**{"iss": "https://issuer.test/", "aud": "aws-s3-service", **overrides})
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": JWKS_KID})


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
    payload = _b64(_claims(iss="https://issuer.test/", aud="aws-s3-service"))
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    # The RS app also trusts JWT_SECRET for HS256; the forged token is not signed with it.
    assert await _status(rs_client, forged) == 401


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

    await wait_until(refused, deadline_seconds=10)
