"""Benchmark results: medians, ratios against each case's floor, targets, the table and latest.json."""

import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """What a case must reach; each bound is checked only when set."""

    min_ratio: float | None = None  # of the floor's median
    max_p99_ms: float | None = None
    max_errors: int | None = None
    max_peak_rss_bytes: int | None = None
    max_median: float | None = None  # in the result's unit (e.g. seconds of a recovery)

    def describe(self) -> str:
        parts = []
        if self.min_ratio is not None:
            parts.append(f">= {self.min_ratio:.2f} x floor")
        if self.max_p99_ms is not None:
            parts.append(f"p99 < {self.max_p99_ms:.0f} ms")
        if self.max_errors is not None:
            parts.append(f"errors <= {self.max_errors}")
        if self.max_peak_rss_bytes is not None:
            parts.append(f"RSS < {self.max_peak_rss_bytes / MIB:.0f} MiB")
        if self.max_median is not None:
            parts.append(f"median <= {self.max_median:g}")
        return ", ".join(parts)


@dataclass(slots=True)
class Result:
    case: str
    variant: str
    unit: str  # rows/s, req/s, files/s, MB/s or s: what `values` hold, one per run
    values: list[float]
    mb_per_s: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int | None = None
    peak_rss_bytes: int | None = None
    floor: str | None = None  # "case/variant" of the result this one is compared with
    target: Target | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.case}/{self.variant}"

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass(slots=True)
class Skipped:
    case: str
    variant: str
    reason: str


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def evaluate(result: Result, by_name: dict[str, Result]) -> tuple[float | None, bool | None]:
    """The ratio to the floor and whether the target is met (None: no target, or no floor to judge by)."""
    floor = by_name.get(result.floor) if result.floor else None
    ratio = result.median / floor.median if floor is not None and floor.median else None
    target = result.target
    if target is None:
        return ratio, None
    checks: list[bool] = []
    if target.min_ratio is not None:
        if ratio is None:
            return ratio, None
        checks.append(ratio >= target.min_ratio)
    p99 = _median(result.p99_ms)
    if target.max_p99_ms is not None and p99 is not None:
        checks.append(p99 < target.max_p99_ms)
    if target.max_errors is not None and result.errors is not None:
        checks.append(result.errors <= target.max_errors)
    if target.max_peak_rss_bytes is not None and result.peak_rss_bytes is not None:
        checks.append(result.peak_rss_bytes < target.max_peak_rss_bytes)
    if target.max_median is not None:
        checks.append(result.median <= target.max_median)
    return ratio, all(checks)


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


HEADER = (
    "case",
    "variant",
    "runs",
    "median",
    "unit",
    "MB/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "peak RSS MiB",
    "ratio",
    "vs floor",
    "target",
    "met",
)
_NUMERIC = {2, 3, 5, 6, 7, 8, 9, 10}


def _cells(r: Result, by_name: dict[str, Result]) -> list[str]:
    ratio, met = evaluate(r, by_name)
    return [
        r.case,
        r.variant,
        str(len(r.values)),
        _number(r.median, 1 if r.median < 100 else 0),
        r.unit,
        _number(_median(r.mb_per_s), 1),
        _number(_median(r.p50_ms), 1),
        _number(_median(r.p99_ms), 1),
        _number(r.errors),
        _number(r.peak_rss_bytes / MIB if r.peak_rss_bytes is not None else None),
        _number(ratio, 2),
        r.floor or "-",
        r.target.describe() if r.target else "-",
        {True: "yes", False: "NO", None: "-"}[met],
    ]


def table(results: list[Result], skipped: list[Skipped]) -> str:
    """The results as an aligned text table, then the notes and the skipped cases."""
    by_name = {r.name: r for r in results}
    rows = [list(HEADER), *(_cells(r, by_name) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]

    def line(row: list[str]) -> str:
        cells = (
            cell.rjust(width) if i in _NUMERIC else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    out = [line(rows[0]), line(["-" * w for w in widths]), *(line(row) for row in rows[1:])]
    notes = [f"  {r.name}: {r.note}" for r in results if r.note]
    if notes:
        out += ["", "notes:", *notes]
    out += [f"SKIPPED {s.case}/{s.variant}: {s.reason}" for s in skipped]
    return "\n".join(out)


def markdown(results: list[Result], skipped: list[Skipped]) -> str:
    """The same table in GitHub markdown, for docs/benchmarks.md."""
    by_name = {r.name: r for r in results}
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r, by_name)) + " |" for r in results]
    lines += [f"| {s.case} | {s.variant} | skipped: {s.reason} |" for s in skipped]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def write_json(path: Path, results: list[Result], skipped: list[Skipped], meta: dict[str, Any]) -> None:
    by_name = {r.name: r for r in results}
    cases = []
    for r in results:
        ratio, met = evaluate(r, by_name)
        item = asdict(r)
        item.update(
            median=r.median,
            median_mb_per_s=_median(r.mb_per_s),
            median_p50_ms=_median(r.p50_ms),
            median_p99_ms=_median(r.p99_ms),
            ratio=ratio,
            target=r.target.describe() if r.target else None,
            target_bounds=asdict(r.target) if r.target else None,
            target_met=met,
        )
        cases.append(item)
    document = {**meta, "machine": machine(), "results": cases, "skipped": [asdict(s) for s in skipped]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def load(path: Path) -> tuple[list[Result], list[Skipped]]:
    document = json.loads(path.read_text())
    fields = {f for f in Result.__dataclass_fields__ if f != "target"}
    results = []
    for item in document["results"]:
        result = Result(**{k: v for k, v in item.items() if k in fields})
        result.target = Target(**item["target_bounds"]) if item.get("target_bounds") else None
        results.append(result)
    return results, [Skipped(**item) for item in document["skipped"]]


def main() -> None:
    """`python -m bench.report [latest.json]`: the table in markdown, for docs/benchmarks.md."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json"
    document = json.loads(path.read_text())
    machine_ = document["machine"]
    print(
        f"{document['mode']} run of {document['finished_at']}, {document['seconds'] / 60:.1f} min; "
        f"{machine_['cpus']} CPUs ({machine_['cpu_model']}), {machine_['memory_gib']} GiB"
    )
    print()
    print(markdown(*load(path)))


if __name__ == "__main__":
    main()
