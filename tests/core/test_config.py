"""Settings: .env.example documents every setting, and the defaults it shows are the real ones."""

import re
from datetime import time

import pytest

from app.core.config import Settings, SettingsError, load
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


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REPORT_DAILY_AT_UTC", "2:30", "REPORT_DAILY_AT_UTC: Value error, expected HH:MM (UTC), e.g. 02:30"),
        ("REPORT_DAILY_AT_UTC", "24:00", "REPORT_DAILY_AT_UTC: Value error, expected HH:MM (UTC)"),
        (
            "RECONCILE_PREFIXES",
            "in/,s3://Bad_Bucket/x",
            "RECONCILE_PREFIXES: Value error, 's3://Bad_Bucket/x'",
        ),
        ("RECONCILE_INTERVAL_SECONDS", "-1", "RECONCILE_INTERVAL_SECONDS: Input should be greater than"),
        (
            "INGEST_RECOVERY_INTERVAL_SECONDS",
            "-1",
            "INGEST_RECOVERY_INTERVAL_SECONDS: Input should be greater than",
        ),
        # A beat must land before the step it extends runs out (the default step is 30 s).
        ("SQS_HEARTBEAT_SECONDS", "20", "settings: Value error, SQS_HEARTBEAT_SECONDS must be at most half"),
    ],
)
def test_bad_job_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.chdir(ROOT / "tests")
    for key, setting in REQUIRED.items():
        monkeypatch.setenv(key.upper(), setting)
    monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as refused:
        load(Settings)

    assert str(refused.value).startswith(f"invalid configuration: {message}")
    assert "\n" not in str(refused.value)


def test_job_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT / "tests")
    settings = Settings(
        **REQUIRED,  # type: ignore[arg-type]
        report_daily_at_utc="02:30",
        reconcile_prefixes="in/, s3://client-drop/exports/",
    )

    assert settings.report_daily_at_utc == time(2, 30)
    assert settings.reconcile_sources == [("bucket", "in/"), ("client-drop", "exports/")]
    assert Settings(**REQUIRED).reconcile_sources == [("bucket", "")]  # type: ignore[arg-type]
    assert Settings(**REQUIRED, report_daily_at_utc="").report_daily_at_utc is None  # type: ignore[arg-type]
