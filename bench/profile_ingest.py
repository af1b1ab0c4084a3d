"""Where the service's time goes while it ingests one file end to end: py-spy (bench/.venv) samples the
service process, the stacks go to bench/results/ingest-profile.txt (collapsed format: speedscope or
flamegraph.pl read it), and the functions with the most samples, own and inclusive, are printed.

`python -m bench.profile_ingest [--records N] [--format jsonl|csv|csv.gz]`
"""

import argparse
import asyncio
import collections
import signal
from pathlib import Path

from bench import ingest
from bench.__main__ import migrate
from bench.data import write_dataset
from bench.stack import RESULTS, ROOT, infrastructure, service

PY_SPY = ROOT / "bench" / ".venv" / "bin" / "py-spy"
SAMPLES_PER_SECOND = 200
TOP = 25


def summarize(collapsed: Path) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame.split(" (")[0] + _where(frame) for frame in stack.split(";")]
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples ({total / SAMPLES_PER_SECOND:.1f} s of CPU)", "", "own time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(TOP)]
    lines += ["", "inclusive time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(TOP)]
    return "\n".join(lines)


def _where(frame: str) -> str:
    # "name (path/to/module.py:123)" -> " (module.py)": per function, not per line
    if " (" not in frame:
        return ""
    location = frame.split(" (", 1)[1].rstrip(")")
    return f" ({Path(location.rsplit(':', 1)[0]).name})"


async def profile(records: int, format_name: str) -> Path:
    fmt = next(f for f in ingest.FORMATS if f.name == format_name)
    output = RESULTS / "ingest-profile.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with infrastructure() as infra:
        migrate(infra)
        dataset = write_dataset(infra.workdir / "data", records)
        conn = await ingest.connect(infra.database_url)
        with service(infra, ingest.SERVICE_ENV) as svc:
            command = [str(PY_SPY), "record", "--pid", str(svc.pid), "--rate", str(SAMPLES_PER_SECOND)]
            command += ["--format", "raw", "--output", str(output)]
            spy = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            await asyncio.sleep(1)  # attached
            runs = await ingest.service_runs(
                infra, conn, svc, fmt.path(dataset), records, [f"profile/run{fmt.suffix}"]
            )
            spy.send_signal(signal.SIGINT)
            _, errors = await asyncio.wait_for(spy.communicate(), 60)
            if not output.exists():
                raise RuntimeError(f"py-spy wrote nothing: {errors.decode(errors='replace').strip()}")
        await conn.close()
    seconds = runs["seconds"][0]
    rate = records / seconds
    print(f"{records:,} {format_name} records in {seconds:.1f} s ({rate:,.0f} rows/s, under py-spy)")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--format", choices=[f.name for f in ingest.FORMATS], default="jsonl")
    args = parser.parse_args()
    output = asyncio.run(profile(args.records, args.format))
    print(summarize(output))
    print(f"stacks: {output}")


if __name__ == "__main__":
    main()
