"""`anomalib train` on generated Avenue and pooled-ShanghaiTech data through the shipped configs (no torchcodec)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalib_vadproto.data.synthetic_video import make_synthetic_avenue, make_synthetic_shanghaitech
from tests.conftest import REPO, TINY_MODEL_ARGS, run_cli
from tests.integration.test_cli import metric

pytestmark = pytest.mark.slow


def avenue(root: Path) -> tuple[list[str], list[str], str]:
    make_synthetic_avenue(root)  # 2 train / 2 test videos of 20 frames, MJPG .avi, .mat masks
    args = ["--data.root", str(root), "--data.gt_dir", str(root / "ground_truth_demo")]
    return args, ["01", "02"], "Mnad/LocalAvenue"


def shanghaitech_all(root: Path) -> tuple[list[str], list[str], str]:
    make_synthetic_shanghaitech(root, scenes=(1, 2))  # 2 + 2 videos per scene
    return ["--data.root", str(root)], ["01_0001", "01_0002", "02_0001", "02_0002"], "Mnad/LocalShanghaiTech/all"


LAYOUTS = {"avenue": avenue, "shanghaitech_all": shanghaitech_all}  # config name -> data generator


@pytest.mark.parametrize("config", sorted(LAYOUTS))
def test_train_and_test_through_the_data_config(config, tmp_path) -> None:
    data_args, test_videos, run_folder = LAYOUTS[config](tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli(
        ["train", "--model", "Mnad", *TINY_MODEL_ARGS, "--data", str(REPO / "configs" / "data" / f"{config}.yaml"),
         *data_args, "--data.num_workers", "0", "--trainer.max_epochs", "1", "--default_root_dir", str(work)],
        cwd=work,
    )  # fmt: skip
    for name in ("image_AUROC", "protocol_AUC_micro", "protocol_AUC_macro"):
        assert 0.0 <= metric(proc.stdout, name) <= 1.0
    checkpoints = list(work.rglob("model.ckpt"))
    assert len(checkpoints) == 1 and run_folder in checkpoints[0].as_posix()
    curves = next(work.rglob("score_curves"))
    assert sorted(p.stem for p in curves.glob("*.png")) == test_videos  # every test video scored, per video
