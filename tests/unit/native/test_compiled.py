"""The modules setup.py compiles run compiled here, and from their current source.

An editable install builds them beside their .py, and Python imports the built module first:
after an edit to the .py the old build would run until the next ``make`` (which rebuilds:
the venv stamp depends on the sources). This test makes that loud instead of silent.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def compiled_modules() -> list[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets):
            return [elt.value for elt in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError("setup.py has no COMPILED list")


@pytest.mark.parametrize("source", compiled_modules())
def test_the_module_runs_compiled_from_its_current_source(source: str) -> None:
    name = source.removesuffix(".py").replace("/", ".")
    module = importlib.import_module(name)
    built = Path(module.__file__ or "")
    assert built.suffix == ".so", (
        f"{name} runs as plain Python from {built}: build it (make venv, or "
        f"python setup.py build_ext --inplace)")
    py = REPO / source
    newest = max(p.stat().st_mtime for p in (py, py.with_suffix(".pxd")) if p.exists())
    assert built.stat().st_mtime >= newest, (
        f"{built.name} is older than {source}: rebuild (make venv)")


def test_the_jitter_buffer_has_its_c_types() -> None:
    from gateway.media.jitterbuffer import JitterBuffer
    jb = JitterBuffer()
    with pytest.raises(AttributeError):
        jb.anything_else = 1  # type: ignore[attr-defined]  # a C type: no __dict__
