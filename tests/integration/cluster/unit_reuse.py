"""Run the dialplan's Store unit tests against PostgreSQL: a module here borrows a unit test
module's `store` fixture and every test that takes it (but none that takes `tmp_path`: those
are about the SQLite file), and provides `store_target` as a fresh PostgreSQL database."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "unit" / "dialplan"


def borrow(filename: str) -> dict[str, object]:
    path = UNIT / filename
    spec = importlib.util.spec_from_file_location(f"postgres_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: dict[str, object] = {"store": module.store}
    for name, value in vars(module).items():
        if name.startswith("test_") and callable(value):
            params = inspect.signature(value).parameters
            if "store" in params and "tmp_path" not in params:
                found[name] = value
    assert len(found) > 1, f"no store tests found in {filename}"
    return found
