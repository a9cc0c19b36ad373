"""`anomalib-vadproto score` end to end on a tiny MNAD trained and exported through anomalib's CLI.

The synthetic test video is scored as a lossless mp4 and as its folder of .tif frames; the deployed
cues are checked against the Lightning model on the datamodule's clips of the same frames.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_vadproto import Mnad
from anomalib_vadproto.deploy import load_clip_model, open_source, score_source
from anomalib_vadproto.deploy.score import main as score_main
from anomalib_vadproto.metrics.protocol import fuse_cues
from tests.conftest import REPO, clip_datamodule, run_cli
from tests.unit.test_deploy_video_io import write_lossless

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(trained_run, synthetic_root, tmp_path_factory) -> dict:
    """The trained tiny MNAD exported to OpenVINO at the synthetic frame size, and Test001 as a lossless mp4."""
    work = tmp_path_factory.mktemp("score")
    run_cli(
        [
            "export",
            "--model",
            "Mnad",
            "--export_type",
            "openvino",
            "--input_size",
            "[48,64]",
            "--ckpt_path",
            str(trained_run["ckpt"]),
            "--default_root_dir",
            str(work),
        ],  # fmt: skip
        cwd=work,
    )
    folder = synthetic_root / "synthetic" / "Test" / "Test001"
    frames = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.tif"))])
    video = work / "Test001.mp4"
    write_lossless(video, frames, grey=True)
    masks = sorted((synthetic_root / "synthetic" / "Test" / "Test001_gt").glob("*.bmp"))
    labels = work / "labels.npy"
    np.save(labels, np.array([np.asarray(Image.open(p)).any() for p in masks], dtype=np.int64))
    return {"xml": work / "weights" / "openvino" / "model.xml", "video": video, "folder": folder, "labels": labels,
            "ckpt": trained_run["ckpt"], "work": work}  # fmt: skip


# Per-video min-max divides by each cue's span over the video. The 1-epoch model's feature distances span
# only ~1e-5 over the 12 frames, so float32 differences between back-ends (~5e-9) become ~5e-4 after
# normalisation; the raw cues are compared tightly instead. On Ped2 (benchmarks/deploy_parity_throughput.py)
# the normalised scores agree to ~3e-6.
NORMALISED_ATOL = 1e-3


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_score_command_writes_scores_curve_and_overlay(exported, tmp_path):
    command = shutil.which("anomalib-vadproto")
    command = [command] if command else [sys.executable, "-c", "from anomalib_vadproto.cli import main; main()"]
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            *command,
            "score",
            str(exported["xml"]),
            str(exported["video"]),
            "--output",
            str(out),
            "--overlay",
            "--batch-size",
            "4",
            "--labels",
            str(exported["labels"]),
            "--no-progress",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Scored 12 of 16 frames of Test001 with Mnad (offline normalisation" in proc.stdout

    rows = read_csv(out / "scores.csv")
    assert list(rows[0]) == ["frame", "time", "cue_feature_distance", "cue_psnr", "pred_score", "pred_label", "score"]
    assert [int(r["frame"]) for r in rows] == list(range(16))
    assert all(r["score"] == r["cue_psnr"] == "" for r in rows[:4])  # the first T - 1 frames get no score
    scores = np.array([float(r["score"]) for r in rows[4:]])
    raw = {name: [float(r[f"cue_{name}"]) for r in rows[4:]] for name in ("psnr", "feature_distance")}
    expected = fuse_cues(raw, np.zeros(12), {"psnr": 0.6, "feature_distance": 0.4}, ("psnr",))  # MNAD's fusion
    np.testing.assert_allclose(scores, expected, atol=1e-9)
    assert float(rows[5]["time"]) == pytest.approx(0.5)  # 10 fps

    summary = json.loads((out / "scores.json").read_text())
    assert summary["frames"] == 16 and summary["scored_frames"] == 12 and summary["normalization"] == "offline"
    assert summary["metadata"]["clip_length"] == 5 and summary["metadata"]["input_size"] == [48, 64]
    assert summary["metadata"]["cue_weights"] == {"feature_distance": 0.4, "psnr": 0.6}
    assert summary["rows"][3]["score"] is None and summary["rows"][10]["score"] == pytest.approx(
        float(rows[10]["score"])
    )
    assert summary["auc"] is not None and 0.0 <= summary["auc"] <= 1.0
    assert (out / "score_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    overlay = list(open_source(out / "overlay.mp4"))
    assert len(overlay) == 16 and overlay[0].image.shape == (48, 64, 3)


def test_folder_and_video_agree_and_match_the_lightning_model(exported, synthetic_root):
    from_video = score_source(exported["xml"], exported["video"], "offline", batch_size=8)
    from_folder = score_source(exported["xml"], exported["folder"], "offline", batch_size=3)
    # batches of 8 and of 3 clips: the same frames, up to the rounding of OpenVINO's kernels per batch size
    for name in from_video.cues:
        np.testing.assert_allclose(from_video.cues[name], from_folder.cues[name], rtol=1e-6, atol=0)
    np.testing.assert_allclose(from_video.score, from_folder.score, rtol=0, atol=1e-6)

    # the Lightning model (read-only, as exported) on the datamodule's clips of the same frames
    module = Mnad.load_from_checkpoint(exported["ckpt"], map_location="cpu")
    datamodule = clip_datamodule(synthetic_root)
    datamodule.setup()
    reference: dict[str, list[float]] = {"cue_psnr": [], "cue_feature_distance": [], "pred_score": []}
    frames = []
    with module.read_only_eval(), torch.no_grad():
        for batch in datamodule.test_dataloader():
            keep = [i for i, path in enumerate(batch.video_path) if Path(path).name == "Test001"]
            if not keep:
                continue
            outputs = module.predict_clip(batch.image[keep])
            for name in reference:
                reference[name] += outputs[name].tolist()
            target = batch.frames[keep]
            frames += (target if target.ndim == 1 else target[:, -1]).tolist()
    assert frames == list(range(4, 16))
    scored = from_video.scored
    np.testing.assert_allclose(from_video.cues["psnr"][scored], reference["cue_psnr"], atol=1e-3)  # dB
    np.testing.assert_allclose(
        from_video.cues["feature_distance"][scored], reference["cue_feature_distance"], atol=1e-7
    )
    np.testing.assert_allclose(from_video.pred_score[scored], reference["pred_score"], atol=1e-4)
    protocol = module.protocol
    offline = fuse_cues(
        {"psnr": reference["cue_psnr"], "feature_distance": reference["cue_feature_distance"]},
        np.zeros(12),
        protocol.cue_weights,
        protocol.normal_cues,
    )
    np.testing.assert_allclose(from_video.score[scored], offline, atol=NORMALISED_ATOL)


def test_running_normalisation_from_the_command(exported, tmp_path, capsys):
    out = tmp_path / "running"
    status = score_main(
        [
            str(exported["xml"]),
            str(exported["folder"]),
            "-o",
            str(out),
            "--normalization",
            "running",
            "--warmup",
            "2",
            "--batch-size",
            "1",
            "--fps",
            "5",
            "--overlay",
            "--no-progress",
        ]  # fmt: skip
    )
    assert status == 0
    rows = read_csv(out / "scores.csv")
    assert [r["score"] == "" for r in rows] == [True] * 6 + [False] * 10  # T - 1 frames, then the warm-up
    assert float(rows[3]["time"]) == pytest.approx(0.6)  # frame folders take their frame rate from --fps
    assert "running normalisation" in capsys.readouterr().out
    overlay = open_source(out / "overlay.mp4")  # written on the fly (causal scores)
    assert overlay.fps == 5 and len(list(overlay)) == 16


def test_live_source_is_scored_frame_by_frame_with_causal_scores_only(exported, tmp_path, capsys):
    live = ["testsrc=size=64x48:rate=10", "--input-format", "lavfi"]  # FFmpeg's generated live source
    out = tmp_path / "live"
    assert score_main([str(exported["xml"]), *live, "-o", str(out), "--max-frames", "12", "--no-progress"]) == 0
    summary = json.loads((out / "scores.json").read_text())
    assert summary["frames"] == 12 and summary["normalization"] == "running" and summary["batch_size"] == 1
    capsys.readouterr()
    offline = str(tmp_path / "live-offline")  # `out` holds scores now: a second run there needs --overwrite
    assert score_main([str(exported["xml"]), *live, "-o", offline, "--normalization", "offline"]) == 1
    assert "is a live source: offline normalisation needs the whole video" in one_error_line(capsys)
    assert score_main([str(exported["xml"]), *live, "-o", str(out), "--max-frames", "8", "--no-progress"]) == 1
    assert f"{out} already holds score outputs" in one_error_line(capsys)


def test_pytorch_export_needs_trust_and_matches_openvino(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TRUST_REMOTE_CODE", raising=False)
    module = Mnad.load_from_checkpoint(exported["ckpt"], map_location="cpu")
    pt = module.to_torch(tmp_path)  # what `anomalib export --export_type torch` writes
    assert score_main([str(pt), str(exported["folder"]), "-o", str(tmp_path / "x"), "--no-progress"]) == 1
    assert "TRUST_REMOTE_CODE=1" in one_error_line(capsys)
    out = tmp_path / "torch"
    assert score_main([str(pt), str(exported["folder"]), "-o", str(out), "--trust-remote-code", "--no-progress"]) == 0
    rows = read_csv(out / "scores.csv")
    openvino = score_source(exported["xml"], exported["folder"], "offline")
    np.testing.assert_allclose([float(r["cue_psnr"]) for r in rows[4:]], openvino.cues["psnr"][4:], atol=1e-3)
    np.testing.assert_allclose([float(r["score"]) for r in rows[4:]], openvino.score[4:], atol=NORMALISED_ATOL)


def test_precision_option_reaches_openvino(exported, tmp_path, capsys):
    folder, xml = str(exported["folder"]), str(exported["xml"])
    default = score_source(xml, folder, "offline")  # f32: no bf16 on CPUs that have it, unless asked
    assert load_clip_model(xml, precision=None).compiled is not None  # the device's own choice
    out = tmp_path / "auto"
    assert score_main([xml, folder, "-o", str(out), "--precision", "auto", "--no-progress"]) == 0
    rows = read_csv(out / "scores.csv")
    np.testing.assert_allclose([float(r["cue_psnr"]) for r in rows[4:]], default.cues["psnr"][4:], atol=0.5)  # bf16
    with pytest.raises(ValueError, match="precision must be one of"):
        load_clip_model(xml, precision="f64")
    with pytest.raises(SystemExit):
        score_main([xml, folder, "--precision", "f64"])
    assert "invalid choice: 'f64'" in capsys.readouterr().err


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anomalib-vadproto score: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_errors_end_with_one_clear_line(exported, tmp_path, capsys):
    xml, out = str(exported["xml"]), str(tmp_path / "out")
    assert score_main([xml, str(tmp_path / "missing.mp4"), "-o", out]) == 1
    assert "No video file at" in one_error_line(capsys)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    assert score_main([xml, str(corrupt), "-o", out]) == 1
    assert "as video: Invalid data found" in one_error_line(capsys)
    assert score_main([str(tmp_path / "model.xml"), str(exported["video"]), "-o", out]) == 1
    assert "No model file at" in one_error_line(capsys)
    short = tmp_path / "short.mp4"  # fewer frames than a clip: nothing can be scored
    write_lossless(short, np.zeros((3, 48, 64), dtype=np.uint8), grey=True)
    assert score_main([xml, str(short), "-o", out, "--no-progress"]) == 1
    assert "has 3 frame(s); the model (Mnad) scores clips of 5 frames" in one_error_line(capsys)
    small = tmp_path / "small.mp4"
    write_lossless(small, np.zeros((6, 24, 32), dtype=np.uint8), grey=True)
    assert score_main([xml, str(small), "-o", out, "--no-resize", "--no-progress"]) == 1
    assert "do not match the model's input size (48, 64)" in one_error_line(capsys)


def test_console_script_help_lists_the_command():
    proc = subprocess.run(
        [sys.executable, "-c", "from anomalib_vadproto.cli import main; main(['score', '--help'])"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0
    assert "--normalization {offline,running,running-std,validation}" in proc.stdout
    assert "--overlay" in proc.stdout and "--batch-size" in proc.stdout
