"""JSON Schema for an output spec: whether a schema is usable (``problem``, at load
time) and what is wrong with a value (``errors``, at validation time).

Never over the network: a ``$ref`` must resolve within the schema. Validators are
built once per schema, keyed by its canonical JSON (``canonical``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ollama_dist.checks.extract import short
from ollama_dist.errors import InputError

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

_MAX_ERRORS = 3  # schema errors named in a reason


@lru_cache(maxsize=64)
def problem(canonical: str) -> str | None:
    """check_schema's verdict on a schema, once per schema (keyed by canonical JSON)."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    schema = json.loads(canonical)
    dialect = schema.get("$schema")
    if dialect is not None and validator_for(schema, default=None) is None:
        return f"unknown $schema {dialect!r}; use a JSON Schema draft URI (default: 2020-12)"
    try:
        _validator_class(schema).check_schema(schema)
    except SchemaError as exc:
        return f"invalid JSON Schema at {exc.json_path}: {short(exc.message)}"
    return _check_refs(schema)


def expects_container(schema: dict[str, Any] | None) -> bool:
    """An object or array is wanted unless a schema allows a bare scalar."""
    if schema is None:
        return True
    declared = schema.get("type")
    if isinstance(declared, (str, list)):
        types = {declared} if isinstance(declared, str) else set(declared)
        return bool(types) and types <= {"object", "array"}
    return any(key in schema for key in ("properties", "required", "items", "prefixItems"))


def errors(schema: dict[str, Any], value: Any) -> str | None:
    """At most three schema errors, shallowest first then in document order, each as
    ``$.path: problem`` (an anyOf/oneOf error shows its best-matching branch)."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    try:
        found = sorted(validator(canonical(schema)).iter_errors(value), key=_error_order)
        shown = [best_match([error]) for error in found[:_MAX_ERRORS]]
    except Unresolvable as exc:  # check_schema finds these unless a nested $id hides them
        raise InputError(f"output schema: cannot resolve $ref: {exc}") from exc
    except RecursionError:
        return "the answer is nested too deeply to check against the schema"
    if not found:
        return None
    more = f" (and {len(found) - len(shown)} more)" if len(found) > len(shown) else ""
    return "; ".join(f"{e.json_path}: {short(e.message)}" for e in shown if e) + more


def _error_order(error: ValidationError) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    """Shallow errors first, then in document order (paths mix keys and indexes)."""
    path = tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in error.path)
    return len(path), path


def canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _validator_class(schema: dict[str, Any]) -> Any:
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    return validator_for(schema, default=Draft202012Validator)


@lru_cache(maxsize=64)
def validator(canonical: str) -> Any:
    """A validator per schema, keyed by its canonical JSON, built from a private copy.
    Formats are asserted where jsonschema has a checker for them."""
    schema = json.loads(canonical)
    cls = _validator_class(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _check_refs(schema: dict[str, Any]) -> str | None:
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    refs: list[str] = []
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node is not schema and isinstance(node.get("$id", node.get("id")), str):
                return None  # a nested base URI: refs below it resolve against that
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    specification = specification_with(schema.get("$schema", ""), default=DRAFT202012)
    resolver = Registry().resolver_with_root(specification.create_resource(schema))
    for ref in refs:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            return f"schema $ref {ref!r} cannot be resolved (only refs within the schema work)"
    return None
