"""Unit tests for anomalib_vadproto.visualization (video visualizer and result plots)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from anomalib.data import ImageBatch, VideoBatch
from PIL import Image

from anomalib_vadproto.visualization import (
    VideoVisualizer,
    anomalous_intervals,
    plot_error_map,
    plot_protocol_result,
    plot_score_curve,
    video_item_to_image_item,
)

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "anomalib_vadproto" / "visualization"
FIELD_SIZE = (96, 64)  # (width, height) of each panel, small to keep the tests fast
# Default ImageVisualizer layout: fields image, gt_mask + overlays image+anomaly_map, image+pred_mask.
N_PANELS = 4
H, W = 32, 48


def _frames_uint8(batch_size: int = 2) -> torch.Tensor:
    """(B, 1, 3, H, W) uint8 target frames: a horizontal gradient with a bright square."""
    ramp = torch.linspace(30, 200, W).round().to(torch.uint8)
    frame = ramp.expand(3, H, W).clone()
    frame[:, 10:20, 20:32] = 250
    return frame.expand(batch_size, 1, 3, H, W).clone()


def _video_batch(
    frames: tuple[int, ...] = (4, 7),
    videos: tuple[str, ...] = ("/data/ped2/testing/frames/Test003", "/data/ped2/testing/frames/Test004"),
    with_original: bool = True,
    channels: int = 3,
) -> VideoBatch:
    """Fake post-processed VideoBatch: B clips of T=5 frames, 32x48, low-resolution anomaly maps."""
    batch_size = len(frames)
    gt_mask = torch.zeros(batch_size, H, W, dtype=torch.bool)
    gt_mask[-1, 10:20, 20:32] = True
    anomaly_map = torch.zeros(batch_size, 1, H // 2, W // 2)
    anomaly_map[-1, 0, 5:10, 10:16] = 0.9
    return VideoBatch(
        image=torch.rand(batch_size, 5, channels, H, W) * 2 - 1,  # pre-processed clip in [-1, 1]
        original_image=_frames_uint8(batch_size) if with_original else None,
        gt_mask=gt_mask,
        gt_label=torch.arange(batch_size) % 2,
        anomaly_map=anomaly_map,
        pred_score=torch.linspace(0.1, 0.9, batch_size),
        pred_label=torch.arange(batch_size) % 2 == 1,
        pred_mask=anomaly_map > 0.5,
        frames=torch.tensor(frames, dtype=torch.int64),
        video_path=list(videos),
    )


def _trainer(root: Path) -> SimpleNamespace:
    """Minimal stand-in for a Lightning trainer: the hooks read ``default_root_dir`` only."""
    return SimpleNamespace(default_root_dir=str(root), datamodule=None)


def _check_png(path: Path) -> Image.Image:
    assert path.is_file(), f"missing {path}"
    image = Image.open(path)
    image.load()
    assert image.size == (N_PANELS * FIELD_SIZE[0], FIELD_SIZE[1])
    assert np.asarray(image.convert("L")).std() > 1.0  # not a blank canvas
    return image


# ----------------------------------------------------------------------------------------------------
# VideoVisualizer
# ----------------------------------------------------------------------------------------------------
def test_test_batch_end_writes_one_png_per_target_frame(tmp_path: Path) -> None:
    batch = _video_batch()
    visualizer = VideoVisualizer(field_size=FIELD_SIZE, frame_images="all")
    visualizer.on_test_batch_end(_trainer(tmp_path), None, batch, batch, batch_idx=0)

    root = tmp_path / "images"
    assert visualizer.output_dir == root
    _check_png(root / "Test003" / "00004.png")
    _check_png(root / "Test004" / "00007.png")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == [
        "Test003/00004.png",
        "Test004/00007.png",
    ]


def test_explicit_output_dir_predict_hook_and_video_files(tmp_path: Path) -> None:
    batch = _video_batch(frames=(12,), videos=("/data/avenue/testing_videos/01.avi",))
    visualizer = VideoVisualizer(field_size=FIELD_SIZE, output_dir=tmp_path / "vis", frame_images="all")
    visualizer.on_predict_batch_end(_trainer(tmp_path / "unused"), None, batch, batch, batch_idx=3)
    _check_png(tmp_path / "vis" / "01" / "00012.png")
    assert not (tmp_path / "unused").exists()


def test_save_every_skips_frames(tmp_path: Path) -> None:
    batch = _video_batch(frames=(4, 5, 6, 7), videos=("/d/Test001",) * 4)
    visualizer = VideoVisualizer(field_size=FIELD_SIZE, save_every=2, frame_images="all")
    visualizer.on_test_batch_end(_trainer(tmp_path), None, batch, batch, batch_idx=0)
    written = sorted(p.name for p in (tmp_path / "images" / "Test001").glob("*.png"))
    assert written == ["00004.png", "00006.png"]


def test_save_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="save_every"):
        VideoVisualizer(save_every=0)


def test_fallback_to_preprocessed_grayscale_clip(tmp_path: Path) -> None:
    batch = _video_batch(frames=(9,), videos=("/d/Test002",), with_original=False, channels=1)
    item = video_item_to_image_item(batch, 0)
    assert item.image.shape == (3, H, W)
    assert float(item.image.min()) >= 0.0
    assert float(item.image.max()) <= 1.0
    VideoVisualizer(field_size=FIELD_SIZE, frame_images="all").on_test_batch_end(
        _trainer(tmp_path), None, batch, batch, 0
    )
    _check_png(tmp_path / "images" / "Test002" / "00009.png")


def test_video_item_to_image_item_uses_full_resolution_target_frame() -> None:
    batch = _video_batch()
    item = video_item_to_image_item(batch, 1)
    expected = batch.original_image[1, -1].float() / 255
    assert item.image.shape == (3, H, W)
    torch.testing.assert_close(item.image.as_subclass(torch.Tensor), expected)
    assert item.anomaly_map.shape[-2:] == (H, W)  # resized from 16x24
    assert item.pred_mask.shape[-2:] == (H, W)
    assert item.gt_mask.shape[-2:] == (H, W)
    assert bool(item.gt_mask[15, 25])
    assert float(item.anomaly_map[15, 25]) == pytest.approx(0.9)
    assert float(item.pred_score) == pytest.approx(0.9)
    assert bool(item.pred_label)


def test_visualize_returns_one_image_per_clip() -> None:
    images = VideoVisualizer(field_size=FIELD_SIZE).visualize(_video_batch())
    assert isinstance(images, list)
    assert len(images) == 2
    assert all(image.size == (N_PANELS * FIELD_SIZE[0], FIELD_SIZE[1]) for image in images)


def test_image_batch_is_delegated_to_image_visualizer(tmp_path: Path) -> None:
    paths = []
    for index in range(2):
        path = tmp_path / "data" / "good" / f"{index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_frames_uint8(1)[0, 0].permute(1, 2, 0).numpy()).save(path)
        paths.append(str(path))
    anomaly_map = torch.zeros(2, 1, H, W)
    anomaly_map[:, :, 10:20, 20:32] = 0.8
    batch = ImageBatch(
        image=torch.rand(2, 3, H, W),
        image_path=paths,
        gt_mask=torch.zeros(2, H, W, dtype=torch.bool),
        anomaly_map=anomaly_map,
        pred_score=torch.tensor([0.2, 0.8]),
        pred_mask=anomaly_map > 0.5,
    )
    visualizer = VideoVisualizer(field_size=FIELD_SIZE)
    assert not visualizer.is_video_batch(batch)
    visualizer.on_test_batch_end(_trainer(tmp_path), None, batch, batch, batch_idx=0)
    for index in range(2):
        _check_png(tmp_path / "images" / "good" / f"{index:03d}.png")


# ----------------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------------
LABELS = np.array([0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0])  # three anomalous runs


def test_anomalous_intervals() -> None:
    frames = np.arange(10, 10 + len(LABELS))
    assert anomalous_intervals(frames, LABELS) == [(11.5, 14.5), (16.5, 17.5), (18.5, 20.5)]
    # order of the input does not matter
    perm = np.random.default_rng(0).permutation(len(LABELS))
    assert anomalous_intervals(frames[perm], LABELS[perm]) == [(11.5, 14.5), (16.5, 17.5), (18.5, 20.5)]
    assert anomalous_intervals(frames, np.zeros_like(LABELS)) == []


def test_plot_score_curve_shades_gt_and_saves(tmp_path: Path) -> None:
    frames = torch.arange(len(LABELS))
    scores = torch.from_numpy(LABELS * 0.6 + 0.2)
    path = tmp_path / "curves" / "Test003.png"
    figure = plot_score_curve(frames, scores, torch.from_numpy(LABELS), title="Test003", path=path, threshold=0.5)

    (axes,) = figure.axes
    assert len(axes.patches) == 3
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in axes.patches)
    assert spans == [pytest.approx((1.5, 4.5)), pytest.approx((6.5, 7.5)), pytest.approx((8.5, 10.5))]
    assert axes.get_xlabel() == "frame"
    assert axes.get_ylabel() == "anomaly score"
    assert axes.get_title() == "Test003"
    assert len(axes.lines) == 2  # score + threshold
    image = Image.open(path)
    assert image.format == "PNG"
    assert image.size[0] > 300
    assert image.size[1] > 100


def test_plot_score_curve_without_labels_has_no_spans() -> None:
    figure = plot_score_curve(np.arange(5), np.linspace(0, 1, 5))
    assert len(figure.axes[0].patches) == 0


def test_plot_protocol_result_duck_typed(tmp_path: Path) -> None:
    result = SimpleNamespace(
        video_names=("/d/ped2/testing/frames/Test001", "/d/ped2/testing/frames/Test002"),
        frame_indices=(np.arange(4, 16), np.arange(4, 10)),
        labels=(LABELS, np.zeros(6, dtype=np.int64)),
        scores=(LABELS * 0.5 + 0.1, np.linspace(0, 1, 6)),
        video_auc=np.array([1.0, np.nan]),
        micro=0.9,
    )
    paths = plot_protocol_result(result, tmp_path / "protocol")
    assert paths == [tmp_path / "protocol" / "Test001.png", tmp_path / "protocol" / "Test002.png"]
    assert all(Image.open(path).format == "PNG" for path in paths)

    legacy = SimpleNamespace(
        videos=["a", "b"],
        frames={"a": [0, 1, 2], "b": [0, 1]},
        labels={"a": [0, 1, 1], "b": [0, 0]},
        scores={"a": [0.1, 0.8, 0.9], "b": [0.2, 0.3]},
        video_auc={"a": 1.0, "b": float("nan")},
    )
    assert [p.name for p in plot_protocol_result(legacy, tmp_path / "legacy")] == ["a.png", "b.png"]


def test_plot_protocol_result_with_real_protocol_result(tmp_path: Path) -> None:
    protocol = pytest.importorskip("anomalib_vadproto.metrics.protocol")
    metric = protocol.VideoProtocolAUC(cue_weights={"psnr": 1.0}, normal_cues=("psnr",))
    metric.update(
        ["/d/Test001"] * 6 + ["/d/Test002"] * 6,
        torch.tensor([4, 5, 6, 7, 8, 9] * 2),
        torch.tensor([0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]),
        {"psnr": torch.tensor([35.0, 34.0, 30.0, 29.0, 33.0, 34.0, 31.0, 27.0, 26.0, 27.5, 30.0, 31.0])},
    )
    paths = plot_protocol_result(metric.result(), tmp_path)
    assert [p.name for p in paths] == ["Test001.png", "Test002.png"]
    assert all(p.is_file() for p in paths)


def test_plot_error_map_has_three_axes(tmp_path: Path) -> None:
    target = torch.rand(3, H, W) * 2 - 1
    prediction = target.clone()
    prediction[:, 10:20, 20:32] = 0.0
    path = tmp_path / "error.png"
    figure = plot_error_map(target, prediction, path)
    assert len(figure.axes) == 3
    assert [ax.get_title().split("\n")[0] for ax in figure.axes] == ["target", "prediction", "squared error"]
    assert Image.open(path).format == "PNG"
    # grayscale (H, W) numpy input, no file
    assert len(plot_error_map(np.zeros((H, W)), np.ones((H, W)), None).axes) == 3
    with pytest.raises(ValueError, match="differ in shape"):
        plot_error_map(np.zeros((H, W)), np.zeros((H, W + 1)), None)


# ----------------------------------------------------------------------------------------------------
# Lazy matplotlib import
# ----------------------------------------------------------------------------------------------------
def test_no_module_level_matplotlib_import() -> None:
    def is_type_checking_block(node: ast.stmt) -> bool:
        return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)

    for source in PACKAGE_DIR.glob("*.py"):
        for node in ast.parse(source.read_text()).body:  # module-level statements only
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) or is_type_checking_block(node):
                continue
            for sub in ast.walk(node):
                names = [a.name for a in sub.names] if isinstance(sub, ast.Import) else []
                if isinstance(sub, ast.ImportFrom) and sub.module:
                    names = [sub.module]
                assert not any(n.split(".")[0] == "matplotlib" for n in names), f"{source.name}: {ast.unparse(sub)}"


def test_importing_the_package_does_not_import_matplotlib() -> None:
    # Load the visualization package under a probe name so the parent package (which imports the
    # models, hence anomalib and torchmetrics -> matplotlib) is not involved.
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location(
            "vis_probe", {str(PACKAGE_DIR / "__init__.py")!r}, submodule_search_locations=[{str(PACKAGE_DIR)!r}]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["vis_probe"] = module
        spec.loader.exec_module(module)
        import vis_probe.curves
        assert "matplotlib" not in sys.modules, "import pulled in matplotlib"
        assert "anomalib" not in sys.modules, "import pulled in anomalib"
        module.plot_score_curve([0, 1, 2], [0.1, 0.5, 0.2])
        assert "matplotlib" in sys.modules
        """
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
