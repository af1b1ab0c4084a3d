"""Peak memory of the service while a 50 MB file is uploaded through POST /s3/upload (multipart).

Streams the file without holding it in this process either, and reads the server's peak RSS before
and after. Exit code 1 if the upload grows it by more than MAX_GROWTH_RATIO of the file size.
"""

import argparse
import json
import secrets
import sys
import time
from collections.abc import Iterator

import httpx

from bench.stack import RESULTS, Infra, Server, infrastructure, service

MAX_GROWTH_RATIO = 0.4
CHUNK = 256 * 1024


def multipart_body(boundary: str, key: str, size: int) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\n{key}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/x-ndjson\r\n\r\n"
    ).encode()
    line = b'{"id": 1, "text": "' + b"x" * 200 + b'"}\n'
    block = line * (CHUNK // len(line))
    sent = 0
    while sent < size:
        piece = block[: size - sent]
        sent += len(piece)
        yield piece
    yield f"\r\n--{boundary}--\r\n".encode()


def measure(infra: Infra, server: Server, size: int) -> dict[str, float | int]:
    headers = {"Authorization": f"Bearer {infra.token('s3:write')}"}
    with httpx.Client(base_url=server.base_url, timeout=300) as http:
        # Warm up: the first upload loads code paths and the S3 client's connection pool.
        http.post("/s3/upload", json={"key": "warmup.json", "content": {"a": 1}}, headers=headers)
        before = server.peak_rss_bytes()
        boundary = secrets.token_hex(16)
        started = time.perf_counter()
        response = http.post(
            "/s3/upload",
            content=multipart_body(boundary, "bench/big.jsonl", size),
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        elapsed = time.perf_counter() - started
        after = server.peak_rss_bytes()
    response.raise_for_status()
    if response.json()["size"] != size:
        raise RuntimeError(f"the service stored {response.json()['size']} bytes, not {size}")
    growth = after - before
    return {
        "file_bytes": size,
        "peak_rss_before_bytes": before,
        "peak_rss_after_bytes": after,
        "peak_rss_growth_bytes": growth,
        "growth_ratio": round(growth / size, 3),
        "seconds": round(elapsed, 2),
        "mb_per_second": round(size / elapsed / 1e6, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    size = args.megabytes * 1024 * 1024
    # The consumer is off: the uploaded file's ingestion would be measured too.
    env = {"MAX_UPLOAD_BYTES": str(size + 1), "SQS_CONSUMER_ENABLED": "false"}
    with infrastructure() as infra, service(infra, env) as server:
        result = measure(infra, server, size)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "upload_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    mib = 1024 * 1024
    growth = int(result["peak_rss_growth_bytes"])
    print(
        f"upload {size / mib:.0f} MiB in {result['seconds']}s ({result['mb_per_second']} MB/s): "
        f"server peak RSS +{growth / mib:.1f} MiB, {result['growth_ratio']:.0%} of the file "
        f"(limit {MAX_GROWTH_RATIO:.0%})"
    )
    return 0 if growth <= MAX_GROWTH_RATIO * size else 1


if __name__ == "__main__":
    sys.exit(main())
