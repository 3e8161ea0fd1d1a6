"""The one TOML writer (switchboard/toml_write.py): what it writes, tomllib reads back."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from switchboard.toml_write import to_toml


def test_round_trip_of_what_configs_hold() -> None:
    data = {"a": 1, "b": {"c": "x y", "d": [1, 2], "e": True, "f": 0.5,
                          "odd key": "q\"uote"},
            "t": [{"n": 1}, {"n": 2}]}  # fmt: skip
    assert tomllib.loads(to_toml(data)) == data


def test_paths_are_strings_and_none_is_refused() -> None:
    assert tomllib.loads(to_toml({"s": {"path": Path("/srv/x")}})) == {"s": {"path": "/srv/x"}}
    with pytest.raises(TypeError):
        to_toml({"x": None})
