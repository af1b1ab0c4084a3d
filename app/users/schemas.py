"""Request and response models for personal, financial and health records (shared with ingestion)."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PastDate,
    StringConstraints,
    model_validator,
)

USER_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain U+0000, which PostgreSQL text cannot store")
    return text


# Free text goes to PostgreSQL text columns, which refuse U+0000: a 422 here, not a driver error.
Storable = AfterValidator(_storable)
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=USER_ID_PATTERN)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ().-]{5,38}$")]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), Storable]
AccountNumber = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{2,32}[A-Za-z0-9]$"),
]
CreditScore = Annotated[int, Field(ge=300, le=850)]
# NUMERIC(15,2): 13 digits before the point, 2 after; serialized as a string so it stays exact.
Money = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=2, allow_inf_nan=False)]
HealthItem = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable]
HealthList = Annotated[list[HealthItem], Field(max_length=100)]


class RecordType(StrEnum):
    PERSONAL = "personal"
    FINANCIAL = "financial"
    HEALTH = "health"


# Record types whose every read and change is recorded in audit_log.
AUDITED = frozenset({RecordType.FINANCIAL, RecordType.HEALTH})


class BloodType(StrEnum):
    A_POS = "A+"
    A_NEG = "A-"
    B_POS = "B+"
    B_NEG = "B-"
    AB_POS = "AB+"
    AB_NEG = "AB-"
    O_POS = "O+"
    O_NEG = "O-"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordUpdate(_Input):
    """A partial update: only the fields sent change; fields that the table requires refuse null."""

    _not_null: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _check_fields(cls, data: object) -> object:
        if isinstance(data, dict):
            if not data:
                raise ValueError("send at least one field to update")
            nulls = sorted(name for name in cls._not_null if name in data and data[name] is None)
            if nulls:
                raise ValueError(f"{', '.join(nulls)} cannot be null")
        return data

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class _Read(BaseModel):
    user_id: str
    created_at: datetime
    updated_at: datetime


class PersonalFields(BaseModel):
    name: Name
    email: EmailStr
    phone: Phone | None = None
    address: Address | None = None
    date_of_birth: PastDate | None = None


class PersonalCreate(_Input, PersonalFields):
    user_id: UserId


class PersonalUpdate(RecordUpdate):
    _not_null = frozenset({"name", "email"})
    name: Name | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    address: Address | None = None
    date_of_birth: PastDate | None = None


class PersonalRead(PersonalFields, _Read):
    # Stored addresses were validated on the way in (and by a CHECK): parsing each again on every read
    # was the most expensive step of GET /users/{id}/personal.
    email: Annotated[str, Field(json_schema_extra={"format": "email"})]


class FinancialFields(BaseModel):
    account_number: AccountNumber
    credit_score: CreditScore | None = None
    annual_income: Money | None = None
    total_debt: Money | None = None


class FinancialCreate(_Input, FinancialFields):
    user_id: UserId


class FinancialUpdate(RecordUpdate):
    _not_null = frozenset({"account_number"})
    account_number: AccountNumber | None = None
    credit_score: CreditScore | None = None
    annual_income: Money | None = None
    total_debt: Money | None = None


class FinancialRead(FinancialFields, _Read):
    pass


class HealthFields(BaseModel):
    blood_type: BloodType | None = None
    conditions: HealthList = Field(default_factory=list)
    medications: HealthList = Field(default_factory=list)
    allergies: HealthList = Field(default_factory=list)


class HealthCreate(_Input, HealthFields):
    user_id: UserId


class HealthUpdate(RecordUpdate):
    _not_null = frozenset({"conditions", "medications", "allergies"})
    blood_type: BloodType | None = None
    conditions: HealthList | None = None
    medications: HealthList | None = None
    allergies: HealthList | None = None


class HealthRead(HealthFields, _Read):
    pass


class _FileRecord(BaseModel):
    """A record of a users/{type}/ file: what a create takes, and optionally when its data is as of (the
    `updated_at` of the database row a /users/sqs/send snapshot was taken from)."""

    updated_at: AwareDatetime | None = None


class PersonalFileRecord(PersonalCreate, _FileRecord):
    pass


class FinancialFileRecord(FinancialCreate, _FileRecord):
    pass


class HealthFileRecord(HealthCreate, _FileRecord):
    pass


FILE_RECORD_MODELS: dict[RecordType, type[PersonalCreate | FinancialCreate | HealthCreate]] = {
    RecordType.PERSONAL: PersonalFileRecord,
    RecordType.FINANCIAL: FinancialFileRecord,
    RecordType.HEALTH: HealthFileRecord,
}


class UserRecords(BaseModel):
    user_id: str
    personal: PersonalRead | None
    financial: FinancialRead | None
    health: HealthRead | None


class SendDataType(StrEnum):
    PERSONAL = "personal"
    FINANCIAL = "financial"
    HEALTH = "health"
    ALL = "all"

    def record_types(self) -> list[RecordType]:
        return list(RecordType) if self is SendDataType.ALL else [RecordType(self.value)]


class SendRequest(_Input):
    user_id: UserId
    data_type: SendDataType


class SendResponse(BaseModel):
    user_id: str
    message_ids: dict[RecordType, str]


class UserFiles(BaseModel):
    personal: Any
    financial: Any
    health: Any
