"""Tests for the synthetic UCSD-style video anomaly dataset generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anomalib_vadproto.data import make_synthetic_ucsd
from anomalib_vadproto.data.synthetic import main

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = {"n_train": 4, "n_test": 4, "n_frames": 40, "height": 120, "width": 180}
SMALL = {"n_train": 2, "n_test": 2, "n_frames": 12, "height": 48, "width": 64}
OLD_TIME_NS = 1_000_000_000 * 10**9  # 2001-09-09, far from "now"


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The default dataset, generated once for the module, and the time generation took."""
    root = tmp_path_factory.mktemp("synthetic_default")
    start = time.perf_counter()
    path = make_synthetic_ucsd(root)
    return path, time.perf_counter() - start


def _files(path: Path) -> dict[str, Path]:
    return {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()}


def _load(folder: Path, suffix: str) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob(f"*{suffix}"))])


def _age_all_files(path: Path) -> dict[str, int]:
    for p in _files(path).values():
        os.utime(p, ns=(OLD_TIME_NS, OLD_TIME_NS))
    return {name: p.stat().st_mtime_ns for name, p in _files(path).items()}


def _anomalous_frames(mask_folder: Path) -> np.ndarray:
    """1-based numbers of the frames whose mask is non-empty."""
    masks = _load(mask_folder, ".bmp")
    return np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1)) + 1


# ------------------------------------------------------------------------------------------
# Layout, content, ground truth
# ------------------------------------------------------------------------------------------
def test_layout_and_file_counts(default_dataset: tuple[Path, float]) -> None:
    path, _ = default_dataset
    assert path.name == "synthetic"
    assert sorted(p.name for p in path.iterdir()) == ["Test", "Train", "manifest.json"]

    train = sorted(p.name for p in (path / "Train").iterdir())
    assert train == [f"Train{i:03d}" for i in range(1, 5)]
    test = sorted(p.name for p in (path / "Test").iterdir())
    assert test == sorted([f"Test{i:03d}" for i in range(1, 5)] + [f"Test{i:03d}_gt" for i in range(1, 5)])

    expected_frames = [f"{t:03d}" for t in range(1, 41)]
    for folder in [*(path / "Train").iterdir(), *(path / "Test").glob("Test???")]:
        assert sorted(p.name for p in folder.iterdir()) == [f"{n}.tif" for n in expected_frames]
    for folder in (path / "Test").glob("Test???_gt"):
        assert sorted(p.name for p in folder.iterdir()) == [f"{n}.bmp" for n in expected_frames]

    frame = Image.open(path / "Train" / "Train001" / "001.tif")
    assert (frame.format, frame.mode, frame.size) == ("TIFF", "L", (180, 120))
    mask = Image.open(path / "Test" / "Test001_gt" / "001.bmp")
    assert (mask.format, mask.size) == ("BMP", (180, 120))
    assert np.asarray(mask).dtype == np.uint8


def test_manifest_records_parameters_and_intervals(default_dataset: tuple[Path, float]) -> None:
    path, _ = default_dataset
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["params"] == {"category": "synthetic", "seed": 0, **DEFAULTS}
    videos = manifest["test_videos"]
    assert [videos[f"Test{i:03d}"]["anomaly"] for i in range(1, 5)] == ["cart", "bright_blob", "cart", "runner"]
    for name, info in videos.items():
        frames = _anomalous_frames(path / "Test" / f"{name}_gt")
        assert frames[0] == info["first_anomalous_frame"]
        assert frames[-1] == info["last_anomalous_frame"]


def test_frames_look_sane(default_dataset: tuple[Path, float]) -> None:
    path, _ = default_dataset
    video = _load(path / "Train" / "Train001", ".tif").astype(np.float32)
    assert video.shape == (40, 120, 180)
    assert 60 < video.mean() < 200
    assert video.std() > 10  # background structure and pedestrians, not a flat image
    diff = np.abs(np.diff(video, axis=0))
    assert 0.5 < diff.mean() < 10  # small noise plus slow pedestrians
    moving = (diff > 30).mean(axis=(1, 2))
    assert (moving > 0).all()  # something moves in every frame


def test_every_test_video_has_normal_and_anomalous_frames(default_dataset: tuple[Path, float]) -> None:
    path, _ = default_dataset
    for i in range(1, 5):
        masks = _load(path / "Test" / f"Test{i:03d}_gt", ".bmp")
        assert set(np.unique(masks).tolist()) == {0, 255}
        non_empty = masks.reshape(40, -1).any(axis=1)
        anomalous = np.flatnonzero(non_empty)
        # one contiguous interval in the middle, with normal frames before and after it
        assert len(anomalous) >= 5
        assert np.array_equal(anomalous, np.arange(anomalous[0], anomalous[-1] + 1))
        assert 0.3 * 40 <= anomalous[0] and anomalous[-1] <= 0.85 * 40
        assert not non_empty[: anomalous[0]].any() and not non_empty[anomalous[-1] + 1 :].any()
        assert (~non_empty).sum() >= 10


def test_anomalies_are_detectable(default_dataset: tuple[Path, float]) -> None:
    """Frame differences on the anomalous object dwarf those on normal pedestrians."""
    path, _ = default_dataset
    train = [_load(folder, ".tif").astype(np.float32) for folder in sorted((path / "Train").iterdir())]
    background = np.median(np.concatenate(train), axis=0)  # static scene: pedestrians are rare per pixel

    diff_sum, count = 0.0, 0
    for video in train:
        foreground = np.abs(video[1:] - background) > 25  # pedestrian pixels (sensor noise std is 2)
        diff_sum += float(np.abs(video[1:] - video[:-1])[foreground].sum())
        count += int(foreground.sum())
    assert count > 1000
    normal = diff_sum / count

    for i in range(1, 5):
        video = _load(path / "Test" / f"Test{i:03d}", ".tif").astype(np.float32)
        masks = _load(path / "Test" / f"Test{i:03d}_gt", ".bmp") > 0
        anomalous = float(np.abs(video[1:] - video[:-1])[masks[1:]].mean())
        assert anomalous > 2.5 * normal, (i, anomalous, normal)
        # the object also stands out from the scene itself
        assert float(np.abs(video - background)[masks].mean()) > 40


def test_small_frames_and_minimum_length(tmp_path: Path) -> None:
    path = make_synthetic_ucsd(tmp_path, n_train=1, n_test=4, n_frames=10, height=32, width=32, seed=3)
    for i in range(1, 5):
        frames = _anomalous_frames(path / "Test" / f"Test{i:03d}_gt")
        assert 1 < frames[0] <= frames[-1] < 10
        assert np.array_equal(frames, np.arange(frames[0], frames[-1] + 1))


def test_generation_is_fast(default_dataset: tuple[Path, float]) -> None:
    _, seconds = default_dataset
    assert seconds < 5.0


# ------------------------------------------------------------------------------------------
# Determinism, idempotency, regeneration
# ------------------------------------------------------------------------------------------
def test_deterministic(tmp_path: Path) -> None:
    first = _files(make_synthetic_ucsd(tmp_path / "a", **SMALL, seed=7))
    second = _files(make_synthetic_ucsd(tmp_path / "b", **SMALL, seed=7))
    assert first.keys() == second.keys()
    assert len(first) == 1 + 2 * 12 + 2 * 12 * 2
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes(), name

    other = _files(make_synthetic_ucsd(tmp_path / "c", **SMALL, seed=8))
    assert other["Train/Train001/001.tif"].read_bytes() != first["Train/Train001/001.tif"].read_bytes()


def test_videos_differ_from_each_other(tmp_path: Path) -> None:
    path = make_synthetic_ucsd(tmp_path, **SMALL)
    a = _load(path / "Train" / "Train001", ".tif")
    b = _load(path / "Train" / "Train002", ".tif")
    assert not np.array_equal(a, b)


def test_idempotent_does_not_rewrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_synthetic_ucsd(tmp_path, **SMALL)
    before = _age_all_files(path)
    assert make_synthetic_ucsd(tmp_path, **SMALL) == path
    assert {name: p.stat().st_mtime_ns for name, p in _files(path).items()} == before

    assert main([str(tmp_path), *_cli_args(SMALL)]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert {name: p.stat().st_mtime_ns for name, p in _files(path).items()} == before

    make_synthetic_ucsd(tmp_path, **SMALL, overwrite=True)
    after = {name: p.stat().st_mtime_ns for name, p in _files(path).items()}
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in before)


def test_regenerates_when_parameters_change(tmp_path: Path) -> None:
    path = make_synthetic_ucsd(tmp_path, **SMALL)
    (path / "notes.txt").write_text("kept")
    smaller = {**SMALL, "n_train": 1, "n_test": 1, "n_frames": 10}
    assert make_synthetic_ucsd(tmp_path, **smaller) == path
    assert sorted(p.name for p in (path / "Train").iterdir()) == ["Train001"]
    assert sorted(p.name for p in (path / "Test").iterdir()) == ["Test001", "Test001_gt"]
    assert len(list((path / "Train" / "Train001").iterdir())) == 10
    assert json.loads((path / "manifest.json").read_text())["params"]["n_frames"] == 10
    assert (path / "notes.txt").read_text() == "kept"  # only Train/Test are replaced

    # the regenerated data equals a fresh generation
    fresh = _files(make_synthetic_ucsd(tmp_path / "fresh", **smaller))
    regenerated = _files(path)
    del regenerated["notes.txt"]
    assert fresh.keys() == regenerated.keys()
    assert all(fresh[name].read_bytes() == regenerated[name].read_bytes() for name in fresh)


def test_incomplete_generation_is_redone(tmp_path: Path) -> None:
    path = make_synthetic_ucsd(tmp_path, **SMALL)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["complete"] = False
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "Train" / "Train002" / "003.tif").unlink()
    make_synthetic_ucsd(tmp_path, **SMALL)
    assert (path / "Train" / "Train002" / "003.tif").is_file()
    assert json.loads((path / "manifest.json").read_text())["complete"] is True


def test_refuses_to_delete_foreign_data(tmp_path: Path) -> None:
    foreign = tmp_path / "UCSDped2" / "Train" / "Train001"
    foreign.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(foreign / "001.tif")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_synthetic_ucsd(tmp_path, category="UCSDped2", **SMALL)
    assert (foreign / "001.tif").is_file()
    make_synthetic_ucsd(tmp_path, category="UCSDped2", **SMALL, overwrite=True)
    assert len(list(foreign.iterdir())) == SMALL["n_frames"]


# ------------------------------------------------------------------------------------------
# Argument validation and CLI
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_frames": 9}, "n_frames"),
        ({"n_frames": 1000}, "n_frames"),
        ({"n_frames": 20.0}, "n_frames"),
        ({"height": 31}, "height"),
        ({"width": 8}, "width"),
        ({"n_test": 0}, "n_test"),
        ({"n_train": 0}, "n_train"),
        ({"n_train": True}, "n_train"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"category": ""}, "category"),
        ({"category": "a/b"}, "category"),
        ({"category": ".."}, "category"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_synthetic_ucsd(tmp_path / "root", **kwargs)
    assert not (tmp_path / "root").exists()


def _cli_args(params: dict) -> list[str]:
    return [arg for key, value in params.items() for arg in (f"--{key.replace('_', '-')}", str(value))]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--category", "demo", *_cli_args(SMALL), "--seed", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert str((tmp_path / "demo").resolve()) in out[0]
    assert json.loads((tmp_path / "demo" / "manifest.json").read_text())["params"]["seed"] == 1

    with pytest.raises(SystemExit) as excinfo:
        main([str(tmp_path), "--n-frames", "3"])
    assert excinfo.value.code == 2
    assert "n_frames" in capsys.readouterr().err


# Stand-in for the top-level package: only anomalib_vadproto/data/* runs, whatever the parent imports.
_STUB_PARENT = (
    "import sys, types; "
    "parent = types.ModuleType('anomalib_vadproto'); "
    f"parent.__path__ = [{str(REPO_ROOT / 'anomalib_vadproto')!r}]; "
    "sys.modules['anomalib_vadproto'] = parent; "
)


def test_data_package_import_is_light() -> None:
    """Importing ``anomalib_vadproto.data`` (and the generator) pulls in neither torch nor anomalib."""
    code = (
        _STUB_PARENT + "import anomalib_vadproto.data as d; d.make_synthetic_ucsd; "
        "print(sorted(m for m in ('torch', 'anomalib', 'anomalib_vadproto.models') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_runs_as_module(tmp_path: Path) -> None:
    """``python -m anomalib_vadproto.data.synthetic ROOT`` works (runpy, with RuntimeWarnings as errors)."""
    code = _STUB_PARENT + "import runpy; runpy.run_module('anomalib_vadproto.data.synthetic', run_name='__main__')"
    args = [sys.executable, "-W", "error::RuntimeWarning", "-c", code, str(tmp_path), *_cli_args(SMALL)]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    assert result.stdout.startswith("Wrote synthetic UCSD-style dataset to")
    assert not result.stderr
    assert (tmp_path / "synthetic" / "manifest.json").is_file()


# ------------------------------------------------------------------------------------------
# Integration with anomalib's UCSDped datamodule
# ------------------------------------------------------------------------------------------
def _ucsdped(path: Path) -> Any:
    pytest.importorskip("av")  # anomalib's clip indexer builds on torchvision's VideoClips
    from anomalib.data import UCSDped

    datamodule = UCSDped(
        root=path.parent,
        category=path.name,
        clip_length_in_frames=5,
        frames_between_clips=1,
        train_batch_size=2,
        eval_batch_size=2,
        num_workers=0,
    )
    datamodule.prepare_data()  # must find the folder, never download
    datamodule.setup()
    return datamodule


def test_loads_with_anomalib_ucsdped(default_dataset: tuple[Path, float]) -> None:
    torch = pytest.importorskip("torch")
    path, _ = default_dataset
    datamodule = _ucsdped(path)

    clips_per_video = (DEFAULTS["n_frames"] - 5) // 1 + 1
    assert len(datamodule.train_data) == DEFAULTS["n_train"] * clips_per_video
    assert len(datamodule.test_data) == DEFAULTS["n_test"] * clips_per_video

    train_batch = next(iter(datamodule.train_dataloader()))
    assert tuple(train_batch.image.shape) == (2, 5, 3, 120, 180)
    test_batch = next(iter(datamodule.test_dataloader()))
    assert tuple(test_batch.image.shape) == (2, 5, 3, 120, 180)
    assert test_batch.image.dtype == torch.float32
    assert float(test_batch.image.min()) >= 0.0 and float(test_batch.image.max()) <= 1.0
    assert tuple(test_batch.gt_mask.shape) == (2, 120, 180)


def test_ucsdped_labels_match_masks_of_target_frame(tmp_path: Path) -> None:
    """Every test clip's label and mask are those of its last frame (smaller data: reads every clip)."""
    pytest.importorskip("torch")
    params = {"n_train": 1, "n_test": 2, "n_frames": 16, "height": 48, "width": 64}
    path = make_synthetic_ucsd(tmp_path, **params)
    datamodule = _ucsdped(path)
    clips_per_video = params["n_frames"] - 5 + 1
    assert len(datamodule.train_data) == params["n_train"] * clips_per_video
    assert len(datamodule.test_data) == params["n_test"] * clips_per_video

    masks = {f"Test{i:03d}": _load(path / "Test" / f"Test{i:03d}_gt", ".bmp") > 0 for i in (1, 2)}
    seen = []
    for batch in datamodule.test_dataloader():
        assert tuple(batch.image.shape[1:]) == (5, 3, 48, 64)
        assert float(batch.image.min()) >= 0.0 and float(batch.image.max()) <= 1.0
        for j in range(batch.image.shape[0]):
            video = Path(batch.video_path[j]).name
            target = int(batch.frames[j])  # index of the clip's last frame
            expected = masks[video][target]
            assert int(batch.gt_label[j]) == int(expected.any()), (video, target)
            assert np.array_equal(batch.gt_mask[j].numpy().astype(bool), expected)
            seen.append((video, target, int(batch.gt_label[j])))
    assert sorted((v, t) for v, t, _ in seen) == [(v, t) for v in sorted(masks) for t in range(4, 16)]
    assert 0 < sum(label for *_, label in seen) < len(seen)
