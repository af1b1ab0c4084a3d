"""Deterministic benchmark data: the same seed gives the same bytes on every machine."""

import csv
import gzip
import random
from dataclasses import dataclass
from pathlib import Path

import orjson

SEED = 20_241_126
CITIES = ("Lisbon", "Porto", "Madrid", "Berlin", "Dublin", "Oslo", "Vienna", "Prague", "Warsaw", "Zurich")
FIELDS = ("id", "name", "email", "city", "score", "active", "joined")
WRITE_BATCH = 10_000
GZIP_LEVEL = 6  # gzip's default, what a producer would most likely use
SMALL_FILE_RECORDS = 8  # about 1 KB of JSON per consumer-case file


@dataclass(frozen=True, slots=True)
class Dataset:
    records: int
    jsonl: Path
    csv: Path
    csv_gz: Path


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311  (reproducible data, not secrets)


def _records(start: int, count: int, rng: random.Random) -> list[dict[str, object]]:
    # About 110 bytes of JSON each: 1,000,000 records make a ~100 MB JSON Lines file.
    return [
        {
            "id": i,
            "name": f"user-{i:08d}",
            "email": f"user{i}@example.com",
            "city": rng.choice(CITIES),
            "score": round(rng.uniform(0, 1000), 2),
            "active": rng.random() < 0.5,
            "joined": f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }
        for i in range(start, start + count)
    ]


def write_jsonl(path: Path, records: int, seed: int = SEED) -> None:
    rng = _rng(seed)
    with path.open("wb") as file:
        for start in range(0, records, WRITE_BATCH):
            batch = _records(start, min(WRITE_BATCH, records - start), rng)
            file.write(b"".join(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in batch))


def write_dataset(folder: Path, records: int, seed: int = SEED) -> Dataset:
    """The same records as JSON Lines, CSV (every value a string, as CSV has no types) and gzipped CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = Dataset(records, folder / "records.jsonl", folder / "records.csv", folder / "records.csv.gz")
    write_jsonl(dataset.jsonl, records, seed)
    rng = _rng(seed)
    with dataset.csv.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(FIELDS)
        for start in range(0, records, WRITE_BATCH):
            batch = _records(start, min(WRITE_BATCH, records - start), rng)
            writer.writerows([record[field] for field in FIELDS] for record in batch)
    with (
        dataset.csv.open("rb") as source,
        gzip.open(dataset.csv_gz, "wb", compresslevel=GZIP_LEVEL) as target,
    ):
        while chunk := source.read(1024 * 1024):
            target.write(chunk)
    return dataset


def small_files(count: int, seed: int = SEED) -> list[bytes]:
    """`count` JSON arrays of SMALL_FILE_RECORDS records (about 1 KB each), different in every file."""
    rng = _rng(seed)
    return [orjson.dumps(_records(n * SMALL_FILE_RECORDS, SMALL_FILE_RECORDS, rng)) for n in range(count)]
