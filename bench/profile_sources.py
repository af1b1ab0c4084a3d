"""Where the service's time goes while it lands the billing example into its typed table (the `sources`
case): py-spy (bench/.venv) samples the service process during one run, the stacks go to
bench/results/sources-profile.txt (collapsed format: speedscope or flamegraph.pl read it), and the
functions with the most samples, own and inclusive, are printed (bench/profile_ingest.py's summary).

`python -m bench.profile_sources [--records N] [--py-spy PATH]`
"""

import argparse
import asyncio
import signal
from pathlib import Path

from bench import ingest, sources
from bench.__main__ import migrate
from bench.profile_ingest import PY_SPY, SAMPLES_PER_SECOND, summarize
from bench.stack import RESULTS, infrastructure, service


async def profile(records: int, py_spy: Path) -> Path:
    output = RESULTS / "sources-profile.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with infrastructure() as infra:
        migrate(infra)
        sources.apply_source(infra)
        path = sources.write_billing(infra.workdir / "data", records)
        conn = await ingest.connect(infra.database_url)
        await sources.fresh_table(conn)
        with service(infra, ingest.SERVICE_ENV) as svc:
            command = [str(py_spy), "record", "--pid", str(svc.pid), "--rate", str(SAMPLES_PER_SECOND)]
            command += ["--format", "raw", "--output", str(output)]
            spy = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            await asyncio.sleep(1)  # attached
            run = await sources.service_run(infra, conn, svc, path, records)
            spy.send_signal(signal.SIGINT)
            _, errors = await asyncio.wait_for(spy.communicate(), 60)
            if not output.exists():
                raise RuntimeError(f"py-spy wrote nothing: {errors.decode(errors='replace').strip()}")
        await conn.close()
    seconds = run["seconds"]
    print(
        f"{records:,} billing line items in {seconds:.1f} s ({records / seconds:,.0f} rows/s, under py-spy); "
        f"CPU seconds: service {run['cpu_service']:.1f}, PostgreSQL {run['cpu_postgres']:.1f}"
    )
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--py-spy", type=Path, default=PY_SPY, help=f"the py-spy binary (default {PY_SPY})")
    args = parser.parse_args()
    output = asyncio.run(profile(args.records, args.py_spy))
    print(summarize(output))
    print(f"stacks: {output}")


if __name__ == "__main__":
    main()
