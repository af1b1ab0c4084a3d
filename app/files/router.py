"""HTTP routes over S3: GET and PUT (merge patch) a JSON object, POST a file upload."""

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from app.audit.repository import AuditAction, AuditedObject
from app.core.aws import AwsClients
from app.core.config import Settings
from app.core.db import REQUEST_WAIT_SECONDS, Database
from app.core.deps import AppSettings, Aws, Db
from app.core.errors import problem_responses
from app.core.http import BodyTooLarge, JsonBody, JsonBytes, require_json
from app.core.json_values import FiniteJson
from app.core.security import Principal, requires
from app.files import service
from app.files.deps import JsonBudget, KeyPolicy, Keys
from app.files.keys import content_type_for, validate_key
from app.files.multipart import BadForm, boundary_of, read_form
from app.files.storage import StreamingUpload

router = APIRouter(prefix="/s3", tags=["s3"], responses=problem_responses(401, 403))

Reader = Annotated[Principal, requires("s3:read")]
Writer = Annotated[Principal, requires("s3:write")]
NOTIFICATION_HEADER = "X-Notification-Published"


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="Where to store the file; .json, .jsonl, .ndjson or .csv, optionally .gz")
    content: FiniteJson = Field(
        description="JSON for a .json key (or its text); a list of objects or the text for .jsonl/.ndjson; "
        "the text for .csv. Gzipped by the service for .gz keys."
    )


class UploadResponse(BaseModel):
    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None
    content_type: str
    notification_published: bool = Field(
        description="False if the SNS notification failed after the write (the file is stored)"
    )


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": UploadRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "key": {"type": "string", "description": "defaults to the file's name"},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    }
}


@router.get(
    "/{key:path}",
    summary="Read the JSON object at key",
    description="Keys under `users/` also need `users:read`; reads of financial and health files are "
    "audited.",
    response_class=JsonBytes,
    responses={**problem_responses(404, 422, 502, 503), 304: {"description": "Not modified"}},
)
async def get_object(
    principal: Reader,
    key: str,
    aws: Aws,
    settings: AppSettings,
    budget: JsonBudget,
    db: Db,
    keys: Keys,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    key = validate_key(key)
    keys.require_scope(principal, key, write=False)
    stored = await service.get_json(aws, settings, budget, key)
    await _audit(db, settings, keys, principal, AuditAction.READ, key, stored.version_id or stored.etag)
    headers = {"ETag": stored.etag}
    if if_none_match is not None and service.etag_matches(if_none_match, stored.etag):
        return Response(status_code=HTTPStatus.NOT_MODIFIED, headers=headers)
    return JsonBytes(stored.raw, headers=headers)


@router.put(
    "/{key:path}",
    summary="Merge-update the JSON object at key (RFC 7396 JSON Merge Patch)",
    description="The patch's objects merge into the stored object, `null` removes a member, anything "
    "else replaces. Safe under concurrent writers. Send `If-Match: <ETag>` to update only the version "
    "you read (412 otherwise). Keys under `users/` also need `users:write`.",
    response_class=JsonBytes,
    responses=problem_responses(400, 404, 409, 412, 413, 415, 422, 502, 503),
)
async def merge_object(
    principal: Writer,
    _json: JsonBody,
    key: str,
    patch: Annotated[FiniteJson, Body(media_type="application/merge-patch+json")],
    aws: Aws,
    settings: AppSettings,
    budget: JsonBudget,
    db: Db,
    keys: Keys,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    key = validate_key(key)
    keys.require_scope(principal, key, write=True)
    merged, result = await service.merge(aws, settings, budget, key, patch, if_match)
    written = result.written
    await _audit(db, settings, keys, principal, AuditAction.UPDATE, key, written.version_id or written.etag)
    return JsonBytes(
        merged, headers={"ETag": written.etag, NOTIFICATION_HEADER: str(result.notified).lower()}
    )


@router.post(
    "/upload",
    status_code=201,
    response_model=UploadResponse,
    summary="Upload a .json/.jsonl/.ndjson/.csv file (optionally .gz)",
    description="Either a JSON body `{key, content}` or multipart/form-data with a `file` part and an "
    "optional `key` field placed before it. Multipart files are streamed to S3; 409 if the key exists "
    "unless `overwrite=true`. Keys under `users/` also need `users:write`.",
    openapi_extra=_UPLOAD_BODY,
    responses=problem_responses(400, 409, 413, 415, 422, 502, 503),
)
async def upload(
    principal: Writer,
    request: Request,
    aws: Aws,
    settings: AppSettings,
    db: Db,
    keys: Keys,
    overwrite: Annotated[bool, Query(description="replace an existing object")] = False,
) -> UploadResponse:
    """The body is read here, as it streams (multipart files go to S3 part by part), not by FastAPI."""
    content_type = request.headers.get("content-type", "")
    boundary = boundary_of(content_type)
    if boundary is not None:
        key, result = await _upload_multipart(
            request, aws, settings, keys, principal, boundary, overwrite=overwrite
        )
    else:
        await require_json(request)
        body = await _read_limited(request, settings.max_request_body_bytes)
        try:
            parsed = UploadRequest.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
            ) from None
        key = validate_key(parsed.key, "body")
        keys.require_scope(principal, key, write=True)
        result = await service.upload_content(aws, settings, key, parsed.content, overwrite=overwrite)
    written = result.written
    action = AuditAction.UPDATE if overwrite else AuditAction.CREATE
    await _audit(db, settings, keys, principal, action, key, written.version_id or written.etag)
    return UploadResponse(
        bucket=settings.s3_bucket_name,
        key=key,
        etag=written.etag,
        size=written.size,
        version_id=written.version_id,
        content_type=content_type_for(key),
        notification_published=result.notified,
    )


async def _audit(
    db: Database,
    settings: Settings,
    keys: KeyPolicy,
    principal: Principal,
    action: AuditAction,
    key: str,
    version: str,
) -> None:
    """The audit row of a financial or health file read or written through /s3 (after the S3 call: a read
    is answered only once its row is committed, and no connection waits on S3)."""
    if keys.audited(key):
        async with db.transaction(REQUEST_WAIT_SECONDS) as conn:
            obj = AuditedObject(settings.s3_bucket_name, key, version)
            await keys.audit(conn, principal, action, obj)


async def _read_limited(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)


async def _upload_multipart(
    request: Request,
    aws: AwsClients,
    settings: Settings,
    keys: KeyPolicy,
    principal: Principal,
    boundary: bytes,
    *,
    overwrite: bool,
) -> tuple[str, service.WriteResult]:
    target: dict[str, Any] = {}

    async def on_file(filename: str | None, fields: dict[str, str]) -> Any:
        key = validate_key(fields.get("key") or filename or "", "body")
        keys.require_scope(principal, key, write=True)
        stream = await service.start_stream(aws, settings, key, overwrite=overwrite)
        target.update(key=key, stream=stream)
        return stream.write

    try:
        _, saw_file = await read_form(boundary, request.stream(), on_file)
        if not saw_file:
            raise BadForm("The form has no `file` part.")
        upload: StreamingUpload = target["stream"]
        return target["key"], await service.finish_stream(aws, settings, target["key"], upload)
    except (Exception, ClientDisconnect):
        if "stream" in target:
            await target["stream"].abort()
        raise
