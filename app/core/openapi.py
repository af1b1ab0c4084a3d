"""The OpenAPI document as generated clients need it: FastAPI's own, with every error response's Problem
schema under `application/problem+json` (what the API sends) and each operation's required scope.

Installed as FastAPI documents it ("Extending OpenAPI"): `app.openapi` replaced by a function that builds
the document once and caches it on `app.openapi_schema`.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.core.errors import PROBLEM_JSON
from app.core.security import RequireScope

JSON = "application/json"
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
SCOPES_EXTENSION = "x-required-scopes"  # for generators; the description says it for people


def _required_scope(route: APIRoute) -> str | None:
    for dependency in route.dependant.dependencies:
        if isinstance(dependency.call, RequireScope):
            return dependency.call.scope
    return None


def _problems_as_problem_json(operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        if status[:1] not in ("4", "5"):
            continue
        content = response.setdefault("content", {})
        content.pop(JSON, None)
        content[PROBLEM_JSON] = {"schema": PROBLEM_SCHEMA}


def _with_scope(operation: dict[str, Any], scope: str) -> None:
    operation[SCOPES_EXTENSION] = [scope]
    note = f"Requires the `{scope}` scope."
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
            for route in app.routes:
                if not isinstance(route, APIRoute) or not route.include_in_schema:
                    continue
                scope = _required_scope(route)
                for method in route.methods or ():
                    operation = document["paths"][route.path_format][method.lower()]
                    _problems_as_problem_json(operation)
                    if scope is not None:
                        _with_scope(operation, scope)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
