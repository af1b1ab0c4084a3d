"""The OpenAPI document as generated clients need it: FastAPI's own, with every error response's Problem
schema under `application/problem+json` (what the API sends) and each operation's required scope spelled
out for people (its description) and for tools that ignore security requirements (`x-required-scopes`).

Installed as FastAPI documents it ("Extending OpenAPI"): `app.openapi` replaced by a function that builds
the document once and caches it on `app.openapi_schema`.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.core.errors import PROBLEM_JSON

JSON = "application/json"
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
SCOPES_EXTENSION = "x-required-scopes"


def _problems_as_problem_json(operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        if status[:1] not in ("4", "5"):
            continue
        content = response.setdefault("content", {})
        content.pop(JSON, None)
        content[PROBLEM_JSON] = {"schema": PROBLEM_SCHEMA}


def _with_scopes(operation: dict[str, Any]) -> None:
    # FastAPI puts a Security dependency's scopes in the operation's requirement (OpenAPI 3.1 allows
    # them for any scheme); generated clients and readers of the description see them too.
    scopes = sorted(
        {
            scope
            for requirement in operation.get("security", [])
            for names in requirement.values()
            for scope in names
        }
    )
    if not scopes:
        return
    operation[SCOPES_EXTENSION] = scopes
    note = "Requires the " + ", ".join(f"`{scope}`" for scope in scopes) + " scope."
    description = operation.get("description")
    operation["description"] = f"{description}\n\n{note}" if description else note


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            for path_item in document.get("paths", {}).values():
                for operation in path_item.values():
                    _problems_as_problem_json(operation)
                    _with_scopes(operation)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # the documented way to extend the document
