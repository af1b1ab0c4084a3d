"""Idempotently create the bucket, topic, queues, subscription and notification the service uses.

`python -m devtools.bootstrap` does it against AWS_ENDPOINT_URL (moto, LocalStack) and prints the settings.
"""

import argparse
import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

import boto3

DEFAULT_BUCKET = "aws-s3-service-dev"
DEFAULT_TOPIC = "aws-s3-service-events"
DEFAULT_QUEUE = "aws-s3-service-ingest"
DEFAULT_DLQ = "aws-s3-service-ingest-dlq"
DEFAULT_REGION = "us-east-1"
DLQ_RETENTION_S = 14 * 24 * 3600
NOTIFICATION_ID = "aws-s3-service-ingest"
OBJECT_CREATED = "s3:ObjectCreated:*"
# Access key id and secret for emulators, which accept any.
EMULATOR_CREDENTIAL = "test"


def names_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """bootstrap_aws() name arguments: from the service's own settings when set, else defaults."""
    return {
        "bucket": env.get("S3_BUCKET_NAME") or DEFAULT_BUCKET,
        "topic": (env.get("SNS_TOPIC_ARN") or DEFAULT_TOPIC).rsplit(":", 1)[-1],
        "queue": (env.get("SQS_QUEUE_URL") or DEFAULT_QUEUE).rstrip("/").rsplit("/", 1)[-1],
        "dlq": (env.get("SQS_DLQ_URL") or DEFAULT_DLQ).rstrip("/").rsplit("/", 1)[-1],
    }


def bootstrap_aws(
    endpoint_url: str | None,
    region: str,
    bucket: str,
    topic: str,
    queue: str,
    dlq: str,
    max_receive_count: int = 5,
    visibility_timeout: int = 30,
) -> dict[str, str]:
    """Create or update every resource; safe to run again. Returns settings as env variables."""
    session = _session(endpoint_url, region)
    s3 = session.client("s3", endpoint_url=endpoint_url)
    sns = session.client("sns", endpoint_url=endpoint_url)
    sqs = session.client("sqs", endpoint_url=endpoint_url)

    _create_bucket(s3, bucket, region)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]

    dlq_url, dlq_arn = _create_queue(sqs, dlq)
    sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)})
    queue_url, queue_arn = _create_queue(sqs, queue)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(redrive),
            "Policy": json.dumps(_queue_policy(queue_arn, topic_arn, bucket)),
        },
    )

    subscription_arn = sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, ReturnSubscriptionArn=True
    )["SubscriptionArn"]
    # Enveloped delivery: the consumer tells SNS messages from S3 events by the envelope.
    sns.set_subscription_attributes(
        SubscriptionArn=subscription_arn, AttributeName="RawMessageDelivery", AttributeValue="false"
    )
    _ensure_bucket_notification(s3, bucket, queue_arn)

    return {
        "S3_BUCKET_NAME": bucket,
        "SNS_TOPIC_ARN": topic_arn,
        "SQS_QUEUE_URL": queue_url,
        "SQS_DLQ_URL": dlq_url,
    }


LAKE_BUCKET = "aws-s3-service-lake"


def bootstrap_lake_bucket(endpoint_url: str | None, region: str, bucket: str = LAKE_BUCKET) -> str:
    """The lake's warehouse bucket (no event notifications: the lake's files are not ingested)."""
    _create_bucket(_session(endpoint_url, region).client("s3", endpoint_url=endpoint_url), bucket, region)
    return bucket


def _session(endpoint_url: str | None, region: str) -> boto3.Session:
    session = boto3.Session(region_name=region)
    if endpoint_url and session.get_credentials() is None:
        # Only for an emulator: real AWS never gets dummy credentials.
        session = boto3.Session(
            region_name=region,
            aws_access_key_id=EMULATOR_CREDENTIAL,
            aws_secret_access_key=EMULATOR_CREDENTIAL,
        )
    return session


def _create_bucket(s3: Any, bucket: str, region: str) -> None:
    # us-east-1 rejects an explicit LocationConstraint.
    kwargs: dict[str, Any] = {}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket, **kwargs)


def _create_queue(sqs: Any, name: str) -> tuple[str, str]:
    # Without attributes CreateQueue returns an existing queue's URL instead of failing on
    # differing attributes; they are set afterwards.
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def _queue_policy(queue_arn: str, topic_arn: str, bucket: str) -> dict[str, Any]:
    _, partition, _, _, account, _ = queue_arn.split(":")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowTopic",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            },
            {
                "Sid": "AllowBucket",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                # Bucket ARNs carry no account: pin it so a same-named bucket elsewhere can't send.
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": f"arn:{partition}:s3:::{bucket}"},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            },
        ],
    }


def _ensure_bucket_notification(s3: Any, bucket: str, queue_arn: str) -> None:
    config = s3.get_bucket_notification_configuration(Bucket=bucket)
    config.pop("ResponseMetadata", None)
    queues = config.get("QueueConfigurations", [])
    if any(
        q["QueueArn"] == queue_arn and OBJECT_CREATED in q["Events"] and not q.get("Filter") for q in queues
    ):
        # Every put makes S3 send an s3:TestEvent to the queue; don't add one per run.
        return
    # Other notifications on the bucket are kept.
    config["QueueConfigurations"] = [q for q in queues if q.get("Id") != NOTIFICATION_ID] + [
        {"Id": NOTIFICATION_ID, "QueueArn": queue_arn, "Events": [OBJECT_CREATED]}
    ]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def main(argv: list[str] | None = None) -> None:
    names = names_from_env(os.environ)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"))
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", DEFAULT_REGION))
    for key, default in names.items():
        parser.add_argument(f"--{key}", default=default)
    parser.add_argument("--max-receive-count", type=int, default=5)
    parser.add_argument("--visibility-timeout", type=int, default=30)
    args = parser.parse_args(argv)
    settings = bootstrap_aws(
        args.endpoint_url,
        args.region,
        args.bucket,
        args.topic,
        args.queue,
        args.dlq,
        max_receive_count=args.max_receive_count,
        visibility_timeout=args.visibility_timeout,
    )
    for key, value in settings.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
