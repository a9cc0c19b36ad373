"""The prepared GPU command (``python -m benchmarks.gpu_paper_run``): its parts run on the CPU first."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from benchmarks import gpu_paper_run as run
from benchmarks import ped2_accuracy as accuracy
from tests.integration.test_readme_commands import _stand_in_compact_copy


def test_ped2_is_laid_out_from_a_compact_copy_as_anomalib_reads_it(tmp_path):
    compact = tmp_path / "compact"
    _stand_in_compact_copy(compact, tmp_path / "scratch")
    root = run.lay_out_ped2(compact, tmp_path / "root")
    test = root / "UCSDped2" / "Test"
    frames = sorted((test / "Test001").glob("*.tif"))
    masks = sorted((test / "Test001_gt").glob("*.bmp"))
    assert len(frames) == len(masks) == 16 and len(list((root / "UCSDped2" / "Train").iterdir())) == 2
    # the grey levels are the decoded video's, the masks the stored ones
    decoded = run.decode_grey(compact / "videos" / "Test001.mp4")
    np.testing.assert_array_equal(np.asarray(Image.open(frames[3])), decoded[3])
    stored = np.load(compact / "masks.npz")["Test001"]
    np.testing.assert_array_equal(np.asarray(Image.open(masks[5])) > 0, stored[5] > 0)
    from anomalib_vadproto import LocalUCSDped

    LocalUCSDped(root=root, category="UCSDped2").prepare_data()  # the layout check passes


def test_opencv_decodes_the_device_copy_to_the_same_grey_levels_as_pyav(monkeypatch):
    """The GPU image has OpenCV, not PyAV: on the device copy (full-range H.264) both give the same frames."""
    video = run.DEVICE_COPY / "videos" / "Test004.mp4"
    if not video.is_file():
        pytest.skip("needs the shared device copy of Ped2 beside the checkout")
    with_av = run.decode_grey(video)
    real_find_spec = run.importlib.util.find_spec
    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: None if name == "av" else real_find_spec(name))
    np.testing.assert_array_equal(run.decode_grey(video), with_av)


def test_missing_modules_are_named_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "REQUIRED_MODULES", ("numpy", "no_such_module_here"))
    assert run.missing_modules() == ["no_such_module_here"]
    assert run.main(["--model", "mnad", "--out", str(tmp_path)]) == 2
    assert "no_such_module_here" in (tmp_path / "gpu_run.log").read_text()


def test_a_run_that_cannot_fit_even_four_times_faster_is_refused(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    record = {"models": {"mnad": {"training": {"32": {"batch": 4, "clips_per_second": 10.0}}}}}  # gpu_speed.py's form
    (results / "speed_gpu_paper_20260101T000000.json").write_text(json.dumps(record))
    monkeypatch.setattr(run, "RESULTS", results)
    assert run.eager_estimate_minutes("cdda", 60) is None
    minutes = run.eager_estimate_minutes("mnad", 60)
    assert minutes == pytest.approx(60 * 2486 / 10 / 60)
    assert run.main(["--model", "mnad", "--out", str(tmp_path), "--budget-minutes", "9"]) == 3
    assert "refused" in (tmp_path / "gpu_run.log").read_text()


def test_the_estimate_reads_the_measured_gpu_step_rate():
    """The newest committed GPU speed file gives MNAD's eager step rate (200 clips/s on the H200)."""
    minutes = run.eager_estimate_minutes("mnad", 60)
    assert minutes is not None and 5 < minutes < 30


def test_the_budget_guard_stops_a_run_whose_epochs_would_not_fit(monkeypatch):
    guard = accuracy.BudgetGuard(minutes=1.0)
    clock = iter([0.0, 0.0, 20.0])  # fit start, epoch start, epoch end: 20 s an epoch
    monkeypatch.setattr(accuracy.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(current_epoch=0, max_epochs=5, should_stop=False, num_training_batches=10,
                              datamodule=SimpleNamespace(train_batch_size=4))  # fmt: skip
    guard.on_fit_start(trainer, None)
    guard.on_train_epoch_start(trainer, None)
    guard.on_train_epoch_end(trainer, None)
    # 20 s done + 4 epochs and a test pass of 20 s each = 120 s > 60 s
    assert (
        trainer.should_stop and guard.stopped["projected_minutes"] == 2.0 and guard.stopped["clips_per_second"] == 2.0
    )
    fits = accuracy.BudgetGuard(minutes=3.0)
    clock = iter([0.0, 0.0, 20.0])
    trainer.should_stop = False
    fits.on_fit_start(trainer, None)
    fits.on_train_epoch_start(trainer, None)
    fits.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop and fits.stopped is None


def test_fast_options_are_those_the_targets_take():
    class Target:
        def __init__(self, compile: bool = False, other: int = 0) -> None:  # noqa: A002
            pass

    assert accuracy.supported_options(Target, {"compile": True, "device_clips": True}) == {"compile": True}
