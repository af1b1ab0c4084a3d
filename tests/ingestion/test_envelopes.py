"""classify(): every message kind the queue carries, bodies it must refuse without raising, and moto's own."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aioboto3
import pytest

from app.files.announce import notify_change
from app.ingestion import envelopes
from app.ingestion.envelopes import (
    CustomMessage,
    FileEvents,
    IgnoredEvent,
    Message,
    ObjectRef,
    TestEvent,
    Unrecognized,
    classify,
)
from app.messages import EVENT_UPDATED, EVENT_UPLOADED, UserRecordsMessage
from tests.aws import AWS_REGION, boto_client
from tests.helpers import eventually, unique_id

BUCKET = "amzn-s3-demo-bucket"
TOPIC_ARN = "arn:aws:sns:us-west-2:123456789012:MyTopic"
SNS_MESSAGE_ID = "da41e39f-ea4d-435a-b922-c6aae3915ebe"
ETAG = "d41d8cd98f00b204e9800998ecf8427e"
VERSION_ID = "096fKKXTRTtl3on89fVO.nfljtsv6qko"
# Stands for personal data in a body: no reason may repeat it.
CANARY = "jane.doe-CANARY-7f3a@example.com"
MOTO_DEADLINE_SECONDS = 10.0


def s3_record(
    key: str = "HappyFace.jpg",
    *,
    event_name: str = "ObjectCreated:Put",
    bucket: str = BUCKET,
    size: int | None = 1024,
) -> dict[str, Any]:
    """One record as S3 sends it (AWS's documented example); `key` is given URL-encoded, as S3 does."""
    obj: dict[str, Any] = {"key": key, "versionId": VERSION_ID, "sequencer": "0055AED6DCD90281E5"}
    if event_name.startswith("ObjectCreated:"):
        obj |= {"size": size, "eTag": ETAG}
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventTime": "2024-01-01T00:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "testConfigRule",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records) or [s3_record()]}


def sns_envelope(message: str | dict[str, Any]) -> dict[str, Any]:
    """What an SQS subscription without raw delivery receives."""
    return {
        "Type": "Notification",
        "MessageId": SNS_MESSAGE_ID,
        "TopicArn": TOPIC_ARN,
        "Subject": "Amazon S3 Notification",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2024-01-01T00:00:00.719Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N8==",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": f"https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC_ARN}:2bcfbf39",
    }


def eventbridge_event(
    detail_type: str = "Object Created", *, key: str = "example-key", source: str = "aws.s3"
) -> dict[str, Any]:
    """AWS's documented example of what S3 sends to EventBridge; EventBridge keys are not URL-encoded."""
    obj: dict[str, Any] = {
        "key": key,
        "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        "sequencer": "617f08",
    }
    if detail_type == "Object Created":
        obj |= {"size": 5, "etag": "b1946ac92492d2347c6235b4d2611184"}
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": source,
        "account": "111122223333",
        "time": "2021-11-12T00:00:00Z",
        "region": "ca-central-1",
        "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": BUCKET},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }


def service_notification(key: str = "reports/2024.json", *, event: str = EVENT_UPLOADED) -> dict[str, Any]:
    """What app.files.announce.notify_change publishes."""
    return {
        "source": "aws-s3-service",
        "event": event,
        "bucket": BUCKET,
        "key": key,
        "etag": f'"{ETAG}"',
        "version_id": VERSION_ID,
        "size": 42,
        "request_id": "5f0c3f4e6a1b4c0d9e8f7a6b5c4d3e2f",
        "time": "2024-01-01T00:00:00+00:00",
    }


def s3_test_event(bucket: str = BUCKET) -> dict[str, Any]:
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2014-10-13T15:57:02.089Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }


def user_records(**changes: Any) -> dict[str, Any]:
    """What app.users.service.send_to_queue sends for one record type."""
    message = {
        "message_type": "user_records",
        "data_type": "health",
        "user_id": "user-42",
        "record": {
            "user_id": "user-42",
            "blood_type": "O+",
            "conditions": ["asthma"],
            "medications": [],
            "allergies": ["pollen"],
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        },
        "request_id": "5f0c3f4e6a1b4c0d9e8f7a6b5c4d3e2f",
        "sent_at": "2024-01-01T00:00:00+00:00",
    }
    return message | changes


def body(document: Any) -> str:
    return json.dumps(document)


def ref(key: str = "HappyFace.jpg", size: int | None = 1024) -> ObjectRef:
    return ObjectRef(BUCKET, key, VERSION_ID, ETAG, size)


def unrecognized(message: Message) -> str:
    assert isinstance(message, Unrecognized), message
    assert len(message.reason) <= 120
    return message.reason


# --- S3 event notifications


def test_s3_event_sent_directly_is_a_file_event() -> None:
    assert classify(body(s3_event())) == FileEvents((ref(),), source="s3", via_sns=False)


def test_s3_event_in_an_sns_envelope_is_a_file_event_via_sns() -> None:
    assert classify(body(sns_envelope(s3_event()))) == FileEvents((ref(),), source="s3", via_sns=True)


def test_s3_event_by_raw_sns_delivery_is_the_bare_event() -> None:
    # Raw delivery hands over the published message itself: indistinguishable from S3 -> SQS, and fine so.
    raw = sns_envelope(s3_event())["Message"]
    assert classify(raw) == FileEvents((ref(),), source="s3", via_sns=False)


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("dir/my+file%C3%A9.json", "dir/my fileé.json"),
        ("a%2Bb.json", "a+b.json"),
        ("a+b%2Bc.json", "a b+c.json"),
        ("dir%2Fsub%2Fdata.csv", "dir/sub/data.csv"),
    ],
)
def test_s3_event_keys_are_url_decoded(encoded: str, decoded: str) -> None:
    message = classify(body(s3_event(s3_record(encoded))))
    assert isinstance(message, FileEvents)
    assert message.objects[0].key == decoded


@pytest.mark.parametrize("key", ["dir/my+file%C3%A9.json", "a%2Bb.json", "plain name.json"])
def test_eventbridge_and_service_keys_are_taken_as_they_are(key: str) -> None:
    for document in (eventbridge_event(key=key), service_notification(key)):
        message = classify(body(document))
        assert isinstance(message, FileEvents)
        assert message.objects[0].key == key


def test_every_created_record_of_a_batch_is_ingested() -> None:
    event = s3_event(
        s3_record("a.json", size=1), s3_record("b.json", event_name="ObjectCreated:Copy", size=0)
    )
    assert classify(body(event)) == FileEvents((ref("a.json", 1), ref("b.json", 0)), "s3", via_sns=False)


def test_event_with_only_removed_records_is_ignored() -> None:
    event = s3_event(
        s3_record(event_name="ObjectRemoved:Delete"),
        s3_record(event_name="ObjectRemoved:DeleteMarkerCreated"),
    )
    assert classify(body(event)) == IgnoredEvent("S3 event without ObjectCreated records")


def test_mixed_batch_ingests_only_the_created_objects() -> None:
    event = s3_event(
        s3_record("gone.json", event_name="ObjectRemoved:Delete"),
        s3_record("new.json"),
        s3_record("thawed.json", event_name="ObjectRestore:Completed"),
    )
    assert classify(body(event)) == FileEvents((ref("new.json"),), "s3", via_sns=False)


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    record = s3_record()
    change(record)
    return record


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_broken(lambda r: r.update(eventSource="aws:sqs")), id="not-aws-s3"),
        pytest.param(_broken(lambda r: r.pop("eventName")), id="no-event-name"),
        pytest.param(_broken(lambda r: r.pop("s3")), id="no-s3"),
        pytest.param(_broken(lambda r: r["s3"].update(bucket=[])), id="bucket-not-object"),
        pytest.param(_broken(lambda r: r["s3"]["bucket"].pop("name")), id="no-bucket-name"),
        pytest.param(_broken(lambda r: r["s3"]["bucket"].update(name="00:")), id="bucket-name-unusable"),
        pytest.param(_broken(lambda r: r["s3"]["bucket"].update(name="a b")), id="bucket-name-space"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(key="")), id="empty-key"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(key=7)), id="key-not-string"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(key="%FF%FE")), id="key-not-utf8"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(key="k" * 1025)), id="key-too-long"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(key="%C3%A9" * 513)), id="decoded-too-long"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(size=-1)), id="negative-size"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(size="1024")), id="size-string"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(size=True)), id="size-boolean"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(size=1.5)), id="size-fraction"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(eTag=5)), id="etag-number"),
        pytest.param(_broken(lambda r: r["s3"]["object"].update(versionId={})), id="version-object"),
        pytest.param("not a record", id="record-string"),
    ],
)
def test_one_malformed_record_makes_the_whole_message_unrecognized(bad: Any) -> None:
    # The good record beside it is not ingested: the DLQ keeps the batch whole for a replay.
    assert "S3 event record 1" in unrecognized(classify(body(s3_event(s3_record("good.json"), bad))))
    assert "S3 event record 1" in unrecognized(classify(body(sns_envelope(s3_event(s3_record(), bad)))))


@pytest.mark.parametrize("records", [[], {}, "x", None])
def test_s3_event_without_a_records_array_is_unrecognized(records: Any) -> None:
    unrecognized(classify(body({"Records": records})))


def test_etag_loses_its_quotes_and_blank_optionals_become_none() -> None:
    record = s3_record()
    record["s3"]["object"] |= {"eTag": f'"{ETAG}"', "versionId": ""}
    record["s3"]["object"].pop("size")
    message = classify(body(s3_event(record)))
    assert message == FileEvents((ObjectRef(BUCKET, "HappyFace.jpg", None, ETAG, None),), "s3", False)


# --- EventBridge and the service's own notifications


def test_eventbridge_object_created_is_a_file_event() -> None:
    expected = ObjectRef(
        BUCKET, "example-key", "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "b1946ac92492d2347c6235b4d2611184", 5
    )
    assert classify(body(eventbridge_event())) == FileEvents((expected,), "eventbridge", via_sns=False)


def test_eventbridge_object_created_through_sns_is_a_file_event_via_sns() -> None:
    message = classify(body(sns_envelope(eventbridge_event())))
    assert isinstance(message, FileEvents)
    assert (message.source, message.via_sns) == ("eventbridge", True)


@pytest.mark.parametrize("detail_type", ["Object Deleted", "Object Restore Completed", "Object Tags Added"])
def test_eventbridge_s3_events_other_than_created_are_ignored(detail_type: str) -> None:
    assert isinstance(classify(body(eventbridge_event(detail_type))), IgnoredEvent)


def test_eventbridge_event_from_another_source_is_unrecognized() -> None:
    unrecognized(classify(body(eventbridge_event(source="aws.ec2"))))


def test_eventbridge_object_created_without_an_object_is_unrecognized() -> None:
    event = eventbridge_event()
    del event["detail"]["object"]
    unrecognized(classify(body(event)))


@pytest.mark.parametrize("event", [EVENT_UPLOADED, EVENT_UPDATED])
def test_service_notification_through_sns_is_a_file_event(event: str) -> None:
    expected = ObjectRef(BUCKET, "reports/2024.json", VERSION_ID, ETAG, 42)
    message = classify(body(sns_envelope(service_notification(event=event))))
    assert message == FileEvents((expected,), "service", via_sns=True)
    assert classify(body(service_notification(event=event))) == FileEvents((expected,), "service", False)


def test_service_notification_of_another_event_is_ignored() -> None:
    assert isinstance(classify(body(service_notification(event="object.deleted"))), IgnoredEvent)


def test_service_notification_without_a_key_is_unrecognized() -> None:
    notification = service_notification()
    del notification["key"]
    unrecognized(classify(body(sns_envelope(notification))))


# --- S3 test events, SNS housekeeping, user records, custom messages


def test_s3_test_event_direct_and_through_sns() -> None:
    assert classify(body(s3_test_event())) == TestEvent(BUCKET)
    assert classify(body(sns_envelope(s3_test_event()))) == TestEvent(BUCKET)


def test_s3_message_other_than_a_test_event_is_unrecognized() -> None:
    unrecognized(classify(body(s3_test_event() | {"Event": "s3:Something"})))


def test_sns_subscription_confirmation_is_ignored() -> None:
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a7",
        "TopicArn": TOPIC_ARN,
        "Message": "You have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.",
        "SubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn",
        "Timestamp": "2012-04-26T20:45:04.751Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
    }
    assert classify(body(confirmation)) == IgnoredEvent("SNS SubscriptionConfirmation")


def test_user_records_message() -> None:
    message = classify(body(user_records()))
    assert message == UserRecordsMessage("health", "user-42", user_records()["record"])


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"data_type": "all"}, id="data-type-all"),
        pytest.param({"data_type": "Health"}, id="data-type-case"),
        pytest.param({"data_type": ["health"]}, id="data-type-list"),
        pytest.param({"user_id": "../../etc/passwd"}, id="user-id-path"),
        pytest.param({"user_id": "user-42\n"}, id="user-id-newline"),
        pytest.param({"user_id": "u" * 129}, id="user-id-too-long"),
        pytest.param({"user_id": ""}, id="user-id-empty"),
        pytest.param({"user_id": 42}, id="user-id-number"),
        pytest.param({"record": ["not", "an", "object"]}, id="record-array"),
        pytest.param({"record": "{}"}, id="record-string"),
        pytest.param({"record": None}, id="record-null"),
        pytest.param({"record": {"a": [[[[[[[[[1]]]]]]]]]}}, id="record-too-deep"),
        pytest.param({"message_type": "user_deleted"}, id="other-message-type"),
    ],
)
def test_invalid_user_records_message_is_unrecognized(changes: dict[str, Any]) -> None:
    unrecognized(classify(body(user_records(**changes))))


def test_user_records_message_without_a_record_is_unrecognized() -> None:
    message = user_records()
    del message["record"]
    unrecognized(classify(body(message)))


@pytest.mark.parametrize(
    "published",
    [
        pytest.param("Hello, subscribers!", id="text"),
        pytest.param(json.dumps({"order": "o-1", "lines": [1, 2]}), id="json-object"),
        pytest.param(json.dumps([1, 2, 3]), id="json-array"),
        pytest.param("12", id="json-number"),
        pytest.param("[" * 2000, id="deeply-nested"),
    ],
)
def test_custom_sns_message_is_acknowledged_by_id_and_topic(published: str) -> None:
    assert classify(body(sns_envelope(published))) == CustomMessage(SNS_MESSAGE_ID, TOPIC_ARN)


# --- bodies that must be refused, whatever they hold

NESTED = "[" * 100_000 + "]" * 100_000
HUGE = body(s3_event(s3_record()) | {"padding": CANARY * (5 * 1024 * 1024 // len(CANARY))})


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"hello {CANARY}", id="not-json"),
        pytest.param("", id="empty"),
        pytest.param("   \n", id="blank"),
        pytest.param(f'{{"user": "{CANARY}"', id="truncated-json"),
        pytest.param(body([CANARY]), id="json-array"),
        pytest.param("42", id="json-number"),
        pytest.param(body(CANARY), id="json-string"),
        pytest.param("null", id="json-null"),
        pytest.param("true", id="json-boolean"),
        pytest.param(body({"email": CANARY, "source": CANARY}), id="unknown-object"),
        pytest.param(body({"Type": [CANARY], "Records": {}}), id="unhashable-sns-type"),
        pytest.param(body(sns_envelope(sns_envelope(CANARY))), id="sns-in-sns"),
        pytest.param(body(sns_envelope(s3_event()) | {"Message": {"key": CANARY}}), id="sns-message-object"),
        pytest.param(NESTED, id="nested-100000-arrays"),
        pytest.param('{"Records": ' + NESTED + "}", id="nested-in-records"),
        pytest.param(HUGE, id="5-MB-body"),
        pytest.param(f'"{CANARY}\ud800"', id="lone-surrogate"),
        pytest.param(body(s3_event(s3_record(CANARY, bucket=""))), id="s3-no-bucket"),
        pytest.param(body(s3_event(s3_record(CANARY * 40))), id="s3-key-too-long"),
        pytest.param(body(eventbridge_event(source=CANARY, key=CANARY)), id="eventbridge-other-source"),
        pytest.param(body(eventbridge_event(detail_type=[CANARY])), id="eventbridge-detail-type-list"),  # type: ignore[arg-type]
        pytest.param(body(user_records(user_id=CANARY)), id="user-records-bad-user-id"),
        pytest.param(body(user_records(data_type=CANARY)), id="user-records-bad-data-type"),
        pytest.param(body(user_records(message_type=CANARY)), id="other-message-type"),
        pytest.param(body(s3_test_event() | {"Event": CANARY}), id="s3-other-event"),
    ],
)
def test_bodies_not_understood_are_unrecognized_without_quoting_them(text: str) -> None:
    reason = unrecognized(classify(text))
    assert CANARY not in reason
    assert "jane" not in reason


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(s3_event(s3_record(CANARY, event_name="ObjectRemoved:Delete")), id="s3-removed"),
        pytest.param(eventbridge_event("Object Deleted", key=CANARY), id="eventbridge-deleted"),
        pytest.param(service_notification(CANARY, event="object.deleted"), id="service-other-event"),
    ],
)
def test_ignored_reasons_do_not_quote_the_body(document: dict[str, Any]) -> None:
    message = classify(body(document))
    assert isinstance(message, IgnoredEvent)
    assert CANARY not in message.reason


def test_a_bug_in_classification_is_unrecognized_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(document: dict[str, Any], *, via_sns: bool) -> Message:
        raise KeyError("bug")

    monkeypatch.setattr(envelopes, "_from_document", broken)
    assert classify(body(s3_event())) == Unrecognized("internal error while classifying")


# --- real bodies from moto: S3, SNS and EventBridge deliveries into SQS


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


async def _classified_until(
    sqs: Any, queue_url: str, wanted: Callable[[list[Message]], bool]
) -> list[Message]:
    """The queue's messages classified, as soon as they satisfy `wanted` (the queue is the test's own)."""
    seen: list[Message] = []

    def receive() -> list[Message] | None:
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        seen.extend(classify(message["Body"]) for message in response.get("Messages", []))
        return seen if wanted(seen) else None

    try:
        # In a thread, and no pause between receives: each one long-polls for a second.
        return await eventually(
            lambda: asyncio.to_thread(receive),
            timeout=MOTO_DEADLINE_SECONDS,
            interval=0,
            message="what the queue should deliver",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; delivered: {seen}") from None


def _has_file_and_test_event(seen: list[Message]) -> bool:
    kinds = {type(message) for message in seen}
    return FileEvents in kinds and TestEvent in kinds


async def test_moto_s3_event_is_a_file_event_with_the_decoded_key(s3: Any, sqs: Any) -> None:
    name = unique_id("envelopes-s3")
    s3.create_bucket(Bucket=name)
    queue_url, queue_arn = _queue(sqs, name)
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    key = "in box/naïve+plus (1)%.json"
    put = s3.put_object(Bucket=name, Key=key, Body=b"[1]")

    seen = await _classified_until(sqs, queue_url, _has_file_and_test_event)
    assert TestEvent(name) in seen
    assert FileEvents((ObjectRef(name, key, None, put["ETag"].strip('"'), 3),), "s3", via_sns=False) in seen


@pytest.mark.parametrize("raw", [False, True], ids=["enveloped", "raw"])
async def test_moto_s3_event_through_sns_is_a_file_event(moto_url: str, s3: Any, sqs: Any, raw: bool) -> None:
    name = unique_id("envelopes-sns")
    sns = boto_client("sns", moto_url)
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url, queue_arn = _queue(sqs, name)
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true" if raw else "false"},
    )
    s3.create_bucket(Bucket=name)
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    key = "dir/ünïcode name+.json"
    put = s3.put_object(Bucket=name, Key=key, Body=b"{}")

    seen = await _classified_until(sqs, queue_url, _has_file_and_test_event)
    assert TestEvent(name) in seen
    expected = ObjectRef(name, key, None, put["ETag"].strip('"'), 2)
    assert FileEvents((expected,), "s3", via_sns=not raw) in seen


async def test_moto_service_notification_through_sns_is_a_file_event(moto_url: str, sqs: Any) -> None:
    name = unique_id("envelopes-service")
    topic_arn = boto_client("sns", moto_url).create_topic(Name=name)["TopicArn"]
    queue_url, queue_arn = _queue(sqs, name)
    boto_client("sns", moto_url).subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    key = "exports/a+b%2Bc é.json"
    async with aioboto3.Session().client("sns", endpoint_url=moto_url, region_name=AWS_REGION) as sns:
        published = await notify_change(
            sns,
            topic_arn,
            event=EVENT_UPDATED,
            bucket=BUCKET,
            key=key,
            etag=f'"{ETAG}"',
            version_id="v1",
            size=7,
        )
    assert published

    seen = await _classified_until(sqs, queue_url, lambda seen: bool(seen))
    assert seen == [FileEvents((ObjectRef(BUCKET, key, "v1", ETAG, 7),), "service", via_sns=True)]


async def test_moto_eventbridge_object_created_is_a_file_event(moto_url: str, s3: Any, sqs: Any) -> None:
    name = unique_id("envelopes-eb")
    events = boto_client("events", moto_url)
    queue_url, queue_arn = _queue(sqs, name)
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [name]}},
    }
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    s3.create_bucket(Bucket=name)
    s3.put_bucket_notification_configuration(
        Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    key = "raw/a+b%2Bc é.json"
    s3.put_object(Bucket=name, Key=key, Body=b"[]")

    seen = await _classified_until(sqs, queue_url, lambda seen: bool(seen))
    assert len(seen) == 1
    message = seen[0]
    assert isinstance(message, FileEvents)
    assert (message.source, message.via_sns) == ("eventbridge", False)
    assert [(obj.bucket, obj.key, obj.size) for obj in message.objects] == [(name, key, 2)]


# --- bodies that must not reach the processing log (security review, issue 14)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("bad%00key.json", id="nul"),
        pytest.param("esc%1B%5B31mred.json", id="terminal-escape"),
        pytest.param("new%0Aline.json", id="newline"),
        pytest.param("%2Fabsolute.json", id="leading-slash"),
        pytest.param("a%2F..%2Fb.json", id="dot-dot-segment"),
    ],
)
def test_event_key_the_api_would_refuse_is_dead_lettered(key: str) -> None:
    # A NUL made PostgreSQL refuse the claim on every receive; control characters reached the CLI's output.
    reason = unrecognized(classify(body(s3_event(s3_record(key)))))
    assert "key" in reason


def test_service_notification_with_a_control_character_in_its_key_is_dead_lettered() -> None:
    notification = {
        "source": "aws-s3-service",
        "event": EVENT_UPLOADED,
        "bucket": BUCKET,
        "key": "a\u0007bell.json",
        "etag": ETAG,
        "size": 3,
    }
    unrecognized(classify(body(notification)))


@pytest.mark.parametrize("size", [2**63, 2**64 - 1, 2**64])
def test_event_size_beyond_bigint_is_dead_lettered_not_retried(size: int) -> None:
    # It made the claim fail in the database on every receive, until the redrive count ran out.
    assert "size" in unrecognized(classify(body(s3_event(s3_record(size=size)))))


def test_largest_bigint_size_is_still_a_size() -> None:
    assert classify(body(s3_event(s3_record(size=2**63 - 1)))) == FileEvents(
        (ref(size=2**63 - 1),), source="s3", via_sns=False
    )


def test_user_records_message_through_the_topic_is_dead_lettered() -> None:
    # Only /users/sqs/send's own messages, put straight on the queue, may rewrite user records.
    reason = unrecognized(classify(body(sns_envelope(user_records()))))
    assert "SNS" in reason
