"""YAML mappings -> frozen dataclasses, with errors that name the file, the key and the nearest valid key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from edgetune.errors import BadInput


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BadInput(f"{path}: not valid YAML ({err}); fix the syntax") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: expected a mapping of keys at the top level, got {type(doc).__name__}")
    return doc


def nearest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"did you mean '{match[0]}'?" if match else f"valid keys: {', '.join(valid)}"


def build(cls: type, raw: Any, *, source: str, where: str = ""):
    """Construct dataclass `cls` from `raw`, recursing into nested dataclass fields.

    `source` names the file (for messages); `where` is the dotted path of `raw` inside it.
    """
    if not isinstance(raw, dict):
        raise BadInput(f"{source}: '{where or '<top>'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise BadInput(f"{source}: unknown key '{dotted}'; {nearest(str(key), sorted(fields))}")
        values[key] = _coerce(hints[key], value, source=source, where=dotted)
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise BadInput(f"{source}: missing required key '{(where + '.') if where else ''}{missing[0]}'")
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise BadInput(f"{source}: {err}") from None


def _coerce(hint, value, *, source: str, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source=source, where=where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:  # e.g. `int | Literal["auto"]`: the first option that takes the value
            try:
                return _coerce(option, value, source=source, where=where)
            except BadInput:
                pass
        return _coerce(inner[-1], value, source=source, where=where)
    if origin is typing.Literal:
        if value not in args:
            raise BadInput(f"{source}: '{where}' = {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise BadInput(f"{source}: '{where}' must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, source=source, where=f"{where}[{i}]") for i, v in enumerate(value))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise BadInput(f"{source}: '{where}' must be a list, got {value!r}")
        return [_coerce(args[0], v, source=source, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise BadInput(f"{source}: '{where}' must be a mapping, got {value!r}")
        return {k: _coerce(args[1], v, source=source, where=f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-4" as a string
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise BadInput(f"{source}: '{where}' must be {hint.__name__}, got {value!r}")
    return value


def apply_override(raw: dict, assignment: str, *, source: str = "--set") -> None:
    """Apply one `dotted.key=value` to a raw mapping in place; the value is parsed as YAML."""
    if "=" not in assignment:
        raise BadInput(f"{source} {assignment!r}: expected KEY=VALUE, e.g. quantize.method=int4")
    dotted, text = assignment.split("=", 1)
    *parents, leaf = dotted.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise BadInput(f"{source} {assignment!r}: '{part}' is not a section")
    node[leaf] = yaml.safe_load(text)
