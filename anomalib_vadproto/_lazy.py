"""Lazily imported public names of a package (PEP 562), written once for the packages that need it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, sources: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a module ``__getattr__`` and ``__dir__`` that import each public name on first access.

    Args:
        package: The package's ``__name__``.
        sources: Public name -> module that defines it, relative to ``package`` (``".models"``).

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level. A resolved name is cached in the
        package's namespace; an unknown name raises ``AttributeError``.

    """

    def __getattr__(name: str) -> Any:  # noqa: ANN401
        if name not in sources:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(sources[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *sources})

    return __getattr__, __dir__
