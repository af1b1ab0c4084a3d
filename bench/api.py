"""API case: GET /users/{id}/personal under wrk (closed loop, 64 connections) against the service (valid
token, JSON access log, metrics) with one and two uvicorn workers, and against the floors of
bench/api_floor.py (bare FastAPI route, raw ASGI callable) with as many workers, served the same way: the
same uvicorn options, process tuning (`perf.tuned`) and log level, so the ratio measures the service's own
code."""

import asyncio
import json
import os
import shutil
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg

from bench.report import Result, Skipped, Target
from bench.stack import ROOT, Infra, Server, serve_command, server, service
from devtools.servers import free_port

USERS = 10_000
SEED = 7
CONNECTIONS = 64
WRK_THREADS = 1  # one wrk thread drives 64 connections well past these servers' rates; the cores are few
WRK_TIMEOUT = "5s"  # a slower answer counts as an error (wrk's default is 2 s)
WARMUP_SECONDS = 2
SCRIPT = ROOT / "bench" / "wrk.lua"
API_TARGET = Target(min_ratio=0.85, max_p99_ms=100, max_errors=0)
# The service as configured in production: JSON logs at INFO (one access line per request), metrics on. The
# floors get the same logging configuration and log nothing per request.
SERVICE_ENV = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
# The floors' factories in bench/api_floor.py: (tuned as the service is, untuned).
RAW_FLOOR = ("bench.api_floor:served_raw_app", "bench.api_floor:create_raw_app")
BARE_FLOOR = ("bench.api_floor:served_fastapi_app", "bench.api_floor:create_fastapi_app")


async def seed_users(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO users_personal (user_id, name, email, phone, address, date_of_birth)
            SELECT format('bench-%s', lpad(n::text, 5, '0')), format('User %s', n),
                   format('user%s@example.com', n), '+351 210 000 000', format('Rua %s, Lisboa', n),
                   date '1980-01-01' + n
            FROM generate_series(1, $1) AS n
            ON CONFLICT (user_id) DO NOTHING
            """,
            USERS,
        )
    finally:
        await conn.close()


def wrk_available() -> str | None:
    return (
        None if shutil.which("wrk") else "wrk is not installed (make bench installs it: apt-get install wrk)"
    )


async def run_wrk(base_url: str, seconds: int, token: str) -> dict[str, float]:
    """One wrk run's summary line."""
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_USERS": str(USERS), "BENCH_SEED": str(SEED)}
    arguments = [
        f"-t{WRK_THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(SCRIPT),
        base_url,
    ]
    process = await asyncio.create_subprocess_exec(
        "wrk", *arguments, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed: {stderr.decode(errors='replace').strip()}")
    line = next((s for s in stdout.decode().splitlines() if s.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {stdout.decode(errors='replace').strip()}")
    return dict(json.loads(line.removeprefix("BENCH ")))


def _wrk_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children so far: wrk's, the only ones reaped meanwhile."""
    usage = os.times()
    return usage.children_user + usage.children_system


@contextmanager
def floor_server(infra: Infra, factories: tuple[str, str], workers: int, tuned: bool) -> Iterator[Server]:
    port = free_port()
    command = serve_command(factories[0] if tuned else factories[1], port, workers)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": infra.database_url, **SERVICE_ENV}
    with server(infra, command, env, name=f"floor-{port}", port=port) as running:
        yield running


@dataclass
class _Runs:
    """One server's measurements, run by run."""

    name: str
    variant: str
    target: Server
    rates: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    wrk_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    process_cpu: list[list[float]] = field(default_factory=list)
    errors: int = 0

    async def run(self, token: str, seconds: int) -> None:
        cpu_before, wrk_before = self.target.cpu_seconds(), _wrk_cpu_seconds()
        by_process_before = self.target.cpu_seconds_by_process()
        summary = await run_wrk(self.target.base_url, seconds, token)
        duration = summary["duration_us"] / 1e6
        self.server_cpu.append((self.target.cpu_seconds() - cpu_before) / duration)
        by_process = zip(self.target.cpu_seconds_by_process(), by_process_before, strict=True)
        self.process_cpu.append([round((after - before) / duration, 2) for after, before in by_process])
        self.wrk_cpu.append((_wrk_cpu_seconds() - wrk_before) / duration)
        self.rates.append(summary["requests"] / duration)
        self.p50.append(summary["p50_us"] / 1000)
        self.p99.append(summary["p99_us"] / 1000)
        self.errors += sum(int(summary[k]) for k in ("connect", "read", "write", "status", "timeout"))

    def result(self, seconds: int) -> Result:
        return Result(
            "api",
            self.variant,
            "req/s",
            self.rates,
            p50_ms=self.p50,
            p99_ms=self.p99,
            errors=self.errors,
            peak_rss_bytes=self.target.peak_rss_bytes(),
            details={
                "app": self.name,
                "server_cpu_cores": statistics.median(self.server_cpu),
                # uvicorn --workers shares one listening socket: the 64 connections need not split evenly.
                "cpu_cores_by_process_per_run": self.process_cpu,
                "wrk_cpu_cores": statistics.median(self.wrk_cpu),
                "connections": CONNECTIONS,
                "seconds": seconds,
            },
            note=f"server used {statistics.median(self.server_cpu):.2f} cores, "
            f"wrk {statistics.median(self.wrk_cpu):.2f}",
        )


async def measure(servers: list[_Runs], token: str, runs: int, seconds: int) -> None:
    """The servers' runs interleaved (a, b, c, a, b, c, ...): all are up, one is loaded at a time, so a
    host whose speed drifts during the case (shared or throttled cores) slows each of them alike and the
    ratios between them hold."""
    for each in servers:
        await run_wrk(each.target.base_url, WARMUP_SECONDS, token)
        each.target.reset_peak_rss()
    for _ in range(runs):
        for each in servers:
            await each.run(token, seconds)


async def api_cases(infra: Infra, runs: int, seconds: int, *, tuned: bool = True) -> list[Result | Skipped]:
    """With `tuned=False`, the service and both floors run without `perf.tuned` (what the tuning is worth)."""
    reason = wrk_available()
    if reason is not None:
        return [Skipped("api", "all", reason)]
    await seed_users(infra.database_url)
    token = infra.token("users:read")
    results: list[Result | Skipped] = []
    for workers in (1, 2):
        suffix = f"{workers} worker{'s' if workers > 1 else ''}{'' if tuned else ', untuned'}"
        with (
            floor_server(infra, RAW_FLOOR, workers, tuned) as raw,
            floor_server(infra, BARE_FLOOR, workers, tuned) as bare,
            service(infra, SERVICE_ENV, workers=workers, tuned=tuned) as svc,
        ):
            servers = [
                _Runs("raw", f"floor raw ASGI, {suffix}", raw),
                _Runs("bare", f"floor bare FastAPI, {suffix}", bare),
                _Runs("service", f"service, {suffix}", svc),
            ]
            await measure(servers, token, runs, seconds)
            raw_result, bare_result, result = (each.result(seconds) for each in servers)
        bare_result.floor = f"api/floor raw ASGI, {suffix}"
        result.floor = f"api/floor bare FastAPI, {suffix}"
        result.target = API_TARGET
        results.extend([raw_result, bare_result, result])
    return results
