"""A client account's bucket mapped to a role, end to end: its files arrive through the consumer and
through the reconcile sweep, and are read with the role's STS credentials (moto records the AssumeRole).

On a moto server of this module's own: its record of AssumeRole calls is unreadable on the shared one.
"""

import json
import secrets
from collections.abc import Iterator

import asyncpg
import pytest

from app.core.config import Settings
from devtools.bootstrap import bootstrap_aws
from devtools.servers import start_moto
from tests.aws import AWS_REGION, assumed, boto_client
from tests.helpers import resources, started_app
from tests.ingestion.helpers import s3_event, wait_for_file

ROLE_ARN = f"arn:aws:iam::111122223333:role/reader-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def own_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_moto(log_path=tmp_path_factory.mktemp("sources-moto") / "moto.log") as server:
        yield server.endpoint_url


@pytest.fixture(scope="module")
def own_settings(own_moto: str, service_env: dict[str, str]) -> Settings:
    resources = bootstrap_aws(
        own_moto, AWS_REGION, bucket="sources-service", topic="sources", queue="sources", dlq="sources-dlq"
    )
    env = {**service_env, **resources, "AWS_ENDPOINT_URL": own_moto}
    return Settings(
        **{name.lower(): value for name, value in env.items() if name != "SQS_DLQ_URL"},  # type: ignore[arg-type]
        sqs_wait_time_seconds=1,
        s3_bucket_roles={"client-drop": ROLE_ARN},
    )


async def test_role_mapped_bucket_is_read_with_assumed_role_credentials(
    own_moto: str, own_settings: Settings, db: asyncpg.Connection
) -> None:
    owner_s3 = boto_client("s3", own_moto)  # the client account, setting up its bucket
    owner_s3.create_bucket(Bucket="client-drop")
    put = owner_s3.put_object(Bucket="client-drop", Key="in/event.jsonl", Body=b'{"n": 1}\n{"n": 2}\n')
    async with started_app(own_settings, sqs_consumer_enabled=True) as (app, _):
        assert await assumed(own_moto, ROLE_ARN) == []

        # The client's S3 event notification reaches the service's queue; the consumer ingests the file.
        event = s3_event("client-drop", "in/event.jsonl", etag=put["ETag"], version_id=None, size=18)
        boto_client("sqs", own_moto).send_message(
            QueueUrl=str(own_settings.sqs_queue_url), MessageBody=json.dumps(event)
        )
        row = await wait_for_file(db, "client-drop", "in/event.jsonl")
        assert (row["status"], row["trigger"], row["rows_inserted"]) == ("completed", "sqs", 2)
        assert len(await assumed(own_moto, ROLE_ARN)) == 1

        # A file whose event was lost: the sweep reads it with the same, cached, credentials.
        owner_s3.put_object(Bucket="client-drop", Key="in/lost.jsonl", Body=b'{"n": 3}\n')
        result = await resources(app).reconciler.sweep([("client-drop", "in/")], min_age_seconds=0)
        assert dict(result.outcomes) == {"completed": 1}
        row = await wait_for_file(db, "client-drop", "in/lost.jsonl")
        assert (row["status"], row["trigger"], row["rows_inserted"]) == ("completed", "reconcile", 1)
        assert len(await assumed(own_moto, ROLE_ARN)) == 1
