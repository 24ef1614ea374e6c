"""The legacy endpoint's OpenAPI entry: its parameters are read by the handler, and documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callgate.app import create_app
from callgate.settings import Settings


def _schema(tmp_path: Path) -> dict[str, Any]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", log_file=None)
    return create_app(settings).openapi()


def test_the_five_query_parameters_are_documented_as_optional_text(tmp_path: Path) -> None:
    operation = _schema(tmp_path)["paths"]["/api/makecallexternal"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert list(parameters) == ["code", "phone", "clientId", "userId", "externalPhone"]
    for name, parameter in parameters.items():
        assert parameter["in"] == "query" and parameter["required"] is False, name
        assert parameter["schema"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
        assert parameter["description"], name
    assert set(operation["responses"]) == {"200", "422"}


def test_every_reference_of_the_schema_resolves(tmp_path: Path) -> None:
    """The legacy 422 refers to a schema of FastAPI's validation error shape: it is listed."""
    schema = _schema(tmp_path)
    components = schema["components"]["schemas"]
    unprocessable = schema["paths"]["/api/makecallexternal"]["get"]["responses"]["422"]
    body = unprocessable["content"]["application/json"]["schema"]["$ref"]
    detail = components[body.removeprefix("#/components/schemas/")]["properties"]["detail"]
    item = components[detail["items"]["$ref"].removeprefix("#/components/schemas/")]
    assert set(item["properties"]) == {"loc", "msg", "type"}

    def references(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [ref for value in node.values() for ref in references(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in references(value)]
        return []

    found = references(schema)
    assert body in found
    for reference in found:
        assert reference.removeprefix("#/components/schemas/") in components, reference
