"""Helpers shared by the benchmark commands: data preparation, run metadata, results files.

The benchmarks are a package run from the repository's root (``python -m benchmarks.<name>``); the
investigations in ``research/`` import these helpers as ``benchmarks.common``. Every command writes its
results file with :func:`record`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PED2_COMPACT = SHARED / "data" / "ucsd_ped2_compact"
MATERIALIZE = SHARED / "tools" / "materialize_ucsd_ped2.py"
DEFAULT_CACHE = REPO / ".cache"
RESULTS = REPO / "benchmarks" / "results"


MODELS = ("mnad", "dlan_ac", "lgn_net", "apn", "cdda")


def model_class(class_path: str) -> type:
    """The class a config's ``model.class_path`` names (imported, not built)."""
    import importlib

    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def first_stage_argument(model: str) -> str | None:
    """The init argument holding the first training stage's epochs of ``model`` (snake name), if it has one.

    Asked of the model class (``first_stage_argument``: DLAN-AC's ``ac_epochs``, CDDA's ``ae_epochs``,
    ``None`` for the one-stage models), named by the paper config's ``class_path``.
    """
    import yaml

    return model_class(
        yaml.safe_load(config_path(model, "paper").read_text())["model"]["class_path"]
    ).first_stage_argument


def parse_models(text: str) -> list[str]:
    """The models named in a comma-separated ``--models`` value; exits with a message on unknown names."""
    models = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"Unknown models {unknown}; choose from {list(MODELS)}.")
    return models


def ensure_ped2(root: Path = DEFAULT_CACHE / "ucsd_ped2") -> Path:
    """Materialise the shared UCSD Ped2 copy in anomalib's layout under ``root`` (once)."""
    marker = root / "UCSDped2" / "Test" / "Test012_gt"
    if marker.is_dir() and len(list(marker.glob("*.bmp"))) == 180:
        return root
    if not PED2_COMPACT.is_dir():
        msg = f"The shared UCSD Ped2 copy is missing: expected {PED2_COMPACT}."
        raise FileNotFoundError(msg)
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(MATERIALIZE), str(PED2_COMPACT), str(root)], check=True)
    return root


def config_path(model: str, profile: str) -> Path:
    """``configs/model/<model>.yaml`` for the paper profile, ``<model>_<profile>.yaml`` otherwise (may not exist)."""
    name = model if profile == "paper" else f"{model}_{profile}"
    return REPO / "configs" / "model" / f"{name}.yaml"


@functools.cache
def configured_epochs(model: str, profile: str) -> int | None:
    """The profile config's ``trainer.max_epochs`` as it is now (``None`` without a config or a value)."""
    path = config_path(model, profile)
    if not path.is_file():
        return None
    _, epochs = settings(path.read_text())
    return None if epochs is None else int(epochs)


def settings(text: str) -> tuple[Any, Any]:
    """The settings of a model config's YAML ``text``: its model ``init_args`` and ``trainer.max_epochs``."""
    import yaml

    config = yaml.safe_load(text) or {}
    return (config.get("model") or {}).get("init_args"), (config.get("trainer") or {}).get("max_epochs")


@functools.cache
def configured_at(model: str, profile: str, revision: str) -> bool | None:
    """Whether the profile config at git ``revision`` has the same settings as now (comments aside).

    ``None`` when it cannot be told: no config now, no git, or a revision (``unknown``) git does not know.
    A ``-dirty`` suffix is dropped: such a run used its commit's config plus uncommitted edits.
    """
    path = config_path(model, profile)
    if not path.is_file():
        return None
    try:
        then = subprocess.run(
            ["git", "show", f"{revision.removesuffix('-dirty')}:{path.relative_to(REPO).as_posix()}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return training_settings(then.stdout) == training_settings(path.read_text())


#: Model arguments that change neither what a run trains nor its headline AUC: speed-only options (the
#: same mathematics) and the border handling of APN's smoothing, which only its smoothed figure reads (a
#: results file records the mode it used: :func:`smoothing_mode_of`), and CDDA's diagnostic cues (outputs only).
NOT_TRAINING = (
    "compile",
    "compile_mode",
    "channels_last",
    "log_step_losses",
    "som_backend",
    "smoothing_mode",
    "diagnostic_cues",
)


def training_settings(text: str) -> tuple[Any, Any]:
    """:func:`settings` without the :data:`NOT_TRAINING` arguments."""
    init_args, epochs = settings(text)
    return training_args(init_args), epochs


def training_args(init_args: Any) -> Any:  # noqa: ANN401
    """Model ``init_args`` without the :data:`NOT_TRAINING` arguments (anything else as it is)."""
    if isinstance(init_args, dict):
        return {key: value for key, value in init_args.items() if key not in NOT_TRAINING}
    return init_args


def model_settings(model: str, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run of ``model``'s ``profile`` config trains with, for a results file's ``run_settings``.

    The config's path, model ``class_path``, ``init_args`` and ``trainer`` section as the run read them,
    and the ``overrides`` of ``init_args`` the run applied on top (``--set``, ``--seed``, speed options).
    A profile without a config gives empty ``init_args`` and ``trainer``.
    """
    import yaml

    path = config_path(model, profile)
    config = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    section = config.get("model") or {}
    return {
        "config": shown_path(path),
        "class_path": section.get("class_path"),
        "init_args": section.get("init_args") or {},
        "trainer": config.get("trainer") or {},
        "overrides": dict(overrides or {}),
    }


def init_args_of(module: Any) -> dict[str, Any]:  # noqa: ANN401
    """The init arguments a built (or checkpoint-loaded) model holds in ``hparams``: those JSON can store as they are.

    Plain values (numbers, strings, booleans, ``None``) and lists, tuples and dicts of them; objects such as
    a pre-processor are left out.
    """

    def plain(value: Any) -> bool:  # noqa: ANN401
        if value is None or isinstance(value, (bool, int, float, str)):
            return True
        if isinstance(value, (list, tuple)):
            return all(plain(item) for item in value)
        if isinstance(value, dict):
            return all(isinstance(key, str) and plain(item) for key, item in value.items())
        return False

    hparams = getattr(module, "hparams", None) or {}
    return {str(key): value for key, value in dict(hparams).items() if plain(value)}


def stored_training_settings(result: dict[str, Any], model: str) -> tuple[Any, Any] | None:
    """:func:`training_settings` of the config a results file's run read, from the settings the file stores.

    ``None`` for a file without them (written before :func:`record` stored ``run_settings``).
    """
    entry = ((result.get("run_settings") or {}).get("models") or {}).get(model)
    if not isinstance(entry, dict) or "init_args" not in entry:
        return None
    return training_args(entry["init_args"]), (entry.get("trainer") or {}).get("max_epochs")


def configured_as_now(result: dict[str, Any]) -> bool | None:
    """Whether the run of an accuracy results file read its profile config's training settings as they are now.

    From the settings the file stores (``run_settings``); for an older file without them, from the config
    at the file's commit in git (:func:`configured_at`). ``None`` when it cannot be told.
    """
    model, profile = result["model"], result["profile"]
    then = stored_training_settings(result, model)
    if then is None:
        return configured_at(model, profile, result.get("commit", "unknown"))
    path = config_path(model, profile)
    if not path.is_file():
        return None
    return then == training_settings(path.read_text())


def smoothing_mode_of(result: dict[str, Any]) -> str:
    """The border handling a results file's smoothed AUC used: recorded since it was settable, else edge padding."""
    return str(result.get("smoothing_mode", "nearest"))


def commit() -> str:
    """The current commit (with ``-dirty`` when the tree has uncommitted changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name() -> str:
    """CPU model or GPU name."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                threads = torch.get_num_threads()
                return f"{line.split(':', 1)[1].strip()} ({threads} thread{'' if threads == 1 else 's'})"
    except OSError:
        pass
    return platform.processor() or "cpu"


def shown_path(path: Path) -> str:
    """A path as results files record it: relative to the repository when it lies inside it."""
    resolved = path.resolve()
    return resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else str(path)


def command_line(module: str, argv: list[str] | None = None) -> str:
    """The command that runs ``module`` with ``argv`` (default: this process's): ``python -m <module> <args>``."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


#: The fields :func:`record` writes itself.
RECORD_FIELDS = ("commit", "date", "device", "command", "torch_threads", "run_settings")


def record(
    name: str,
    data: dict[str, Any],
    *,
    module: str,
    argv: list[str] | None = None,
    settings: dict[str, Any] | None = None,
    started_on: str | None = None,
) -> Path:
    """Write one results file ``benchmarks/results/<name>_<UTC timestamp>.json`` and return its path.

    Every benchmark (and every ``research`` script) writes its results with this. Besides ``data``, the
    file holds ``commit`` (``started_on``: the commit the run started on, default the current one, with
    ``-dirty`` for uncommitted changes), ``date``, ``device`` (the CPU model and torch threads, or the
    GPU), ``command`` (``python -m <module> <argv>``, ``argv`` defaulting to this process's arguments),
    ``torch_threads`` and ``run_settings``: the settings the run used (``settings``; per model, under
    ``models``, its config's values as :func:`model_settings` gives them), so that a reader of the file
    (``make_table``) needs neither the config nor git history to tell which settings made the result.

    Raises:
        ValueError: ``data`` holds one of the fields the record writes itself (:data:`RECORD_FIELDS`).
    """
    import torch

    clash = sorted(set(data) & set(RECORD_FIELDS))
    if clash:
        raise ValueError(f"record() writes {clash} itself; pass the commit as started_on, not in data")
    RESULTS.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    result = {
        "commit": started_on or commit(),
        "date": now.isoformat(timespec="seconds"),
        "device": device_name(),
        "command": command_line(module, argv),
        **data,
        "torch_threads": torch.get_num_threads(),
        "run_settings": settings or {},
    }
    path = RESULTS / f"{name}_{now.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    logging.getLogger(module).info("wrote %s", path)
    return path


def epoch_logger():
    """A Lightning callback that logs each training epoch's duration and loss (progress in log files)."""
    import logging
    import time

    from lightning.pytorch import Callback

    log = logging.getLogger("benchmark")

    class EpochLogger(Callback):
        def __init__(self) -> None:
            self.epoch_seconds: list[float] = []
            self._start = 0.0

        def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.epoch_seconds.append(round(time.perf_counter() - self._start, 1))
            loss = trainer.callback_metrics.get("train_loss")
            log.info(
                "epoch %d/%d: %.1f s, loss %s",
                trainer.current_epoch + 1,
                trainer.max_epochs,
                self.epoch_seconds[-1],
                None if loss is None else f"{float(loss):.5f}",
            )

    return EpochLogger()
