"""Lazy registration of anomalib-vadproto with anomalib's model resolution.

Python processes ``anomalib_vadproto.pth`` at start-up, which imports this stdlib-only module and
calls :func:`install`. Nothing heavy is imported then: a one-shot import hook waits for
``anomalib.models`` to be imported and only then calls ``anomalib_vadproto.register()``, so that the
five video models are subclasses of ``AnomalibModule`` (and the datamodules known by short name)
before anomalib's CLI resolves ``--model Mnad``. The plugin package itself (cheap: its top-level names
are lazy) is imported just before ``anomalib.models`` runs, so that its narrow filters for anomalib's
known start-up deprecation warnings apply.
A broken plugin never breaks anomalib: failures become a ``RuntimeWarning``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import warnings

_TRIGGER = "anomalib.models"
_PLUGIN = "anomalib_vadproto"


def _import_plugin(register: bool = True) -> None:
    try:
        plugin = importlib.import_module(_PLUGIN)
        if register:
            plugin.register()
    except Exception as exc:  # noqa: BLE001 - never break the host library
        if not register:
            return  # reported by the registering call that follows
        warnings.warn(f"anomalib-vadproto could not be registered with anomalib: {exc!r}", RuntimeWarning, stacklevel=2)


class _LoaderWrapper(importlib.abc.Loader):
    """Imports the plugin package, runs the real loader of ``anomalib.models``, then registers the plugin."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):  # noqa: ANN001, D102
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001, D102
        _import_plugin(register=False)  # the package alone: installs its warning filters, imports nothing heavy
        self._loader.exec_module(module)
        _import_plugin()

    def __getattr__(self, name: str):  # delegate get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """One-shot finder that wraps the loader of ``anomalib.models``."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, D102
        if fullname != _TRIGGER:
            return None
        _uninstall(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _LoaderWrapper(spec.loader)
                return spec
        return None


def _uninstall(finder: _Finder) -> None:
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass


def install() -> None:
    """Install the hook, or import the plugin at once if ``anomalib.models`` is already imported."""
    if _TRIGGER in sys.modules:
        _import_plugin()
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
