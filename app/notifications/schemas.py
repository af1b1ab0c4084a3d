"""Request and response models for publishing to SNS."""

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.core.json_values import finite

SNS_MAX_MESSAGE_BYTES = 262_144  # API limit for one message, attributes included
SNS_MAX_ATTRIBUTES = 10  # API limit (SNS -> SQS delivery drops messages with more)
SNS_MAX_SUBJECT_CHARS = 100  # API limit
_ATTRIBUTE_NAME = re.compile(
    r"^(?!(aws|amazon)\.)[A-Za-z0-9_-](?:[A-Za-z0-9_.-]{0,254}[A-Za-z0-9_-])?$", re.I
)

AttributeValue = str | int | Annotated[float, Field(allow_inf_nan=False)] | list[str]
# SNS FIFO ids: 1-128 characters of alphanumerics and punctuation.
FifoId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[str | dict[str, Any] | list[Any], AfterValidator(finite)] = Field(
        description="A string, or JSON that is sent serialized", min_length=1
    )
    subject: (
        Annotated[
            str, StringConstraints(min_length=1, max_length=SNS_MAX_SUBJECT_CHARS, pattern=r"^[^\r\n]+$")
        ]
        | None
    ) = None
    attributes: dict[str, AttributeValue] = Field(default_factory=dict, max_length=SNS_MAX_ATTRIBUTES)
    message_group_id: FifoId | None = None
    deduplication_id: FifoId | None = None

    @field_validator("attributes")
    @classmethod
    def _attribute_names(cls, value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        bad = [name for name in value if not _ATTRIBUTE_NAME.match(name)]
        if bad:
            raise ValueError(
                "attribute names are 1-256 of A-Z a-z 0-9 _ - . (not at either end, no AWS./Amazon. prefix)"
            )
        return value


class PublishResponse(BaseModel):
    message_id: str
    sequence_number: str | None = None
