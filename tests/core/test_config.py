"""Settings: .env.example documents every setting, and the defaults it shows are the real ones."""

import re

import pytest

from app.core.config import Settings
from tests.helpers import ROOT

REQUIRED = {
    "database_url": "postgresql://app@db.internal/app",
    "s3_bucket_name": "bucket",
    "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:topic",
    "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/queue",
    "jwt_secret": "x" * 40,
}


def documented() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, flags=re.MULTILINE))


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    assert set(documented()) == {name.upper() for name in Settings.model_fields}


def test_env_example_defaults_are_the_real_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT / "tests")  # no .env here
    shown = {name.lower(): value for name, value in documented().items() if value}
    from_example = Settings(**{**shown, **REQUIRED})  # type: ignore[arg-type]
    defaults = Settings(**REQUIRED)  # type: ignore[arg-type]
    for name in shown.keys() - REQUIRED.keys():
        assert getattr(from_example, name) == getattr(defaults, name), name
