"""Packages whose public names are imported on first use, so that light imports (the CLI, decoding workers)
do not load torch."""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, api: dict[str, str]):
    """A module `__getattr__` that imports api[name] (a module path) when `name` is first read."""

    def __getattr__(name: str):
        if name in api:
            return getattr(importlib.import_module(api[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
