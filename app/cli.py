"""Command line: `python -m app serve | migrate | token`."""

import argparse
import asyncio
import sys

from app.core.config import EXIT_CONFIG, AuthSettings, DatabaseSettings, Settings, SettingsError, load
from app.core.security import SCOPES, mint_token

EXIT_OK = 0
EXIT_FAILURE = 1


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.core.logging import configure_logging

    settings = load(Settings)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_config=None,
        access_log=False,
    )
    return EXIT_OK


async def _migrate() -> list[str]:
    from app.core import db

    settings = load(DatabaseSettings)
    pool = await db.create_pool(settings)
    try:
        async with pool.acquire() as conn:
            return await db.apply_migrations(conn)
    finally:
        await pool.close()


def _token(args: argparse.Namespace) -> int:
    settings = load(AuthSettings)
    if settings.jwt_secret is None:
        raise SettingsError("invalid configuration: JWT_SECRET: required to mint a token")
    scopes = args.scopes.split()
    unknown = sorted(set(scopes) - SCOPES.keys())
    if unknown:
        print(f"unknown scopes: {' '.join(unknown)} (known: {' '.join(SCOPES)})", file=sys.stderr)
        return EXIT_CONFIG
    print(
        mint_token(
            settings.jwt_secret.get_secret_value(),
            subject=args.subject,
            scopes=scopes,
            ttl_seconds=args.ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API and the consumer under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    serve.add_argument("--graceful-timeout", type=int, default=25)

    commands.add_parser("migrate", help="apply pending database migrations and exit")

    token = commands.add_parser("token", help="mint a development HS256 token from JWT_SECRET")
    token.add_argument("--scopes", default=" ".join(SCOPES), help="space-separated scopes")
    token.add_argument("--subject", default="dev-user")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "migrate":
            applied = asyncio.run(_migrate())
            print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
            return EXIT_OK
        return _token(args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
