"""The default visualizer writes one score-curve PNG per test video at the end of a test run, and no per-frame
images unless asked (Engine)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import clip_datamodule


@pytest.fixture(scope="module")
def tested(synthetic_root, tmp_path_factory):
    from anomalib.engine import Engine

    from anomalib_vadproto import Mnad

    work = tmp_path_factory.mktemp("curves")
    model = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0)
    engine = Engine(max_epochs=1, default_root_dir=work, logger=False)
    datamodule = clip_datamodule(synthetic_root)
    engine.train(model=model, datamodule=datamodule)  # fit, then test
    return model, engine, datamodule, work


def test_one_score_curve_per_test_video(tested) -> None:
    from anomalib_vadproto.visualization import VideoVisualizer

    model, _, _, work = tested
    assert isinstance(model.visualizer, VideoVisualizer) and model.visualizer.score_curves
    folders = list(work.rglob("score_curves"))
    assert len(folders) == 1
    folder = folders[0]
    assert folder.parent.name == "images"  # <output_dir>/score_curves, beside the per-video frame folders
    assert [p for p in work.rglob("*.png") if p.parent != folder] == []  # no per-frame images by default
    result = model.protocol_result
    assert len(result.video_names) == 2
    assert sorted(p.name for p in folder.glob("*.png")) == ["Test001.png", "Test002.png"]
    for path in folder.glob("*.png"):
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.shape[0] > 100 and image.shape[1] > 300  # an 8 x 3 inch figure
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # drawn, not blank


def test_score_curves_can_be_turned_off_and_are_never_stale(tested) -> None:
    model, engine, datamodule, work = tested
    folder = next(work.rglob("score_curves"))
    shutil.rmtree(folder)
    model.visualizer.score_curves = False
    model.visualizer.frame_images = "all"
    try:
        engine.test(model=model, datamodule=datamodule)
    finally:
        model.visualizer.score_curves = True
        model.visualizer.frame_images = "none"
    assert not list(work.rglob("score_curves"))
    assert list(work.rglob("Test001/00004.png"))  # the frame images are written when asked
    # a run that produces no protocol result (here: the previous one is still set) writes no curves
    model.visualizer.on_test_start(engine.trainer, model)
    model.visualizer.on_test_end(engine.trainer, model)
    assert not list(work.rglob("score_curves"))
