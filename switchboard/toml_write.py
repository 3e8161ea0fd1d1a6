"""A small TOML writer for the configurations Switchboard writes (`switchboard nodes`' per-node
files) and the tests' and benchmarks' server configs: tables, arrays of tables, strings,
numbers, booleans, paths and arrays of those. The reading side is the standard library's
tomllib; whatever this writes, tomllib reads back as it was given."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from os import PathLike
from typing import Any

__all__ = ["to_toml"]


def to_toml(data: Mapping[str, Any]) -> str:
    """`data` as TOML; TypeError for a value TOML cannot hold here (None, a set...)."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, PathLike):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML: {value!r}")


def _is_tables(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(
        isinstance(v, Mapping) for v in value)


def _table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    for key, value in data.items():
        if not isinstance(value, Mapping) and not _is_tables(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in data.items():
        sub = [*path, _key(key)]
        if isinstance(value, Mapping):
            lines += ["", f"[{'.'.join(sub)}]"]
            _table(value, sub, lines)
        elif _is_tables(value):
            for item in value:
                lines += ["", f"[[{'.'.join(sub)}]]"]
                _table(item, sub, lines)
