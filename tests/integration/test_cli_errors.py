"""Usage errors end in one line from both entry points: the ``anomalib`` executable and ``anomalib-vadproto``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_MODEL_ARGS, anomalib_cli, data_args

pytestmark = pytest.mark.slow


def run_failing(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env.pop("ANOMALIB_VADPROTO_TRACEBACK", None)
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode != 0, proc.stdout[-2000:]
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess, start: str) -> None:
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-4000:]
    last = proc.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith(start) and last.endswith("(set ANOMALIB_VADPROTO_TRACEBACK=1 for the traceback)"), last


def test_checkpoint_of_another_model_ends_in_one_line(synthetic_root, tmp_path):
    """`anomalib test --model DlanAc --ckpt_path <Mnad checkpoint>`, the checkpoint without the model's name (older)."""
    from lightning.pytorch import Trainer

    from anomalib_vadproto import Mnad

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.strategy.connect(Mnad(image_size=32, grayscale=True, width=4, seed=0))
    path = tmp_path / "mnad.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint.pop("anomalib_vadproto_model", None)
    torch.save(checkpoint, path)
    args = ["test", "--model", "DlanAc", *TINY_MODEL_ARGS, *data_args(synthetic_root), "--ckpt_path", str(path)]
    proc = run_failing([*anomalib_cli(), *args, "--default_root_dir", str(tmp_path)], tmp_path)
    assert_one_line_error(proc, "error: this checkpoint holds a Mnad model, not DlanAc; use --model Mnad")


def test_train_without_data_ends_in_one_line_from_the_console_script(tmp_path):
    exe = shutil.which("anomalib-vadproto")
    command = [exe] if exe else [sys.executable, "-m", "anomalib_vadproto.cli"]
    args = ["train", "--model", "DlanAc", *TINY_MODEL_ARGS, "--trainer.max_epochs", "1"]
    proc = run_failing([*command, *args, "--default_root_dir", str(tmp_path)], tmp_path)
    assert_one_line_error(proc, "error: DlanAc has no training data: give a datamodule, e.g. --data LocalUCSDped")
