"""The wire contract of every message the service itself sends, in one place for producer and consumer alike.

- Change notifications (`object.uploaded`, `object.updated`) on SNS_TOPIC_ARN after a write through /s3;
  the consumer ingests the object they name (app/ingestion/envelopes.py reads them).
- The daily report's announcement (`report.daily`) on SNS_TOPIC_ARN; the consumer acknowledges it.
- `user_records` messages from POST /users/sqs/send, straight onto SQS_QUEUE_URL; the consumer writes the
  record to users/{data_type}/{user_id}.json.
- The attributes the consumer adds to a message it dead-letters (and the redrive strips again).

What AWS sends (S3 event notifications, EventBridge events, SNS envelopes) is AWS's contract; envelopes.py
classifies those. This module depends on nothing of the service's, so every package may import it.
"""

import json
from dataclasses import asdict, dataclass
from typing import Any

SERVICE_SOURCE = "aws-s3-service"  # the `source` of every notification the service publishes
EVENT_UPLOADED = "object.uploaded"
EVENT_UPDATED = "object.updated"
FILE_EVENTS = (EVENT_UPLOADED, EVENT_UPDATED)
EVENT_DAILY_REPORT = "report.daily"  # the daily ingestion report was written to S3
USER_RECORDS = "user_records"  # the message_type of /users/sqs/send's messages
RECORD_TYPES = ("personal", "financial", "health")  # a user_records message's data_type
DEAD_LETTER_REASON = (
    "dead_letter_reason"  # why the consumer dead-lettered a message (its shape, never content)
)
SOURCE_MESSAGE_ID = "source_message_id"  # the id the message had on the source queue
# How many times the consumer has sent a file event again because its tenant's loads were all taken.
THROTTLED_TIMES = "throttled_times"
DEAD_LETTER_ATTRIBUTES = frozenset({DEAD_LETTER_REASON, SOURCE_MESSAGE_ID})

# SNS's and SQS's MessageAttributes: {name: {"DataType": "String", "StringValue": value}}. The two SDKs type
# the inner dict differently (SQS's has list values too), so its type is left open.
MessageAttributes = dict[str, Any]


def string_attributes(**values: str) -> MessageAttributes:
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


@dataclass(frozen=True, slots=True)
class ObjectNotification:
    """A write through /s3 happened: `event` is object.uploaded or object.updated."""

    event: str
    bucket: str
    key: str
    etag: str
    version_id: str | None
    size: int
    request_id: str | None
    time: str  # ISO 8601, UTC

    def body(self) -> str:
        return json.dumps({"source": SERVICE_SOURCE, **asdict(self)})

    def attributes(self) -> MessageAttributes:
        """For subscription filter policies."""
        return string_attributes(source=SERVICE_SOURCE, event=self.event, bucket=self.bucket)


@dataclass(frozen=True, slots=True)
class DailyReportNotification:
    """The report of `date` was written to `json_key` and `html_key` of `bucket`."""

    date: str  # YYYY-MM-DD
    bucket: str
    json_key: str
    html_key: str
    files: int
    files_by_status: dict[str, int]
    rows_inserted: int
    failures_by_error_code: dict[str, int]

    def body(self) -> str:
        return json.dumps({"source": SERVICE_SOURCE, "event": EVENT_DAILY_REPORT, **asdict(self)})

    def subject(self) -> str:
        return f"Ingestion report {self.date}"

    def attributes(self) -> MessageAttributes:
        return string_attributes(source=SERVICE_SOURCE, event=EVENT_DAILY_REPORT, bucket=self.bucket)


@dataclass(frozen=True, slots=True)
class UserRecordsMessage:
    """One user record from the database, to be written to users/{data_type}/{user_id}.json. `record` holds
    the record as the API returns it, `updated_at` included (when its data is as of)."""

    data_type: str  # one of RECORD_TYPES
    user_id: str
    record: dict[str, Any]

    def body(self, *, request_id: str | None, sent_at: str) -> str:
        return json.dumps(
            {"message_type": USER_RECORDS, **asdict(self), "request_id": request_id, "sent_at": sent_at}
        )

    def attributes(self) -> MessageAttributes:
        return string_attributes(message_type=USER_RECORDS, data_type=self.data_type)
