"""Where a worker's CPU goes under the API case's load: the service and the bare FastAPI floor (one worker
each, served as the API case serves them), each loaded by wrk in turn while py-spy (bench/.venv) samples
it. Prints the CPU microseconds per request of each, then the functions with the most samples, own and
inclusive; the stacks go to bench/results/api-profile-{service,bare}.txt (collapsed format: speedscope or
flamegraph.pl read them).

`python -m bench.profile_api [--seconds N] [--untuned]`
"""

import argparse
import asyncio
import signal
from pathlib import Path

from bench import api
from bench.__main__ import migrate
from bench.profile_ingest import PY_SPY, SAMPLES_PER_SECOND, summarize
from bench.stack import RESULTS, Server, infrastructure, service


async def _profile(target: Server, token: str, seconds: int, output: Path) -> str:
    await api.run_wrk(target.base_url, api.WARMUP_SECONDS, token)
    command = [str(PY_SPY), "record", "--pid", str(target.pid), "--rate", str(SAMPLES_PER_SECOND)]
    command += ["--format", "raw", "--output", str(output)]
    spy = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    await asyncio.sleep(1)  # attached
    cpu_before = target.cpu_seconds()
    summary = await api.run_wrk(target.base_url, seconds, token)
    cpu = target.cpu_seconds() - cpu_before
    spy.send_signal(signal.SIGINT)
    _, errors = await asyncio.wait_for(spy.communicate(), 60)
    if not await asyncio.to_thread(output.exists):
        raise RuntimeError(f"py-spy wrote nothing: {errors.decode(errors='replace').strip()}")
    requests = summary["requests"]
    rate = requests / (summary["duration_us"] / 1e6)
    return (
        f"{rate:,.0f} req/s, p99 {summary['p99_us'] / 1000:.1f} ms, "
        f"{cpu / requests * 1e6:.0f} us of the worker's CPU a request (py-spy pauses it for each sample)"
    )


async def profile(seconds: int, tuned: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with infrastructure() as infra:
        migrate(infra)
        await api.seed_users(infra.database_url)
        token = infra.token("users:read")
        with (
            api.floor_server(infra, api.BARE_FLOOR, 1, tuned) as bare,
            service(infra, api.SERVICE_ENV, tuned=tuned) as svc,
        ):
            for name, target in (("service", svc), ("bare", bare)):
                output = RESULTS / f"api-profile-{name}.txt"
                print(f"{name}: {await _profile(target, token, seconds, output)}")
                print(summarize(output))
                print(f"stacks: {output}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--untuned", action="store_true", help="without perf.tuned, for both")
    args = parser.parse_args()
    if reason := api.wrk_available():
        raise SystemExit(reason)
    if not PY_SPY.exists():
        raise SystemExit(f"{PY_SPY} is missing: make bench-tools installs it")
    asyncio.run(profile(args.seconds, not args.untuned))


if __name__ == "__main__":
    main()
