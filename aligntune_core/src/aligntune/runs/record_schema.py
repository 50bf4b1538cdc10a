"""The JSON Schema of the run record, generated from its attrs classes, and a validator for the part of JSON
Schema it uses (no `jsonschema` dependency).

The schema ships in the package as `aligntune/runs/run_record.schema.json`; a test keeps the file equal to what the
classes generate. After changing a record class, write it again with::

    python -m aligntune.runs.record_schema
"""

from __future__ import annotations

import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any

import attrs

SCHEMA_FILE = Path(__file__).with_name("run_record.schema.json")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def json_key(field: attrs.Attribute) -> str:
    """The field's key in the JSON file (`format_version` is written as `format`)."""
    return str(field.metadata.get("key", field.name))


def is_extra(field: attrs.Attribute) -> bool:
    """A field that gathers the keys the class does not name (a report that grows without a format change)."""
    return bool(field.metadata.get("extra"))


def is_internal(field: attrs.Attribute) -> bool:
    """A field of the Python object only (where it was read from, what it lacked): never in the file."""
    return bool(field.metadata.get("internal"))


def is_optional_key(field: attrs.Attribute) -> bool:
    """A key left out of the file when its value is None (and allowed to be absent)."""
    return bool(field.metadata.get("omit_if_none"))


def _union_members(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def type_schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one Python type annotation: simple types, list, dict[str, X], unions, Any, attrs classes."""
    if hint is Any:
        return {}
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if attrs.has(hint):
        if hint.__name__ not in defs:
            defs[hint.__name__] = {}  # a placeholder first: a class may refer to itself
            defs[hint.__name__] = class_schema(hint, defs)
        return {"$ref": f"#/$defs/{hint.__name__}"}
    members = _union_members(hint)
    if members is not None:
        schemas = [type_schema(member, defs) for member in members]
        if all(set(schema) == {"type"} for schema in schemas):
            return {"type": [schema["type"] for schema in schemas]}
        return {"anyOf": schemas}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return {"type": "array", "items": type_schema(args[0], defs) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1], defs) if args else {}}
    raise TypeError(f"run record schema: no JSON Schema for the annotation {hint!r}")


def class_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    additional: Any = False
    for field in attrs.fields(cls):
        if is_internal(field):
            continue
        if is_extra(field):
            additional = type_schema(hints[field.name], defs).get("additionalProperties", True)
            continue
        schema = dict(field.metadata["schema"]) if "schema" in field.metadata else type_schema(hints[field.name], defs)
        if field.metadata.get("doc"):
            schema = {"description": field.metadata["doc"], **schema}
        properties[json_key(field)] = schema
        if not is_optional_key(field):
            required.append(json_key(field))
    doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return {"type": "object", "description": doc, "properties": properties, "required": required,
            "additionalProperties": additional}


def generate_schema() -> dict[str, Any]:
    """The record's schema, from the classes in `aligntune.runs.record`."""
    from aligntune.runs.record import FORMAT_VERSION, RunRecord

    defs: dict[str, Any] = {}
    top = class_schema(RunRecord, defs)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"https://aligntune.dev/schemas/run_record-{FORMAT_VERSION}.json",
        "title": f"aligntune run record (aligntune_run.json), format {FORMAT_VERSION}",
        **top,
        "$defs": dict(sorted(defs.items())),
    }


def render_schema() -> str:
    return json.dumps(generate_schema(), indent=2) + "\n"


def load_schema() -> dict[str, Any]:
    """The schema file shipped in the package."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


# -- validation ----------------------------------------------------------------------------------------------------


@attrs.frozen
class Problem:
    """One way a value breaks the schema: where (a dotted key path), and what."""

    path: str
    message: str
    missing_key: bool = False  # a required key is absent (as opposed to a value of the wrong type)


def _type_ok(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise ValueError(f"run record schema: unsupported type {name!r}")


def _describe(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)


def validate(value: Any, schema: dict[str, Any], *, root: dict[str, Any] | None = None,
             path: str = "") -> list[Problem]:
    """Every problem of `value` against `schema` (the subset of JSON Schema 2020-12 that `generate_schema` writes:
    type, const, properties, required, additionalProperties, items, anyOf, $ref into $defs)."""
    root = schema if root is None else root
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return validate(value, root["$defs"][name], root=root, path=path)
    where = path or "(the record)"
    if "anyOf" in schema:
        attempts = [validate(value, option, root=root, path=path) for option in schema["anyOf"]]
        if any(not problems for problems in attempts):
            return []
        # The option of the value's own type says best what is wrong inside it (a part with a key missing, say).
        inside = [problems for problems in attempts if all(problem.path != where for problem in problems)]
        return inside[0] if inside else [Problem(where, f"{_describe(value)} matches none of the allowed shapes")]
    if "const" in schema and value != schema["const"]:
        return [Problem(where, f"must be {json.dumps(schema['const'])}, got {_describe(value)}")]
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, name) for name in names):
            return [Problem(where, f"must be {' or '.join(names)}, got {_describe(value)}")]
    problems: list[Problem] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(Problem(_join(path, key), "is missing", missing_key=True))
        additional = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                problems += validate(item, properties[key], root=root, path=_join(path, key))
            elif additional is False:
                problems.append(Problem(_join(path, key), "is not a key of this part of the record"))
            elif isinstance(additional, dict):
                problems += validate(item, additional, root=root, path=_join(path, key))
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += validate(item, schema["items"], root=root, path=_join(path, index))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Write the schema file from the classes (`--check`: only say whether it is up to date)."""
    argv = sys.argv[1:] if argv is None else argv
    text = render_schema()
    if "--check" in argv:
        current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.is_file() else ""
        if current != text:
            print(f"{SCHEMA_FILE} is out of date: run python -m aligntune.runs.record_schema", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
