"""Camera options from training to deployment: VideoFolder's ``fps`` and ``roi`` in the export, applied by ``score``.

The frames and crops that ``score`` feeds the model are checked against ``VideoFolder``'s own (exact pixels, the
same recorded frames), then a tiny MNAD trained on a ``VideoFolder`` with ``fps: 10`` and a ``roi`` is exported
to torch and OpenVINO: both carry the options, and ``score`` on a 30 fps test recording scores the frames and
crops that ``VideoFolder`` gives, with the model's own scores through ``VideoFolder``'s test clips.
"""

from __future__ import annotations

import csv
import json
import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_vadproto.components.metadata import FORMAT_VERSION, ModelMetadata, check_camera_options
from anomalib_vadproto.data.camera_options import FrameRateSampler, keep_frames
from anomalib_vadproto.data.synthetic_video import make_synthetic_video_folder
from anomalib_vadproto.data.video_folder import VideoFolder
from anomalib_vadproto.deploy import (
    CameraOptions,
    CameraSource,
    OpenVINOClipModel,
    TorchClipModel,
    load_clip_model,
    open_source,
    score_source,
)
from anomalib_vadproto.deploy.score import main as score_main

SIZE = {"n_frames": 30, "height": 48, "width": 64}  # written at 30 fps
FPS, ROI = 10, [8, 4, 48, 40]  # x, y, w, h: a 48x40 crop of the 64x48 frames
KEPT = tuple(range(0, 30, 3))
CAMERA = {"fps": 10.0, "roi": ROI, "folder_fps": 25.0}


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Path:
    """Three training videos (mp4, avi, a PNG frame folder) and two test videos (mp4, avi) with npy and csv labels."""
    return make_synthetic_video_folder(tmp_path_factory.mktemp("camera"), label_forms=("npy", "csv"), **SIZE)


def folder_frames(root: Path, split: str, **options) -> dict[tuple[str, int], np.ndarray]:
    """Per ``(video name, recorded frame)``: the frame ``VideoFolder`` gives (``uint8`` ``(H, W, 3)``)."""
    datamodule = VideoFolder(root=root, num_workers=0, clip_length_in_frames=1, **options)
    datamodule.setup()
    dataset = getattr(datamodule, split)
    sources = dataset.indexer.sources
    found = {}
    for i in range(len(dataset)):
        item = dataset[i]
        image = item.image if item.image.ndim == 3 else item.image[-1]
        recorded = sources[item.video_path].kept[int(item.frames)]
        found[(Path(item.video_path).stem, recorded)] = (image * 255).round().byte().permute(1, 2, 0).numpy()
    return found


# ---------------------------------------------------------------------------------------------- one rule
def test_the_sampler_keeps_the_frames_keep_frames_keeps() -> None:
    for times, fps in (
        ([i / 30 for i in range(30)], 10),
        ([Fraction(i, 25) for i in range(40)], 10),
        ([0.0, 0.05, 0.09, 0.31, 0.32, 0.4], 10),
        ([7 + i / 5 for i in range(4)], 10),  # any origin; below the target rate: every frame
        ([i / 30 for i in range(5)], None),
    ):
        sampler = FrameRateSampler(fps)
        assert tuple(i for i, t in enumerate(times) if sampler.keep(t)) == keep_frames(times, fps)
    assert keep_frames([i / 30 for i in range(10)], 10) == (0, 3, 6, 9)


def test_video_folder_names_its_camera_options(camera) -> None:
    assert VideoFolder(root=camera, fps=FPS, roi=ROI).camera_options() == CAMERA
    assert check_camera_options(VideoFolder(root=camera).camera_options()) is None  # nothing to apply
    assert check_camera_options({"fps": None, "roi": ROI, "folder_fps": 25.0}) == {
        "fps": None, "roi": ROI, "folder_fps": None,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------- metadata
BASE = {"model": "Mnad", "clip_length": 5, "image_size": (32, 32), "cue_weights": {"psnr": 1.0}, "normal_cues": ()}
#: A record as the previous release wrote it (format version 1, no camera options).
OLD_RECORD = (
    '{"clip_length":5,"cue_weights":{"psnr":1.0},"image_max":null,"image_min":null,"image_size":[32,32],'
    '"image_threshold":null,"input_size":null,"model":"Mnad","normal_cues":[],"smoothing":false,'
    '"smoothing_mode":"nearest","smoothing_sigma":2.0,"smoothing_taps":15,"version":1}'
)


def test_metadata_carries_the_camera_options_and_old_records_still_load() -> None:
    meta = ModelMetadata(**BASE, fps=FPS, roi=ROI)
    assert meta.fps == 10.0 and meta.roi == tuple(ROI) and meta.folder_fps == 25.0
    assert meta.version == 2 == FORMAT_VERSION and meta.camera_options == CAMERA
    record = json.loads(meta.to_json())
    assert record["roi"] == ROI and record["fps"] == 10.0 and record["version"] == 2
    assert ModelMetadata.from_json(meta.to_json()) == meta
    # without camera options: the record of before, byte for byte, and version 1 (older readers read it)
    plain = ModelMetadata(**BASE)
    assert plain.to_json() == OLD_RECORD and plain.version == 1 and plain.camera_options is None
    old = ModelMetadata.from_json(OLD_RECORD)
    assert old == plain and old.fps is None and old.roi is None and CameraOptions.of(old) is None
    assert ModelMetadata.from_json(OLD_RECORD.replace(',"version":1', "")).version == 1  # no version at all
    with pytest.raises(ValueError, match="format version 3"):
        ModelMetadata.from_json(json.dumps({**record, "version": 3}))
    with pytest.raises(ValueError, match=r"roi must be \[x, y, w, h\]"):
        ModelMetadata(**BASE, roi=[0, 0, 10])
    with pytest.raises(ValueError, match="fps must be a positive frame rate"):
        ModelMetadata(**BASE, fps=0)


# ---------------------------------------------------------------------------------------------- frames and crops
@pytest.mark.parametrize("live", [False, True], ids=["indexed", "frame_by_frame"])
def test_score_reads_the_frames_and_crops_video_folder_gives(camera, live) -> None:
    """Video files (MPEG-4, MJPEG) and a frame folder: the same recorded frames, the same pixels."""
    options = CameraOptions(fps=FPS, roi=tuple(ROI))
    for split, names in (("test_data", ("test_01", "test_02")), ("train_data", ("normal_03",))):
        expected = folder_frames(camera, split, fps=FPS, roi=ROI)
        for name in names:
            path = next((camera / ("test" if split == "test_data" else "train")).glob(f"{name}*"))
            source = open_source(path)
            if live and not path.is_dir():
                source.live = True  # the stream path: kept frame by frame from the decoded timestamps
            camera_source = CameraSource(source, options)
            frames = list(camera_source)
            kept = [key[1] for key in sorted(expected) if key[0] == name]
            assert [f.index for f in frames] == kept, name
            assert tuple(kept) == (KEPT if path.is_file() else keep_frames([i / 25 for i in range(30)], FPS))
            for frame in frames:
                assert frame.image.shape == (40, 48, 3)
                assert np.array_equal(frame.image, expected[(name, frame.index)]), (name, frame.index)
            if not live:
                assert camera_source.kept == tuple(kept) and camera_source.num_frames == len(kept)
                assert camera_source.recorded_frames == 30 and camera_source.fps == FPS


def test_a_roi_beyond_the_frames_is_one_clear_error(camera) -> None:
    source = CameraSource(open_source(camera / "test" / "test_01.mp4"), CameraOptions(roi=(40, 0, 48, 40)))
    with pytest.raises(ValueError, match=r"roi \[x=40, y=0, w=48, h=40\].*--no-camera-options"):
        next(iter(source))


# ---------------------------------------------------------------------------------------------- trained and exported
@pytest.fixture(scope="module")
def trained(camera, tmp_path_factory) -> dict:
    """A tiny MNAD trained one epoch on the camera folder at ``fps: 10`` with a roi, exported to torch and OpenVINO."""
    from anomalib.deploy import ExportType
    from anomalib.engine import Engine

    from anomalib_vadproto import Mnad

    work = tmp_path_factory.mktemp("trained")
    datamodule = VideoFolder(root=camera, fps=FPS, roi=ROI, num_workers=0, cache_frames=True)
    model = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0)
    engine = Engine(max_epochs=1, default_root_dir=work, logger=False, enable_progress_bar=False)
    engine.fit(model=model, datamodule=datamodule)
    pt = engine.export(model=model, export_type=ExportType.TORCH, export_root=work / "torch")
    xml = engine.export(model=model, export_type=ExportType.OPENVINO, export_root=work / "ov", input_size=(40, 48))
    (ckpt,) = work.rglob("model.ckpt")
    return {"model": model, "datamodule": datamodule, "pt": pt, "xml": xml, "ckpt": ckpt, "work": work}


def reference_scores(trained, name: str) -> tuple[list[int], dict[str, list[float]]]:
    """The model's outputs (read-only) on ``VideoFolder``'s test clips of one video, by recorded target frame."""
    model, datamodule = trained["model"], trained["datamodule"]
    sources = datamodule.test_data.indexer.sources
    found: dict[str, list[float]] = {"cue_psnr": [], "cue_feature_distance": [], "pred_score": []}
    frames: list[int] = []
    with model.read_only_eval(), torch.no_grad():
        for batch in datamodule.test_dataloader():
            keep = [i for i, path in enumerate(batch.video_path) if Path(path).stem == name]
            if not keep:
                continue
            outputs = model.predict_clip(batch.image[keep])
            for key in found:
                found[key] += outputs[key].tolist()
            target = batch.frames[keep]
            positions = (target if target.ndim == 1 else target[:, -1]).tolist()
            frames += [sources[batch.video_path[i]].kept[int(p)] for i, p in zip(keep, positions, strict=True)]
    return frames, found


@pytest.mark.slow
def test_the_checkpoint_and_both_exports_carry_the_camera_options(trained, monkeypatch) -> None:
    from anomalib_vadproto import Mnad

    assert trained["model"].camera_options == CAMERA
    assert torch.load(trained["ckpt"], weights_only=False)["anomalib_vadproto_camera_options"] == CAMERA
    assert Mnad.load_from_checkpoint(trained["ckpt"], map_location="cpu").camera_options == CAMERA
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
    for model in (load_clip_model(trained["pt"]), load_clip_model(trained["xml"])):
        meta = model.metadata
        assert (meta.fps, meta.roi, meta.folder_fps, meta.version) == (10.0, tuple(ROI), 25.0, 2)
    assert isinstance(load_clip_model(trained["xml"]), OpenVINOClipModel)


@pytest.mark.slow
def test_score_scores_the_frames_and_crops_video_folder_gives(trained, monkeypatch, caplog) -> None:
    video = trained["datamodule"].test_dir / "test_01.mp4"
    frames, reference = reference_scores(trained, "test_01")
    assert frames == list(KEPT[4:])  # clips of 5 kept frames: recorded frames 12, 15, ..., 27

    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
    with caplog.at_level(logging.INFO, logger="anomalib_vadproto.deploy.scoring"):
        torch_result = score_source(trained["pt"], video, "offline")
    applied = [r.getMessage() for r in caplog.records if "camera options" in r.getMessage()]
    assert len(applied) == 1 and "applying" in applied[0] and "10 of its 30 frames kept" in applied[0]
    assert torch_result.frames.tolist() == list(KEPT) and torch_result.fps == FPS
    assert torch_result.frames[torch_result.scored].tolist() == frames
    assert torch_result.camera_options == {**CAMERA, "applied": True}
    for key, values in reference.items():
        deployed = torch_result.pred_score if key == "pred_score" else torch_result.cues[key[4:]]
        np.testing.assert_allclose(deployed[torch_result.scored], values, rtol=1e-5, atol=1e-6, err_msg=key)

    openvino = score_source(trained["xml"], video, "offline")  # exported at the roi's size: no resize outside
    assert openvino.frames.tolist() == list(KEPT)
    np.testing.assert_allclose(openvino.cues["psnr"][openvino.scored], reference["cue_psnr"], atol=1e-3)  # dB
    np.testing.assert_allclose(
        openvino.cues["feature_distance"][openvino.scored], reference["cue_feature_distance"], atol=1e-6
    )
    np.testing.assert_allclose(openvino.pred_score[openvino.scored], reference["pred_score"], atol=1e-4)


@pytest.mark.slow
def test_the_command_names_recorded_frames_and_subsamples_the_labels(trained, tmp_path, capsys) -> None:
    root = trained["datamodule"].root
    labels = np.load(root / "ground_truth" / "test_01.npy")  # one per recorded frame: 30
    out = tmp_path / "out"
    argv = [str(trained["xml"]), str(root / "test" / "test_01.mp4"), "-o", str(out), "--overlay", "--no-progress"]
    assert score_main([*argv, "--labels", str(root / "ground_truth" / "test_01.npy")]) == 0
    assert "highest score" in capsys.readouterr().out
    with (out / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["frame"]) for r in rows] == list(KEPT)
    assert float(rows[1]["time"]) == pytest.approx(0.1)  # recorded frame 3 of a 30 fps video
    summary = json.loads((out / "scores.json").read_text())
    assert summary["camera_options"] == {**CAMERA, "applied": True} and summary["fps"] == FPS
    assert summary["frames"] == 10 and summary["scored_frames"] == 6
    scores = np.array([float(r["score"]) for r in rows[4:]])
    picked = labels[list(KEPT[4:])]
    if 0 < picked.sum() < len(picked):
        from sklearn.metrics import roc_auc_score

        assert summary["auc"] == pytest.approx(roc_auc_score(picked, scores))
    else:
        assert summary["auc"] is None
    overlay = open_source(out / "overlay.mp4")
    assert overlay.fps == FPS and [f.image.shape for f in overlay] == [(40, 48, 3)] * 10

    # labels of the subsampled length are refused before scoring: give one per recorded frame
    short = tmp_path / "short.npy"
    np.save(short, labels[list(KEPT)])
    assert score_main([*argv[:2], "-o", str(tmp_path / "short"), "--labels", str(short)]) == 1
    assert "has 10 labels but test_01 has 30 frames" in capsys.readouterr().err


@pytest.mark.slow
def test_no_camera_options_scores_the_input_whole(trained, tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
    video = trained["datamodule"].test_dir / "test_01.mp4"
    out = tmp_path / "raw"
    with caplog.at_level(logging.INFO):
        assert score_main([str(trained["pt"]), str(video), "-o", str(out), "--no-camera-options", "--no-progress"]) == 0
    assert any("are not applied (--no-camera-options)" in r.getMessage() for r in caplog.records)
    summary = json.loads((out / "scores.json").read_text())
    assert summary["frames"] == 30 and summary["camera_options"] == {**CAMERA, "applied": False}
    assert [row["frame"] for row in summary["rows"]] == list(range(30))


@pytest.mark.slow
def test_an_export_without_camera_options_scores_as_before(trained, caplog) -> None:
    model = trained["model"]
    saved, model.camera_options = model.camera_options, None
    try:
        meta = model.export_metadata(None)
        assert meta.camera_options is None and meta.version == 1 and '"fps"' not in meta.to_json()
        with caplog.at_level(logging.INFO):
            result = score_source(TorchClipModel.from_module(model), trained["datamodule"].test_dir / "test_01.mp4")
    finally:
        model.camera_options = saved
    assert result.frames.tolist() == list(range(30)) and result.camera_options is None
    assert int(result.scored.sum()) == 26
    assert not any("camera options" in r.getMessage() for r in caplog.records)
