"""The /s3 routes' own resources as dependencies: the byte budget of JSON parsed at once, and the rules of key
prefixes other packages own (users/ holds user records)."""

from typing import Annotated, Protocol, cast

from fastapi import Depends, Request

from app.audit.repository import AuditAction, AuditedObject
from app.core.db import Connection
from app.core.security import Principal
from app.files.budget import ByteBudget


class KeyPolicy(Protocol):
    """What the owner of a key prefix asks of the /s3 routes: more scopes, and audit rows (the composition
    root passes users' own, app/users/service.py's UserKeys, so files does not import users)."""

    def require_scope(self, principal: Principal, key: str, *, write: bool) -> None:
        """Raise Forbidden unless `principal` may read (or write) `key`."""
        ...

    def audited(self, key: str) -> bool:
        """Whether a read or write of `key` is recorded in the audit trail."""
        ...

    async def audit(
        self, conn: Connection, principal: Principal, action: AuditAction, obj: AuditedObject
    ) -> None: ...


class _FilesResources(Protocol):
    @property
    def json_budget(self) -> ByteBudget: ...

    @property
    def key_policy(self) -> KeyPolicy: ...


def _resources(request: Request) -> _FilesResources:
    return cast(_FilesResources, request.app.state.resources)


async def get_json_budget(request: Request) -> ByteBudget:
    return _resources(request).json_budget


async def get_key_policy(request: Request) -> KeyPolicy:
    return _resources(request).key_policy


JsonBudget = Annotated[ByteBudget, Depends(get_json_budget)]
Keys = Annotated[KeyPolicy, Depends(get_key_policy)]
