"""The supervised SQS consumer: long-poll, bounded concurrency, heartbeats, batched deletes, backoff,
dead-lettering, and a shutdown that finishes or releases what is in flight."""

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Gauge

from app.core.config import Settings
from app.ingestion.dispatcher import Dispatcher, Verdict
from app.messages import DEAD_LETTER_REASON, SOURCE_MESSAGE_ID, THROTTLED_TIMES, string_attributes

logger = logging.getLogger(__name__)

SQS_MAX_DELAY_SECONDS = 900  # SendMessage's DelaySeconds at most
THROTTLE_CAP_SECONDS = 60  # the longest a throttled file's message waits before it is looked at again
SQS_MAX_BATCH = 10  # API limit for ReceiveMessage and DeleteMessageBatch
SQS_MAX_VISIBILITY_SECONDS = 43_200  # API limit: 12 hours, counted from the receive
VISIBILITY_LIMIT_MARGIN_SECONDS = 60  # the last extension stays this far inside SQS's 12 hours
SQS_ATTRIBUTE_MAX_CHARS = 256  # keeps the dead-letter reason attribute small
DELETE_FLUSH_SECONDS = 0.05  # how long a delete waits for others to share its batch
DELETE_ATTEMPTS = 3
POLL_ERROR_BACKOFF_MAX_SECONDS = 30.0
RESTART_BACKOFF_MAX_SECONDS = 60.0
POLL_GRACE_SECONDS = 30  # past the long-poll wait, how late a poll may be before /ready fails

RECEIVED = Counter("consumer_received_total", "Messages received from SQS")
DELETED = Counter("consumer_deleted_total", "Messages deleted after handling")
RETRIED = Counter("consumer_retried_total", "Messages left on the queue with a backoff")
DEAD_LETTERED = Counter("consumer_dead_lettered_total", "Messages moved to the dead-letter queue")
POLL_ERRORS = Counter("consumer_poll_errors_total", "Failed ReceiveMessage calls")
CRASHES = Counter("consumer_restarts_total", "Times the consumer loop crashed and was restarted")
IN_FLIGHT = Gauge("consumer_in_flight", "Messages being handled now")


def throttle_delay(times: int, wait: float) -> int:
    """When a throttled file's message comes back: the ingestor's wait the first time, doubled with each
    re-send up to THROTTLE_CAP_SECONDS, so a tenant's long backlog does not churn the queue."""
    return int(min(THROTTLE_CAP_SECONDS, wait * 2 ** max(times - 1, 0)))


def backoff_seconds(receive_count: int, base: float, cap: float) -> int:
    """Exponential in the number of receives, with jitter so retries of one outage spread out."""
    delay = min(cap, base * 2 ** max(receive_count - 1, 0))
    return int(min(SQS_MAX_VISIBILITY_SECONDS, delay * random.uniform(0.8, 1.2)))  # noqa: S311


async def find_dead_letter_queue(sqs: Any, queue_url: str) -> str | None:
    """The URL of the queue's DLQ, from its RedrivePolicy; None without one."""
    attributes = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return None
    _, _, _, _, account, name = json.loads(policy)["deadLetterTargetArn"].split(":")
    found = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    return str(found["QueueUrl"])


class Consumer:
    def __init__(self, sqs: Any, dispatcher: Dispatcher, settings: Settings) -> None:
        self._sqs = sqs
        self._dispatcher = dispatcher
        self._settings = settings
        self._queue_url = str(settings.sqs_queue_url)
        self._dlq_url: str | None = None
        self._stopping = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._handlers: dict[asyncio.Task[None], dict[str, Any]] = {}
        # receipt handle -> (message, when it was received): what the heartbeat keeps invisible
        self._beating: dict[str, tuple[dict[str, Any], float]] = {}
        self._heart: asyncio.Task[None] | None = None
        self._beat = asyncio.Lock()  # held by the heartbeat while it extends a round of messages
        self._deletes: asyncio.Queue[str] = asyncio.Queue()
        self._deleter: asyncio.Task[None] | None = None
        self.last_poll: float | None = None  # monotonic time of the last healthy ReceiveMessage
        self._outage_streak = 0  # transient failures (then failed probes) since the last all-clear
        self._resume_at = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._deleter = asyncio.create_task(self._delete_loop(), name="sqs-deleter")
        self._heart = asyncio.create_task(self._heartbeat_loop(), name="sqs-heartbeat")
        self._supervisor = asyncio.create_task(self._supervise(), name="sqs-consumer")

    def healthy(self) -> bool:
        """Running, and polled recently (or every slot is busy with work)."""
        if self._supervisor is None or self._supervisor.done():
            return False
        if len(self._handlers) >= self._settings.sqs_max_in_flight:
            return True
        limit = self._settings.sqs_wait_time_seconds + POLL_GRACE_SECONDS
        return self.last_poll is not None and time.monotonic() - self.last_poll < limit

    async def stop(self) -> None:
        """Stop polling, give in-flight messages the grace period, then roll back and release the rest."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.cancel()
        if self._supervisor is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._handlers:
            _, late = await asyncio.wait(self._handlers, timeout=self._settings.shutdown_grace_seconds)
            for task in late:
                task.cancel()  # its handler releases the message and the file's claim
            if late:
                await asyncio.wait(late)
                logger.warning("in-flight messages released at shutdown", extra={"count": len(late)})
        for helper in (self._deleter, self._heart):
            if helper is not None:
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
        await self._flush_deletes()

    # --- polling -----------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            self._poller = asyncio.create_task(self._poll_loop(), name="sqs-poll")
            try:
                await self._poller
                return
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    return
                raise
            except Exception as exc:
                CRASHES.inc()
                logger.exception(
                    "consumer loop crashed; restarting", extra={"error_type": type(exc).__name__}
                )
                await self._sleep(delay)
                delay = min(delay * 2, RESTART_BACKOFF_MAX_SECONDS)

    async def _poll_loop(self) -> None:
        failures = 0
        settings = self._settings
        while not self._stopping.is_set():
            if self._outage_streak and not await self._outage_over():
                continue
            free = settings.sqs_max_in_flight - len(self._handlers)
            if free <= 0:
                await asyncio.wait(self._handlers, return_when=asyncio.FIRST_COMPLETED)
                continue
            if failures == 0:
                # A poll under way counts as recent; a failing one stops counting, so /ready notices.
                self.last_poll = time.monotonic()
            try:
                response = await self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=min(free, settings.sqs_batch_size, SQS_MAX_BATCH),
                    WaitTimeSeconds=settings.sqs_wait_time_seconds,
                    VisibilityTimeout=settings.sqs_visibility_timeout_seconds,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                    MessageAttributeNames=["All"],
                )
            except (ClientError, BotoCoreError) as exc:
                failures += 1
                POLL_ERRORS.inc()
                logger.warning(
                    "receive failed", extra={"error_type": type(exc).__name__, "failures": failures}
                )
                await self._sleep(min(POLL_ERROR_BACKOFF_MAX_SECONDS, 2.0 ** min(failures, 5)))
                continue
            failures = 0
            self.last_poll = time.monotonic()
            for message in response.get("Messages", []):
                RECEIVED.inc()
                task = asyncio.create_task(self._handle(message))
                self._handlers[task] = message
                task.add_done_callback(self._handlers.pop)

    async def _outage_over(self) -> bool:
        """After transient failures, wait out the backoff and probe before receiving again: messages
        polled during an outage would only fail again and use up their redrive count."""
        await self._sleep(max(0.0, self._resume_at - time.monotonic()))
        if self._stopping.is_set() or not await self._dispatcher.dependencies_up():
            self._note_outage()
            return False
        logger.info("dependencies answer again; polling resumes", extra={"streak": self._outage_streak})
        self._outage_streak = 0
        return True

    def _note_outage(self) -> None:
        self._outage_streak += 1
        settings = self._settings
        pause = min(
            settings.sqs_backoff_max_seconds,
            settings.sqs_backoff_base_seconds * 2 ** (self._outage_streak - 1),
        )
        self._resume_at = max(self._resume_at, time.monotonic() + pause)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- one message -------------------------------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> None:
        IN_FLIGHT.inc()
        receipt = message["ReceiptHandle"]
        self._beating[receipt] = (message, time.monotonic())
        message_id = message.get("MessageId", "-")
        try:
            verdict = await self._dispatcher.dispatch(
                message.get("Body", ""), message_id=message_id, trigger="sqs"
            )
        except asyncio.CancelledError:
            await asyncio.shield(self._final_visibility(message, 0))
            raise
        except Exception as exc:
            # A bug, not the message's fault: retried with backoff, and dead-lettered by the queue's
            # redrive policy if it keeps failing.
            logger.exception("message handling failed", extra={"message_id": message_id})
            verdict = Verdict("retry", reason=type(exc).__name__)
        finally:
            self._beating.pop(receipt, None)
            IN_FLIGHT.dec()
        await self._apply(message, verdict)

    async def _apply(self, message: dict[str, Any], verdict: Verdict) -> None:
        settings = self._settings
        if verdict.action == "delete":
            self._deletes.put_nowait(message["ReceiptHandle"])
        elif verdict.action == "delay":
            await self._final_visibility(message, int(verdict.delay_seconds) + 1)
        elif verdict.action == "requeue":
            await self._requeue(message, verdict.delay_seconds + 1)
        elif verdict.action == "retry":
            RETRIED.inc()
            if not self._outage_streak:
                self._note_outage()
            count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            delay = backoff_seconds(
                count, settings.sqs_backoff_base_seconds, settings.sqs_backoff_max_seconds
            )
            logger.warning(
                "message will be retried",
                extra={"message_id": message.get("MessageId"), "reason": verdict.reason, "delay_s": delay},
            )
            await self._final_visibility(message, delay)
        else:
            await self._dead_letter(message, verdict.reason or "not understood")

    async def _heartbeat_loop(self) -> None:
        """Keeps the messages being handled invisible in short steps (SQS_VISIBILITY_TIMEOUT_SECONDS, every
        SQS_HEARTBEAT_SECONDS), so no one else receives them mid-load, and so the message of a worker that
        died reappears soon after: at most one step later.

        One ChangeMessageVisibilityBatch per ten messages a beat. SQS keeps a message invisible at most 12
        hours from its receive: past that the heartbeat stops extending it (the file's claim still keeps
        other workers off while it loads).
        """
        step = self._settings.sqs_visibility_timeout_seconds
        while True:
            await asyncio.sleep(self._settings.sqs_heartbeat_seconds)
            async with self._beat:
                now = time.monotonic()
                extend: list[tuple[str, int]] = []
                for receipt, (_, received) in list(self._beating.items()):
                    remaining = (
                        int(SQS_MAX_VISIBILITY_SECONDS - (now - received)) - VISIBILITY_LIMIT_MARGIN_SECONDS
                    )
                    if remaining > 0:
                        extend.append((receipt, min(step, remaining)))
                for start in range(0, len(extend), SQS_MAX_BATCH):
                    await self._extend(extend[start : start + SQS_MAX_BATCH])

    async def _extend(self, entries: list[tuple[str, int]]) -> None:
        try:
            response = await self._sqs.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(position), "ReceiptHandle": receipt, "VisibilityTimeout": seconds}
                    for position, (receipt, seconds) in enumerate(entries)
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            # The messages reappear when their current step ends: later than wished, never lost.
            logger.warning("heartbeat failed", extra={"error_type": type(exc).__name__})
            return
        if failed := response.get("Failed", []):
            # Typically a message whose handling just ended (deleted meanwhile): nothing to extend.
            logger.info("heartbeat entries not extended", extra={"count": len(failed)})

    async def _final_visibility(self, message: dict[str, Any], seconds: int) -> None:
        """Set the visibility a handled message leaves with, once no heartbeat can overwrite it: a round
        already sending it would otherwise hide a released message again, or cut a backoff short."""
        self._beating.pop(message["ReceiptHandle"], None)
        async with self._beat:
            pass  # the round in flight (if any) is over; later rounds no longer see the message
        await self._set_visibility(message, seconds)

    async def _set_visibility(self, message: dict[str, Any], seconds: int) -> None:
        try:
            await self._sqs.change_message_visibility(
                QueueUrl=self._queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=min(seconds, SQS_MAX_VISIBILITY_SECONDS),
            )
        except (ClientError, BotoCoreError) as exc:
            # The message then reappears when its current timeout ends: later than wished, never lost.
            logger.warning("visibility change failed", extra={"error_type": type(exc).__name__})

    async def _requeue(self, message: dict[str, Any], wait: float) -> None:
        """The message again, as a new one (its receive count starts over) due after `throttle_delay`, and
        the old one deleted; sent before deleted, so a crash in between leaves a duplicate, never a loss
        (the processing log makes the duplicate a no-op)."""
        received = message.get("MessageAttributes", {})
        attributes = {
            name: {
                key: value
                for key, value in attribute.items()
                if key in ("DataType", "StringValue", "BinaryValue")
            }
            for name, attribute in received.items()
        }
        try:
            times = int(received.get(THROTTLED_TIMES, {}).get("StringValue", "0")) + 1
        except ValueError:
            times = 1
        attributes[THROTTLED_TIMES] = {"DataType": "Number", "StringValue": str(times)}
        delay = throttle_delay(times, wait)
        try:
            await self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=message.get("Body", ""),
                DelaySeconds=min(delay, SQS_MAX_DELAY_SECONDS),
                MessageAttributes=attributes,
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "requeue failed; the message returns instead", extra={"error_type": type(exc).__name__}
            )
            await self._final_visibility(message, delay)
            return
        self._deletes.put_nowait(message["ReceiptHandle"])

    # --- dead letters ------------------------------------------------------------------------------

    async def dead_letter_url(self) -> str | None:
        if self._dlq_url is None:
            self._dlq_url = await find_dead_letter_queue(self._sqs, self._queue_url)
        return self._dlq_url

    async def _dead_letter(self, message: dict[str, Any], reason: str) -> None:
        try:
            dlq = await self.dead_letter_url()
            if dlq is None:
                logger.error(
                    "message not understood and the queue has no dead-letter queue; it stays on the queue",
                    extra={"message_id": message.get("MessageId"), "reason": reason},
                )
                await self._final_visibility(message, self._settings.sqs_backoff_max_seconds)
                return
            await self._sqs.send_message(
                QueueUrl=dlq,
                MessageBody=message.get("Body", ""),
                MessageAttributes=string_attributes(
                    **{
                        DEAD_LETTER_REASON: reason[:SQS_ATTRIBUTE_MAX_CHARS],
                        SOURCE_MESSAGE_ID: message.get("MessageId", "-"),
                    }
                ),
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("dead-lettering failed; will retry", extra={"error_type": type(exc).__name__})
            await self._final_visibility(message, self._settings.sqs_backoff_base_seconds)
            return
        DEAD_LETTERED.inc()
        logger.warning(
            "message dead-lettered", extra={"message_id": message.get("MessageId"), "reason": reason}
        )
        # Sent before deleted: a crash in between duplicates the message in the DLQ, never loses it.
        self._deletes.put_nowait(message["ReceiptHandle"])

    # --- deletes -----------------------------------------------------------------------------------

    async def _delete_loop(self) -> None:
        while True:
            first = await self._deletes.get()
            await asyncio.sleep(DELETE_FLUSH_SECONDS)
            await self._delete_batch([first, *self._drain(SQS_MAX_BATCH - 1)])

    def _drain(self, limit: int) -> list[str]:
        handles: list[str] = []
        while len(handles) < limit and not self._deletes.empty():
            handles.append(self._deletes.get_nowait())
        return handles

    async def _flush_deletes(self) -> None:
        while handles := self._drain(SQS_MAX_BATCH):
            await self._delete_batch(handles)

    async def _delete_batch(self, handles: list[str]) -> None:
        pending = {str(position): handle for position, handle in enumerate(handles)}
        for _ in range(DELETE_ATTEMPTS):
            try:
                response = await self._sqs.delete_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[
                        {"Id": entry_id, "ReceiptHandle": handle} for entry_id, handle in pending.items()
                    ],
                )
            except (ClientError, BotoCoreError) as exc:
                logger.warning("delete failed", extra={"error_type": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            DELETED.inc(len(response.get("Successful", [])))
            pending = {failure["Id"]: pending[failure["Id"]] for failure in response.get("Failed", [])}
            if not pending:
                return
        # The messages come back after their visibility timeout and are recognised as done.
        logger.warning("messages not deleted", extra={"count": len(pending)})
