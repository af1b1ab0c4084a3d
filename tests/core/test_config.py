"""Settings: .env.example documents every setting, and defaults parse."""

import re

from pydantic import TypeAdapter

from app.core.config import Settings
from tests.helpers import ROOT


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_env_example_defaults_are_the_real_defaults() -> None:
    text = (ROOT / ".env.example").read_text()
    for name, value in re.findall(r"^([A-Z][A-Z0-9_]+)=(.+)$", text, flags=re.MULTILINE):
        field = Settings.model_fields[name.lower()]
        assert TypeAdapter(field.annotation).validate_strings(value) == field.default, name
