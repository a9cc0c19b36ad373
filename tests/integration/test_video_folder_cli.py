"""`anomalib train`/`test` on a folder of one's own videos (``VideoFolder``) through anomalib's CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from anomalib_vadproto.data.synthetic_video import make_synthetic_video_folder
from tests.conftest import REPO, TINY_MODEL_ARGS, run_cli
from tests.integration.test_cli import metric

pytestmark = pytest.mark.slow

TINY_DATA = {"n_train": 2, "n_frames": 30, "height": 48, "width": 64}


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Path:
    """A 30 fps 'camera' folder: two normal training videos, three test videos labelled by csv, txt and npy."""
    return make_synthetic_video_folder(
        tmp_path_factory.mktemp("data") / "camera", label_forms=("csv", "txt", "npy"), **TINY_DATA
    )


@pytest.mark.parametrize(
    "data",
    [
        ["--data", "anomalib_vadproto.VideoFolder", "--data.fps", "10", "--data.roi", "[0,8,64,40]"],
        ["--data", "VideoFolder", "--data.grayscale", "true"],
        ["--data", str(REPO / "configs" / "data" / "video_folder.yaml"), "--data.image_size", "[32,48]"],
    ],
    ids=["dotted_fps_roi", "short_grey", "config"],
)
def test_train_a_tiny_model_on_a_video_folder(camera, tmp_path, data) -> None:
    proc = run_cli(
        ["train", "--model", "Mnad", *TINY_MODEL_ARGS, *data, "--data.root", str(camera),
         "--trainer.max_epochs", "1", "--default_root_dir", str(tmp_path)],
        cwd=tmp_path,
    )  # fmt: skip
    for name in ("image_AUROC", "protocol_AUC_micro", "protocol_AUC_macro"):
        assert 0.0 <= metric(proc.stdout, name) <= 1.0
    (checkpoint,) = tmp_path.rglob("model.ckpt")
    assert "Mnad/VideoFolder/camera" in checkpoint.as_posix()
    # the camera options the export will carry (anomalib-vadproto score applies them): fps and roi only when set
    camera = torch.load(checkpoint, map_location="cpu", weights_only=False).get("anomalib_vadproto_camera_options")
    assert camera == ({"fps": 10.0, "roi": [0, 8, 64, 40], "folder_fps": 25.0} if "--data.fps" in data else None)
    curves = next(tmp_path.rglob("score_curves"))
    assert sorted(p.stem for p in curves.glob("*.png")) == ["test_01", "test_02", "test_03"]


def test_unlabelled_test_videos_are_scored_without_an_auc(camera, tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    common = ["--model", "Mnad", *TINY_MODEL_ARGS, "--data", "VideoFolder", "--default_root_dir", str(work)]
    run_cli(["fit", *common, "--data.root", str(camera), "--trainer.max_epochs", "1"], cwd=work)
    (checkpoint,) = work.rglob("model.ckpt")
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(camera, unlabelled, ignore=shutil.ignore_patterns("ground_truth"))
    proc = run_cli(["test", *common, "--data.root", str(unlabelled), "--ckpt_path", str(checkpoint)], cwd=work)
    # one record (anomalib's CLI shows each log record twice: rich on stdout, plain on stderr)
    assert proc.stderr.count("No AUC: the test set has no ground-truth labels") == 1
    assert "(prediction only)" in proc.stderr
    assert "AUROC" not in proc.stdout and "protocol_AUC" not in proc.stdout
