"""Sample files for the example sources, generated with a fixed seed (no real personal data: names are
drawn from short made-up lists, ids are counters).

    python -m examples.sources.generate [FOLDER]   # writes the samples (default examples/sources/samples)

The tests and the benchmark call the functions directly, at the sizes they need.
"""

import csv
import gzip
import io
import random
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

BILLING_HEADER = [
    "identity/LineItemId",
    "identity/TimeInterval",
    "lineItem/UsageAccountId",
    "lineItem/UsageStartDate",
    "lineItem/UsageEndDate",
    "lineItem/ProductCode",
    "lineItem/UsageType",
    "lineItem/UsageAmount",
    "lineItem/UnblendedCost",
    "lineItem/CurrencyCode",
    "resourceTags",
]
PRODUCTS = {
    "AmazonEC2": ["BoxUsage:m7g.large", "EBS:VolumeUsage.gp3", "DataTransfer-Out-Bytes"],
    "AmazonS3": ["TimedStorage-ByteHrs", "Requests-Tier1", "Requests-Tier2"],
    "AmazonRDS": ["InstanceUsage:db.r7g.large", "RDS:GP3-Storage"],
    "AWSLambda": ["Lambda-GB-Second", "Request"],
}
TEAMS = ["payments", "search", "platform", "data", "web"]
FIRST_NAMES = ["Alex", "Sam", "Robin", "Jordan", "Casey", "Riley", "Morgan", "Avery", "Quinn", "Drew"]
LAST_NAMES = ["Example", "Sample", "Placeholder", "Testcase", "Fixture", "Mockley", "Demo", "Specimen"]
RANKS = ["Officer", "Officer", "Officer", "Detective", "Sergeant", "Lieutenant", "Captain"]
EVENT_TYPES = ["page_view", "page_view", "page_view", "add_to_cart", "checkout", "refund"]


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def billing_rows(
    rows: int, *, seed: int = 1, month: date = date(2026, 11, 1), revision: int = 0
) -> list[list[str]]:
    """Line items of one month to date: item i is hour i % 24 of day i // 24 ... of account i % 7.
    `revision` > 0 changes the cost of every 10th line (a re-delivered month-to-date file)."""
    pick = random.Random(seed)
    start = datetime(month.year, month.month, month.day, tzinfo=UTC)
    items: list[list[str]] = []
    for index in range(rows):
        product = pick.choice(list(PRODUCTS))
        usage_type = pick.choice(PRODUCTS[product])
        hour = start + timedelta(hours=index % (24 * 28))
        amount = pick.randint(1, 10_000_000) / 10_000
        cost = pick.randint(1, 99_999_999_999) / 10**10
        if revision and index % 10 == 0:
            cost += revision / 100
        tags = {"user:team": pick.choice(TEAMS), "user:env": pick.choice(["prod", "staging"])}
        items.append(
            [
                f"li-{index // (24 * 28):06d}-{product}",
                f"{hour:%Y-%m-%dT%H:%M:%SZ}/{hour + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
                f"{100000000000 + index % 7:012d}",
                f"{hour:%Y-%m-%dT%H:%M:%SZ}",
                f"{hour + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
                product,
                usage_type,
                f"{amount:.4f}",
                f"{cost:.10f}",
                "USD",
                orjson.dumps(tags).decode(),
            ]
        )
    return items


def billing_csv_gz(rows: int, *, seed: int = 1, revision: int = 0) -> bytes:
    return gzip.compress(_csv(BILLING_HEADER, billing_rows(rows, seed=seed, revision=revision)), mtime=0)


def roster_csv(rows: int, *, seed: int = 2, bad_every: int = 0) -> bytes:
    """An officer roster; with `bad_every` = n, every n-th row breaks a rule (a rotating one)."""
    pick = random.Random(seed)
    header = ["badge_id", "first_name", "last_name", "rank", "hire_date", "precinct", "active"]
    lines: list[list[str]] = []
    for index in range(rows):
        hired = date(2000, 1, 1) + timedelta(days=pick.randint(0, 9000))
        row = [
            f"{'AB' if index % 2 else 'CD'}{index:04d}",
            pick.choice(FIRST_NAMES),
            pick.choice(LAST_NAMES),
            pick.choice(RANKS),
            f"{hired:%m/%d/%Y}",
            str(pick.randint(1, 120)),
            pick.choice(["true", "false", ""]),
        ]
        if bad_every and index % bad_every == bad_every - 1:
            broken = (index // bad_every) % 4
            if broken == 0:
                row[0] = f"X{index}"  # regex
            elif broken == 1:
                row[3] = "Admiral"  # enum
            elif broken == 2:
                row[4] = "01/01/2999"  # max: now
            else:
                row[1] = "   "  # not_blank
        lines.append(row)
    return _csv(header, lines)


def events_jsonl(rows: int, *, seed: int = 3, first: int = 0) -> bytes:
    """Events number `first` to `first + rows - 1`; event n is the same in every file that holds it."""
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    out = io.BytesIO()
    for index in range(first, first + rows):
        pick = random.Random(seed * 10**9 + index)
        kind = pick.choice(EVENT_TYPES)
        properties: dict[str, object] = {"path": f"/products/{pick.randint(1, 500)}"}
        if kind in ("add_to_cart", "checkout", "refund"):
            properties["amount"] = round(pick.uniform(1, 500), 2)
        event = {
            "id": f"ev-{index:08d}",
            "type": kind,
            "time": f"{start + timedelta(seconds=index):%Y-%m-%dT%H:%M:%SZ}",
            "context": {"session": f"s-{index // 20:06d}", "app": {"version": "3.4.1"}},
            "properties": properties,
        }
        out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    return out.getvalue()


def main(folder: str = "examples/sources/samples") -> None:
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    (target / "billing-2026-11.csv.gz").write_bytes(billing_csv_gz(2_000))
    (target / "roster-2026-11.csv").write_bytes(roster_csv(200, bad_every=25))
    (target / "events-0001.jsonl").write_bytes(events_jsonl(1_000))
    print(f"samples written to {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
