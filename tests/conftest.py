"""Shared fixtures: a tiny synthetic video dataset and one model trained on it through anomalib's CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PED2_COMPACT = SHARED / "data" / "ucsd_ped2_compact"

# A model small enough to train in seconds on two CPU cores.
TINY_MODEL_ARGS = [
    "--model.image_size",
    "[32,32]",
    "--model.grayscale",
    "true",
    "--model.width",
    "4",
    "--model.seed",
    "0",
]


def anomalib_cli() -> list[str]:
    exe = shutil.which("anomalib")
    return [exe] if exe else [sys.executable, "-c", "from anomalib.cli.cli import main; main()"]


def data_args(root: Path) -> list[str]:
    return [
        "--data",
        "LocalUCSDped",
        "--data.root",
        str(root),
        "--data.category",
        "synthetic",
        "--data.clip_length_in_frames",
        "5",
        "--data.frames_between_clips",
        "1",
        "--data.train_batch_size",
        "4",
        "--data.eval_batch_size",
        "8",
        "--data.num_workers",
        "0",
    ]


def clip_datamodule(root: Path, category: str = "synthetic", train_batch_size: int = 4, eval_batch_size: int = 8):
    """``LocalUCSDped`` with 5-frame clips at stride 1 and no workers (the Engine-level tests)."""
    from anomalib_vadproto import LocalUCSDped

    return LocalUCSDped(
        root=root,
        category=category,
        clip_length_in_frames=5,
        frames_between_clips=1,
        train_batch_size=train_batch_size,
        eval_batch_size=eval_batch_size,
        num_workers=0,
    )


def train_args(root: Path, work: Path) -> list[str]:
    """`anomalib train --model Mnad` (short name) for one epoch of the tiny model on ``root``."""
    return ["train", "--model", "Mnad", *TINY_MODEL_ARGS, *data_args(root), "--trainer.max_epochs", "1",
            "--default_root_dir", str(work)]  # fmt: skip


def run_cli(
    args: list[str], cwd: Path, command: list[str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        (command or anomalib_cli()) + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(args)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture
def worker_processes():
    """Let a test start DataLoader worker processes without leaving torch's SIGCHLD handler behind.

    The first DataLoader with workers installs a process-wide Python SIGCHLD handler and never removes
    it, so every later subprocess exit in the session runs a signal handler on the main thread's
    alternate signal stack. That turned an OpenVINO signal-stack bug (see
    :func:`anomalib_vadproto.deploy.openvino_core`) into a SIGSEGV of the whole session, tests after
    the worker test. Restoring the previous handler keeps one test from changing how the rest of the
    session handles child processes.
    """
    import signal

    from torch.utils.data._utils import signal_handling

    previous, was_set = signal.getsignal(signal.SIGCHLD), signal_handling._SIGCHLD_handler_set
    yield
    signal.signal(signal.SIGCHLD, previous if previous is not None else signal.SIG_DFL)
    signal_handling._SIGCHLD_handler_set = was_set


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in anomalib's UCSDped layout (2 train, 2 test videos of 16 frames)."""
    from anomalib_vadproto.data import make_synthetic_ucsd

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_ucsd(root, category="synthetic", n_train=2, n_test=2, n_frames=16, height=48, width=64, seed=0)
    return root


@pytest.fixture(scope="session")
def trained_run(synthetic_root, tmp_path_factory) -> dict:
    """`anomalib train --model Mnad` (short name) for one epoch; returns the run folder and checkpoint."""
    work = tmp_path_factory.mktemp("run")
    proc = run_cli(
        train_args(synthetic_root, work),
        cwd=work,
    )
    ckpts = sorted(work.rglob("model.ckpt"))
    assert ckpts, proc.stdout[-2000:]
    return {"work": work, "ckpt": ckpts[0], "config": ckpts[0].parents[2] / "config.yaml", "stdout": proc.stdout}
