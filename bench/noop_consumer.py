"""The consumer case's floor: long-polls the queue, downloads each object an S3 event names (reading
every byte), deletes the messages, nothing else. What moto's S3 and SQS allow any consumer.

Prints READY once its clients are open, then exits after `--expect` objects, printing one JSON line:
{"objects", "deliveries", "last_done"} (epoch seconds of the last delete).
"""

import argparse
import asyncio
import json
import time
from typing import Any
from urllib.parse import unquote_plus

import aioboto3

from devtools.bootstrap import EMULATOR_CREDENTIAL

SQS_MAX_BATCH = 10  # API limit for ReceiveMessage and DeleteMessageBatch
POLLERS = 2  # a receive is in flight while the other poller's batch downloads


class NoopConsumer:
    def __init__(self, sqs: Any, s3: Any, queue_url: str, expect: int, wait_seconds: int) -> None:
        self._sqs = sqs
        self._wait_seconds = wait_seconds
        self._s3 = s3
        self._queue_url = queue_url
        self._expect = expect
        self.seen: set[str] = set()  # moto can hand one message to two concurrent receives: count objects
        self.deliveries = 0
        self.last_done = 0.0
        self.finished = asyncio.Event()

    async def _download(self, record: dict[str, Any]) -> str:
        bucket, key = record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"])
        response = await self._s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        async with body:
            await body.read()
        return f"{bucket}/{key}"

    async def _handle(self, message: dict[str, Any]) -> list[str]:
        records = [r for r in json.loads(message["Body"]).get("Records", []) if "s3" in r]
        return list(await asyncio.gather(*(self._download(record) for record in records)))

    async def poll(self) -> None:
        while not self.finished.is_set():
            response = await self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=SQS_MAX_BATCH,
                WaitTimeSeconds=self._wait_seconds,
            )
            messages = response.get("Messages", [])
            if not messages:
                continue
            objects = await asyncio.gather(*(self._handle(message) for message in messages))
            await self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
            for names in objects:
                self.deliveries += len(names)
                self.seen.update(names)
            self.last_done = time.time()
            if len(self.seen) >= self._expect:
                self.finished.set()


async def run(endpoint_url: str, queue_url: str, expect: int, wait_seconds: int) -> dict[str, float]:
    session = aioboto3.Session(
        aws_access_key_id=EMULATOR_CREDENTIAL,
        aws_secret_access_key=EMULATOR_CREDENTIAL,
        region_name="us-east-1",
    )
    async with (
        session.client("sqs", endpoint_url=endpoint_url) as sqs,
        session.client("s3", endpoint_url=endpoint_url) as s3,
    ):
        consumer = NoopConsumer(sqs, s3, queue_url, expect, wait_seconds)
        print("READY", flush=True)
        pollers = [asyncio.create_task(consumer.poll()) for _ in range(POLLERS)]
        await consumer.finished.wait()
        for task in pollers:
            task.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        return {
            "objects": len(consumer.seen),
            "deliveries": consumer.deliveries,
            "last_done": consumer.last_done,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--wait-seconds", type=int, required=True, help="long poll, as the service's")
    args = parser.parse_args()
    outcome = asyncio.run(run(args.endpoint_url, args.queue_url, args.expect, args.wait_seconds))
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
