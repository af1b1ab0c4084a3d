"""Peak memory of the service while a 50 MB file is uploaded through POST /s3/upload (multipart).

Starts its own PostgreSQL, moto and `python -m app serve`, streams the file without holding it in
this process either, and reads the server's peak RSS (VmHWM, Linux) before and after.
Exit code 1 if the upload grows the server's peak RSS by more than MAX_GROWTH_RATIO of the file size.
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from app.core.security import mint_token
from devtools.bootstrap import bootstrap_aws
from devtools.servers import free_port, start_moto, start_postgres

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MAX_GROWTH_RATIO = 0.4
CHUNK = 256 * 1024


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found: this benchmark needs Linux /proc")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    size = args.megabytes * 1024 * 1024
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_postgres(Path(tmp) / "pg", durable=False) as pg,
        start_moto(log_path=Path(tmp) / "moto.log") as moto,
    ):
        resources = bootstrap_aws(
            moto.endpoint_url,
            "us-east-1",
            bucket="bench-bucket",
            topic="bench",
            queue="bench",
            dlq="bench-dlq",
        )
        secret = secrets.token_urlsafe(48)
        env = {
            **os.environ,
            "DATABASE_URL": pg.dsn,
            "AWS_ENDPOINT_URL": moto.endpoint_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "JWT_SECRET": secret,
            "LOG_LEVEL": "WARNING",
            "MAX_UPLOAD_BYTES": str(size + 1),
            **{k: v for k, v in resources.items() if k != "SQS_DLQ_URL"},
        }
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=tmp,
            env={**env, "PYTHONPATH": str(ROOT)},
        )
        try:
            return measure(server, f"http://127.0.0.1:{port}", secret, size)
        finally:
            server.terminate()
            server.wait(30)


def measure(server: subprocess.Popen[bytes], base_url: str, secret: str, size: int) -> int:
    token = mint_token(secret, subject="bench", scopes=["s3:write"], ttl_seconds=600)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base_url, timeout=120) as http:
        while True:
            try:
                if http.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        # Warm up: the first upload loads code paths and the S3 client's connection pool.
        http.post("/s3/upload", json={"key": "warmup.json", "content": {"a": 1}}, headers=headers)
        before = peak_rss_bytes(server.pid)
        boundary = secrets.token_hex(16)
        started = time.perf_counter()
        response = http.post(
            "/s3/upload",
            content=multipart_body(boundary, "bench/big.jsonl", size),
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        elapsed = time.perf_counter() - started
        after = peak_rss_bytes(server.pid)
    response.raise_for_status()
    if response.json()["size"] != size:
        raise RuntimeError(f"the service stored {response.json()['size']} bytes, not {size}")
    growth = after - before
    result = {
        "file_bytes": size,
        "peak_rss_before_bytes": before,
        "peak_rss_after_bytes": after,
        "peak_rss_growth_bytes": growth,
        "growth_ratio": round(growth / size, 3),
        "seconds": round(elapsed, 2),
        "mb_per_second": round(size / elapsed / 1e6, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "upload_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    mib = 1024 * 1024
    print(
        f"upload {size / mib:.0f} MiB in {elapsed:.1f}s ({result['mb_per_second']} MB/s): server peak RSS "
        f"{before / mib:.0f} -> {after / mib:.0f} MiB (+{growth / mib:.1f} MiB, "
        f"{result['growth_ratio']:.0%} of the file; limit {MAX_GROWTH_RATIO:.0%})"
    )
    return 0 if growth <= MAX_GROWTH_RATIO * size else 1


if __name__ == "__main__":
    sys.exit(main())
