"""A small JSON value valid against a JSON Schema: the fake's default structured answer."""

from __future__ import annotations

import json
import re
from typing import Any


def minimal_instance(schema: Any, root: Any = None) -> Any:
    """A small JSON value valid against `schema` (no pattern/multipleOf/uniqueItems support)."""
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return None
    schema = {**_hints(schema.get("description")), **schema}
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            if part:
                target = target[part.replace("~1", "/").replace("~0", "~")]
        return minimal_instance(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for each in schema["allOf"]:
            sub = _resolve(each, root)
            merged.setdefault("properties", {}).update(sub.get("properties", {}))
            merged["required"] = [*merged.get("required", []), *sub.get("required", [])]
            for k, v in sub.items():
                merged.setdefault(k, v)
        return minimal_instance(merged, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal_instance(props.get(k, {}), root) for k in schema.get("required", [])}
    if kind == "array":
        prefix = [minimal_instance(s, root) for s in schema.get("prefixItems", [])]
        extra = max(0, int(schema.get("minItems", 0)) - len(prefix))
        return prefix + [minimal_instance(schema.get("items", {}), root) for _ in range(extra)]
    if kind == "string":
        formats = {
            "date-time": "1970-01-01T00:00:00Z",
            "date": "1970-01-01",
            "time": "00:00:00Z",
            "email": "a@example.com",
            "uri": "https://example.com",
            "uuid": "00000000-0000-0000-0000-000000000000",
        }
        if schema.get("format") in formats:
            return formats[schema["format"]]
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema["exclusiveMinimum"] + 1 if "exclusiveMinimum" in schema else None)
        high = schema.get("maximum", schema["exclusiveMaximum"] - 1 if "exclusiveMaximum" in schema else None)
        value = low if low is not None else 0 if high is None or high >= 0 else high
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None


def _hints(description: Any) -> dict[str, Any]:
    """Constraints the SDK's transform_schema folds into a description ("... {minimum: 1}").

    A well-behaved model follows them, so the default answer does too.
    """
    found = re.search(r"\{([^{}]*)\}$", description) if isinstance(description, str) else None
    hints: dict[str, Any] = {}
    for pair in found.group(1).split(", ") if found else []:
        name, _, value = pair.partition(": ")
        try:
            hints[name] = json.loads(value)
        except ValueError:
            continue
    return hints


def _resolve(schema: Any, root: Any) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            if part:
                target = target[part]
        schema = target
    return schema if isinstance(schema, dict) else {}
