"""Memory of JSON reads and merges in a real service process: a document can take 25-40 times its size
once parsed, so concurrent large ones are parsed within a byte budget, not all at once."""

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import ServiceProcess, bearer

MIB = 1024 * 1024
CONCURRENT = 4  # the review's case: four at once exceeded a 1 GiB pod


def high_water_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_concurrent_reads_and_merges_of_large_documents_stay_within_the_budget(
    service_env: dict[str, str], spawn_service: Callable[[dict[str, str]], ServiceProcess], s3: Any
) -> None:
    bucket = f"memory-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    # 9 MiB (under S3_MAX_JSON_BYTES, with room for the merges) of empty objects: the most Python
    # objects per byte.
    items = b",".join([b"{}"] * (9 * MIB // 3))
    document = b'{"items": [' + items + b"]}"
    key = "large/empty-objects.json"
    s3.put_object(Bucket=bucket, Key=key, Body=document)
    service = spawn_service(
        {**service_env, "S3_BUCKET_NAME": bucket, "SQS_CONSUMER_ENABLED": "false", "LOG_LEVEL": "WARNING"}
    )
    await service.wait_healthy()
    pid = service.process.pid
    async with httpx.AsyncClient(base_url=service.url, headers=bearer(), timeout=120) as http:
        warm = await http.get(f"/s3/{key}")  # imports and first-use allocations, before measuring
        assert warm.status_code == 200
        baseline = resident_mib(pid)
        reads = [http.get(f"/s3/{key}") for _ in range(CONCURRENT)]
        merges = [http.put(f"/s3/{key}", json={f"n{n}": n}) for n in range(CONCURRENT)]
        answers = await asyncio.gather(*reads, *merges)
    assert [response.status_code for response in answers] == [200] * (2 * CONCURRENT)
    assert len(json.loads(answers[0].content)["items"]) == len(json.loads(document)["items"])
    grown = high_water_mib(pid) - baseline
    print(f"peak growth for {CONCURRENT} reads and {CONCURRENT} merges of 9 MiB: {grown:.0f} MiB")  # noqa: T201
    # One such document parses into ~340 MiB; all eight at once would be near 3 GiB.
    assert grown < 700
