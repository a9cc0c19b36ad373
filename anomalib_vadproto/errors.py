"""The plugin's user-facing errors and warnings, and how anomalib's CLI reports the errors in one line.

Every mistake the plugin can name precisely (an ``image_size`` the network cannot take, a checkpoint of
another model, a dataset folder that is missing or incomplete, no ``--data``) raises a subclass of
:class:`UsageError`. Each also derives from the built-in type callers already catch (``ValueError``,
``FileNotFoundError``), so library code and tests see no change.

How the CLI shortens them. The CLI is anomalib's own (``anomalib.cli.cli.main``), reached through the
``anomalib`` executable or through ``anomalib-vadproto`` (:mod:`anomalib_vadproto.cli`). It has no
error handling of its own: an exception leaves ``main()`` and Python hands it to ``sys.excepthook``,
which ``anomalib.cli.cli`` sets, when it is imported, to rich's traceback printer (``rich.traceback.install()``).
What was considered:

* a ``sys.excepthook`` installed when the plugin is imported: the ``.pth`` hook imports the plugin while
  ``anomalib.cli.cli`` is importing ``anomalib.models``, *before* that module's ``traceback.install()``,
  which then replaces the hook without chaining to it;
* a second import hook on ``anomalib.cli.cli`` in ``_anomalib_vadproto_autoload``: works, but would
  change the excepthook of every anomalib CLI process, plugin in use or not, and misses the
  ``anomalib-vadproto`` fallback where ``.pth`` files are not processed;
* jsonargparse's error handling (``ArgumentParser.error``): only reached for *parse* errors, whose
  message the plugin cannot change without patching jsonargparse (see :func:`anomalib_vadproto.cli.check_model_name`
  for what ``anomalib-vadproto`` does before parsing).

Chosen: when a :class:`UsageError` is created inside a process that runs anomalib's CLI (its module
``anomalib.cli.cli`` fully imported, so rich's hook is already in place), :func:`install_cli_excepthook`
wraps the current ``sys.excepthook`` once. The wrapper prints ``error: <message>`` on one line for an
uncaught :class:`UsageError` and passes every other exception, unchanged, to the hook it wrapped (rich's
traceback). The same holds from both entry points, nothing is changed in processes that never raise
one of these errors, and nothing in library use (no CLI module). The exit status stays Python's 1.
jsonargparse wraps an error raised while it instantiates ``--model``/``--data`` in a ``ValueError`` of
its own that keeps only the message; such a wrapper is shortened too when its text holds the message
of a :class:`UsageError` raised in this process. ``ANOMALIB_VADPROTO_TRACEBACK=1`` shows the full
traceback for these errors as well.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeVar

__all__ = [
    "TRACEBACK_ENV",
    "CheckpointMismatchError",
    "DatasetLayoutError",
    "InvalidArgumentError",
    "MissingDataError",
    "UntrainedModelWarning",
    "UsageError",
    "check_choice",
    "install_cli_excepthook",
    "one_line_message",
]

#: Set to ``1`` to see the full traceback of the plugin's usage errors in the CLI.
TRACEBACK_ENV = "ANOMALIB_VADPROTO_TRACEBACK"
_CLI_MODULE = "anomalib.cli.cli"
#: Messages of the last usage errors raised in this process (strings only: no frames are kept alive).
_recent_messages: deque[str] = deque(maxlen=8)

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]
T = TypeVar("T")


class UsageError(Exception):
    """A mistake in the user's arguments, data or checkpoint that the message alone explains.

    Creating one records its message and, inside anomalib's CLI, installs the one-line report
    (:func:`install_cli_excepthook`).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _recent_messages.append(str(self))
        if _cli_is_running():
            install_cli_excepthook()


class InvalidArgumentError(UsageError, ValueError):
    """An argument the model or datamodule cannot work with (e.g. an ``image_size`` of the wrong multiple)."""


class CheckpointMismatchError(UsageError, ValueError):
    """A checkpoint that does not fit the model asked to load it: another model class, or other architecture."""


class DatasetLayoutError(UsageError, FileNotFoundError):
    """A dataset folder, video or ground-truth file that is missing or incomplete."""


class MissingDataError(UsageError, ValueError):
    """A run started without data (``anomalib train`` without ``--data``)."""


class UntrainedModelWarning(UserWarning):
    """A model is tested although it was neither trained nor loaded from a checkpoint."""


def check_choice(name: str, value: T, choices: Iterable[T]) -> T:
    """Return ``value`` if it is one of ``choices``, else raise an error that names the argument and lists them.

    The one check of the plugin's string options (models, components, metrics, data), so that every
    wrong choice reads the same, on one line: ``score must be one of ('product', 'pixelwise'), got 'sum'``.

    Args:
        name: The argument as the user writes it (``score``, ``--model.score`` without the prefix).
        value: The value given.
        choices: The accepted values, in the order to list them (a tuple, a dict's keys, ...).

    Returns:
        ``value``, unchanged.

    Raises:
        InvalidArgumentError: (a ``ValueError``) if ``value`` is not one of ``choices``.

    """
    allowed = tuple(choices)
    if value not in allowed:
        msg = f"{name} must be one of {allowed}, got {value!r}"
        raise InvalidArgumentError(msg)
    return value


def full_traceback_requested() -> bool:
    """Whether :data:`TRACEBACK_ENV` asks for full tracebacks (any value but empty, ``0``, ``false``, ``no``)."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line_message(message: str) -> str:
    """Return the CLI's report of a usage error: ``error: <message>`` on one line, with how to get the traceback."""
    return f"error: {' '.join(message.split())} (set {TRACEBACK_ENV}=1 for the traceback)"


def _raised_by(exc: BaseException, package: str) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    name = str(tb.tb_frame.f_globals.get("__name__", ""))
    return name == package or name.startswith(package + ".")


def usage_message(exc: BaseException) -> str | None:
    """Return the message to report in one line for ``exc``, or ``None`` to show its traceback as usual.

    Args:
        exc: The uncaught exception.

    Returns:
        ``str(exc)`` for a :class:`UsageError`; the message of the usage error a jsonargparse
        instantiation error wraps (see the module docstring); ``None`` for anything else.

    """
    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, ValueError) and _raised_by(exc, "jsonargparse"):
        text = str(exc)
        for message in reversed(_recent_messages):
            first_line = message.strip().splitlines()[0] if message.strip() else ""
            if first_line and first_line in text:
                return message
    return None


def _cli_is_running() -> bool:
    """Whether anomalib's CLI module is fully imported (its ``main`` defined, rich's hook installed)."""
    module = sys.modules.get(_CLI_MODULE)
    return module is not None and hasattr(module, "main")


def install_cli_excepthook() -> bool:
    """Wrap ``sys.excepthook`` so that uncaught usage errors print one line (idempotent).

    Returns:
        ``True`` if the hook was installed now, ``False`` if it already was.

    """
    if getattr(sys.excepthook, "_vadproto_wrapped", None) is not None:
        return False
    previous: ExceptHook = sys.excepthook

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        message = None if full_traceback_requested() else usage_message(exc)
        if message is None:
            previous(exc_type, exc, tb)
            return
        sys.stderr.write(one_line_message(message) + "\n")
        sys.stderr.flush()

    excepthook._vadproto_wrapped = previous  # type: ignore[attr-defined]
    sys.excepthook = excepthook
    return True
