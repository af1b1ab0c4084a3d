"""`python -m bench [--quick]` (make bench / make bench-quick): every case against its floor on its own
PostgreSQL and moto, medians of several runs, the table on stdout and in bench/results/latest.json.
Exit code 1 if a target is missed."""

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench import api, consumer, ingest, lake, recovery, sources, upload_memory
from bench.data import SEED, write_dataset
from bench.report import MIB, Result, Skipped, Target, evaluate, table, write_json
from bench.stack import RESULTS, ROOT, Infra, infrastructure, service

CASES = ("upload", "ingest", "growth", "lake", "dlt", "big", "api", "consumer", "recovery", "sources")


@dataclass(frozen=True, slots=True)
class Plan:
    records: int  # per ingestion file (and the sources case's billing file)
    runs: int  # of each case
    slow_runs: int  # of the naive designs and dlt
    per_record_sample: int  # records the INSERT-per-record design loads
    api_seconds: int
    consumer_files: int
    big_megabytes: int  # the peak-RSS file; 0 leaves the case out
    upload_megabytes: int


FULL = Plan(1_000_000, 3, 1, 50_000, 20, 2000, 1024, 50)
QUICK = Plan(100_000, 3, 2, 50_000, 5, 300, 0, 50)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def migrate(infra: Infra) -> None:
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=infra.env(), check=True)


def upload_case(infra: Infra, megabytes: int) -> Result:
    size = megabytes * MIB
    env = {"MAX_UPLOAD_BYTES": str(size + 1), "SQS_CONSUMER_ENABLED": "false"}
    with service(infra, env) as svc:
        measured = upload_memory.measure(infra, svc, size)
    before = int(measured["peak_rss_before_bytes"])
    return Result(
        "upload",
        f"service multipart {megabytes} MiB",
        "MB/s",
        [float(measured["mb_per_second"])],
        mb_per_s=[float(measured["mb_per_second"])],
        peak_rss_bytes=int(measured["peak_rss_after_bytes"]),
        target=Target(max_peak_rss_bytes=int(before + upload_memory.MAX_GROWTH_RATIO * size)),
        note=f"peak RSS grew {int(measured['peak_rss_growth_bytes']) / MIB:.1f} MiB "
        f"(target: at most {upload_memory.MAX_GROWTH_RATIO:.0%} of the file)",
        details=measured,
    )


async def run(
    infra: Infra, plan: Plan, cases: set[str], *, tuned: bool = True
) -> tuple[list[Result], list[Skipped]]:
    results: list[Result] = []
    skipped: list[Skipped] = []

    def add(found: Sequence[Result | Skipped] | Result | Skipped) -> None:
        for item in found if isinstance(found, Sequence) else [found]:
            if isinstance(item, Result):
                results.append(item)
                peak = f", peak RSS {item.peak_rss_bytes / MIB:,.0f} MiB" if item.peak_rss_bytes else ""
                log(
                    f"{item.name}: median {item.median:,.1f} {item.unit} over {len(item.values)} run(s){peak}"
                )
            else:
                skipped.append(item)
                log(f"SKIPPED {item.case}/{item.variant}: {item.reason}")

    if "upload" in cases:
        add(await asyncio.to_thread(upload_case, infra, plan.upload_megabytes))
    conn = await ingest.connect(infra.database_url)
    try:
        if cases & {"ingest", "growth", "lake", "dlt", "big"}:
            started = time.perf_counter()
            dataset = await asyncio.to_thread(write_dataset, infra.workdir / "data", plan.records)
            sizes = ", ".join(
                f"{path.name} {path.stat().st_size / 1e6:.0f} MB"
                for path in (dataset.jsonl, dataset.csv, dataset.csv_gz)
            )
            log(
                f"data: {plan.records:,} records, {sizes} "
                f"(seed {SEED}, {time.perf_counter() - started:.0f} s)"
            )
        if "ingest" in cases:
            add(await ingest.database_cases(conn, dataset, plan.slow_runs, plan.per_record_sample))
            for fmt in ingest.FORMATS:
                # Floors A and C of the rows this format shares, interleaved with the service's runs.
                rows = await ingest.precompute_rows(fmt.path(dataset)) if fmt.rows_of == fmt.name else None
                add(await ingest.service_case(infra, conn, dataset, fmt, plan.runs, plan.runs, rows))
                del rows
        if "growth" in cases:
            add(await ingest.growth_case(infra, conn, dataset, plan.runs))
        if "lake" in cases:
            add(await lake.lake_case(infra, conn, dataset, plan.runs))
        if "dlt" in cases:
            for file_format in ("insert_values", "csv"):
                add(await ingest.dlt_case(infra, conn, dataset, plan.slow_runs, file_format))
        if "big" in cases and plan.big_megabytes:
            add(await ingest.big_file_case(infra, conn, dataset, plan.big_megabytes))
        if "api" in cases:
            add(await api.api_cases(infra, plan.runs, plan.api_seconds, tuned=tuned))
        if "consumer" in cases:
            add(await consumer.consumer_cases(infra, conn, plan.consumer_files, plan.runs))
        if "recovery" in cases:
            add(await recovery.recovery_case(infra, conn, plan.runs))
        if "sources" in cases:
            add(await sources.sources_case(infra, conn, plan.records, plan.runs))
    finally:
        await conn.close()
    return results, skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"smaller sizes: {QUICK}")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}"
    )
    parser.add_argument("--megabytes", type=int, help="size of the peak-RSS JSON Lines file (the `big` case)")
    parser.add_argument("--runs", type=int, help="runs of each case")
    parser.add_argument(
        "--untuned",
        action="store_true",
        help="the API case without app/core/perf.py's tuned() for the service and its floors alike "
        "(what the tuning is worth)",
    )
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    if unknown := cases - set(CASES):
        parser.error(f"unknown cases: {sorted(unknown)}")
    plan = QUICK if args.quick else FULL
    if args.megabytes is not None:
        plan = replace(plan, big_megabytes=args.megabytes)
    if args.runs is not None:
        plan = replace(plan, runs=args.runs)
    log(f"plan: {'quick' if args.quick else 'full'} {plan}")
    started = time.perf_counter()
    with infrastructure() as infra:
        migrate(infra)
        results, skipped = asyncio.run(run(infra, plan, cases, tuned=not args.untuned))
    elapsed = time.perf_counter() - started
    print()
    print(table(results, skipped))
    meta: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "cases": sorted(cases),
        "tuned": not args.untuned,
        "seconds": round(elapsed),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(RESULTS / "latest.json", results, skipped, meta)
    log(f"done in {elapsed / 60:.1f} min; {RESULTS / 'latest.json'}")
    by_name = {r.name: r for r in results}
    missed = [r.name for r in results if evaluate(r, by_name)[1] is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
