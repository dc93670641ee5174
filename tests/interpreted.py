"""Interpreted copies of compiled modules, for the few tests that must patch their code.

A module compiled with mypyc (tools/hot_path.py) binds its calls when it is built and its
classes cannot be patched, so ``monkeypatch.setattr`` there changes nothing or raises. Such
a test loads the module's own source, interpreted, under another name and patches that:
the same code, run by the interpreter, beside the compiled modules it calls."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tools.hot_path import source_of


def interpreted(module: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{module}__interpreted", source_of(module))
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    return copy
