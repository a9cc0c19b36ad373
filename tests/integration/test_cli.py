"""End-to-end through anomalib's own CLI on the synthetic data: train, test, predict, export."""

import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_MODEL_ARGS, data_args, run_cli, train_args

pytestmark = pytest.mark.slow

#: Per-frame images are off by default; this is how a user asks for them.
FRAME_IMAGES_ARGS = ["--model.visualizer", "VideoVisualizer", "--model.visualizer.init_args.frame_images", "all"]


def metric(stdout: str, name: str) -> float:
    match = re.search(rf"│\s*{name}\s*│\s*([0-9.]+)", stdout)
    assert match, f"{name} not in the test table:\n{stdout[-3000:]}"
    return float(match.group(1))


def test_train_with_the_short_name_reports_both_protocols(trained_run):
    out = trained_run["stdout"]
    for name in ("image_AUROC", "protocol_AUC_micro", "protocol_AUC_macro"):
        assert 0.5 < metric(out, name) <= 1.0
    assert trained_run["ckpt"].is_file()
    # by default: one score curve per test video, no per-frame images
    images = list((trained_run["ckpt"].parents[2] / "images").rglob("*.png"))
    assert sorted(p.name for p in images) == ["Test001.png", "Test002.png"]
    assert {p.parent.name for p in images} == {"score_curves"}


def test_test_from_checkpoint_reproduces_training_metrics(trained_run, synthetic_root, tmp_path):
    proc = run_cli(
        [
            "test",
            "--config",
            str(trained_run["config"]),
            "--ckpt_path",
            str(trained_run["ckpt"]),
            "--default_root_dir",
            str(tmp_path),
            *FRAME_IMAGES_ARGS,
        ],
        cwd=tmp_path,
    )
    for name in ("image_AUROC", "protocol_AUC_micro"):
        assert metric(proc.stdout, name) == pytest.approx(metric(trained_run["stdout"], name), abs=1e-6)
    # asked for, the video-aware visualizer wrote frames per video
    assert list(tmp_path.rglob("Test001/*.png"))


def test_test_with_other_architecture_fails_clearly(trained_run, synthetic_root, tmp_path):
    with pytest.raises(AssertionError, match="checkpoint was trained with"):
        run_cli(
            [
                "test",
                "--model",
                "Mnad",
                *data_args(synthetic_root),
                "--ckpt_path",
                str(trained_run["ckpt"]),
                "--default_root_dir",
                str(tmp_path),
            ],
            cwd=tmp_path,
        )


def test_predict_with_the_dotted_path(trained_run, synthetic_root, tmp_path):
    run_cli(
        [
            "predict",
            "--model",
            "anomalib_vadproto.Mnad",
            *TINY_MODEL_ARGS,
            *data_args(synthetic_root),
            "--ckpt_path",
            str(trained_run["ckpt"]),
            "--default_root_dir",
            str(tmp_path),
            *FRAME_IMAGES_ARGS,
        ],
        cwd=tmp_path,
    )
    pngs = list(tmp_path.rglob("*.png"))
    assert {p.parent.name for p in pngs} >= {"Test001", "Test002"}


@pytest.mark.parametrize(
    ("export_type", "files"),
    [
        ("torch", ["weights/torch/model.pt"]),
        ("onnx", ["weights/onnx/model.onnx"]),
        ("openvino", ["weights/openvino/model.xml", "weights/openvino/model.bin"]),
    ],
)
def test_export(trained_run, tmp_path, export_type, files):
    proc = run_cli(
        [
            "export",
            "--model",
            "Mnad",
            "--export_type",
            export_type,
            "--ckpt_path",
            str(trained_run["ckpt"]),
            "--default_root_dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
    )
    for name in files:
        assert (tmp_path / name).is_file()
    output = proc.stdout + proc.stderr
    assert "Replaced initializer" not in output  # the ONNX exporter's INFO records stay behind the log level
    assert "[torch.onnx]" not in output
    # every ONNX file the log names exists (OpenVINO's intermediate one is deleted: it is not named); the
    # plain log is on stderr, the console's (wrapped) copy on stdout
    named = re.findall(r"(/\S+\.onnx)\b", proc.stderr)
    assert all(Path(path).is_file() for path in named), named
    if export_type != "torch":
        assert "Exporting Mnad to ONNX" in proc.stderr


def test_console_script_fallback_and_model_config(synthetic_root, tmp_path):
    """`anomalib-vadproto fit` with the shipped lite config and overrides (the `.pth`-free path)."""
    command = [sys.executable, "-m", "anomalib_vadproto.cli"]
    proc = run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs/model/mnad_lite.yaml"),
            *data_args(synthetic_root),
            "--model.image_size",
            "[32,32]",
            "--model.width",
            "4",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--default_root_dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        command=command,
    )
    assert list(tmp_path.rglob("*.ckpt")), proc.stdout[-2000:]


def test_missing_dataset_folder_is_reported(tmp_path):
    with pytest.raises(AssertionError) as info:
        run_cli(
            train_args(tmp_path / "nowhere", tmp_path),
            cwd=tmp_path,
            timeout=300,
        )
    assert "No dataset at" in str(info.value) and "nowhere" in str(info.value)
