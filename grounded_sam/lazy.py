"""Names a package re-exports, imported on first use: ``import grounded_sam`` and ``grounded-sam --help`` stay fast,
and torch and transformers load only when a name that needs them is used."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, where: dict[str, str]):
    """The ``__getattr__`` and ``__dir__`` of ``package`` for names (``where``: name -> module that defines it)."""
    module = importlib.import_module(package)

    def get_attribute(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(module, name, value)
        return value

    def names() -> list[str]:
        return sorted({*where, *vars(module)})

    return get_attribute, names
