"""Deterministic synthetic video anomaly dataset in the UCSD Pedestrian layout.

The data imitates a fixed surveillance camera looking down on a walkway, in the spirit of the
UCSD Ped1/Ped2 benchmark, but is generated on the fly from a seed so that the demo and the test
suite need no download:

* **Scene.** One static grey background shared by all videos of a dataset: a smooth brightness
  gradient, a fixed low-amplitude texture and a few darker "pavement" stripes.
* **Normal motion.** Every video shows 3 to 6 "pedestrians": small upright ellipses with a dark
  body and a light head, walking at 0.5 to 1.5 px/frame along a mostly horizontal or vertical
  direction and bouncing off the image borders. Each frame gets a little Gaussian sensor noise.
  Training videos contain only this.
* **Anomalies.** Each test video additionally shows one anomalous object during a contiguous
  interval in its middle (roughly frames 40 % to 75 %), so every test video has normal frames
  before and after the anomaly. The kind alternates over the test videos: even-indexed videos
  (``Test001``, ``Test003``, ...) get a fast textured "cart" (a wide rectangle with wheels,
  5 to 9 px/frame); odd-indexed ones get either a large bright textured blob jumping
  erratically (``Test002``, ``Test006``, ...) or a pedestrian-shaped "runner" zig-zagging at
  6 to 10 px/frame (``Test004``, ``Test008``, ...). Appearance and speed both differ from the
  pedestrians, so a next-frame predictor finds them easily.
* **Ground truth.** One 8-bit ``.bmp`` mask per test frame: 255 exactly on the anomalous
  object's pixels, 0 elsewhere; frames outside the anomalous interval are all zero.

The files follow the layout read by :class:`anomalib.data.UCSDped`::

    root/<category>/
    ├── manifest.json              parameters + per-video anomaly intervals
    ├── Train/Train001/001.tif ...
    └── Test/
        ├── Test001/001.tif ...
        └── Test001_gt/001.bmp ...

Frames are 8-bit grey TIFFs (PIL mode ``"L"``); names are 1-based and zero-padded to three
digits as in UCSD (hence at most 999 frames and 999 videos per split). Generation uses only
NumPy and Pillow, is byte-for-byte reproducible for equal arguments, and is idempotent: a
second call with the same arguments finds the manifest and returns without rewriting anything.

Example:
    >>> from anomalib_vadproto.data import make_synthetic_ucsd
    >>> path = make_synthetic_ucsd("./datasets/synthetic_ucsd")  # doctest: +SKIP
    >>> from anomalib.data import UCSDped  # doctest: +SKIP
    >>> datamodule = UCSDped(root=path.parent, category=path.name)  # doctest: +SKIP

Command line::

    python -m anomalib_vadproto.data.synthetic ./datasets/synthetic_ucsd --n-test 6

"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["main", "make_synthetic_ucsd"]

_GENERATOR = "anomalib_vadproto.data.synthetic"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_MAX_INDEX = 999  # three-digit, zero-padded names: lexicographic order == numeric order

# Seed-sequence "streams": (seed, stream, video index) gives independent, stable sub-seeds, so
# e.g. Train001 does not change when n_train changes.
_STREAM_SCENE, _STREAM_TRAIN, _STREAM_TEST = 0, 1, 2

_SENSOR_NOISE_STD = 2.0
_ANOMALY_START, _ANOMALY_STOP = 0.40, 0.75  # fractions of the video length


# --------------------------------------------------------------------------------------------
# Drawing primitives
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    """A filled ellipse or axis-aligned rectangle, given relative to its object's centre.

    ``value`` is either a grey level or a small 2-D texture that is stretched over the shape's
    bounding box (so it moves with the object).
    """

    geom: str  # "ellipse" | "rect"
    dx: float
    dy: float
    a: float  # half width
    b: float  # half height
    value: float | np.ndarray


def _paint(frame: np.ndarray, region: np.ndarray | None, shape: _Shape, cx: float, cy: float) -> None:
    """Paint ``shape`` centred at ``(cx + dx, cy + dy)`` into ``frame``; OR its pixels into ``region``."""
    height, width = frame.shape
    sx, sy = cx + shape.dx, cy + shape.dy
    x0, x1 = max(math.floor(sx - shape.a), 0), min(math.ceil(sx + shape.a) + 1, width)
    y0, y1 = max(math.floor(sy - shape.b), 0), min(math.ceil(sy + shape.b) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    ddx = np.arange(x0, x1, dtype=np.float64)[None, :] - sx
    ddy = np.arange(y0, y1, dtype=np.float64)[:, None] - sy
    if shape.geom == "ellipse":
        inside = (ddx / shape.a) ** 2 + (ddy / shape.b) ** 2 <= 1.0
    else:
        inside = (np.abs(ddx) <= shape.a) & (np.abs(ddy) <= shape.b)
    window = frame[y0:y1, x0:x1]
    if isinstance(shape.value, np.ndarray):
        tex_h, tex_w = shape.value.shape
        iy = np.clip(((ddy + shape.b) / (2.0 * shape.b) * tex_h).astype(np.intp), 0, tex_h - 1)
        ix = np.clip(((ddx + shape.a) / (2.0 * shape.a) * tex_w).astype(np.intp), 0, tex_w - 1)
        window[inside] = shape.value[iy, ix][inside]
    else:
        window[inside] = shape.value
    if region is not None:
        region[y0:y1, x0:x1] |= inside


def _reflect(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold an unbounded 1-D path into ``[lo, hi]`` (a ball bouncing between two walls)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(p, (lo + hi) / 2.0)
    q = np.mod(p - lo, 2.0 * span)
    return lo + np.where(q > span, 2.0 * span - q, q)


@dataclass
class _Object:
    """A moving object: its shapes (drawn in order) and its centre in every frame."""

    shapes: list[_Shape]
    xs: np.ndarray
    ys: np.ndarray
    kind: str = "pedestrian"
    frames: range | None = None  # frames in which it is visible (None: all)

    def extent(self) -> tuple[float, float]:
        """Half width and half height of the union of the shapes around the centre."""
        ex = max(abs(s.dx) + s.a for s in self.shapes)
        ey = max(abs(s.dy) + s.b for s in self.shapes)
        return ex, ey


def _bounded_path(
    start: np.ndarray, steps: np.ndarray, extent: tuple[float, float], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate per-frame ``steps`` (N, 2) from ``start`` and bounce them inside the image."""
    path = start[None, :] + np.concatenate([np.zeros((1, 2)), np.cumsum(steps[:-1], axis=0)], axis=0)
    ex, ey = extent[0] + 1.0, extent[1] + 1.0
    xs = _reflect(path[:, 0], ex, width - 1.0 - ex)
    ys = _reflect(path[:, 1], ey, height - 1.0 - ey)
    return xs, ys


def _random_start(rng: np.random.Generator, extent: tuple[float, float], height: int, width: int) -> np.ndarray:
    ex, ey = extent[0] + 1.0, extent[1] + 1.0
    return np.array(
        [rng.uniform(ex, max(width - 1.0 - ex, ex)), rng.uniform(ey, max(height - 1.0 - ey, ey))],
        dtype=np.float64,
    )


# --------------------------------------------------------------------------------------------
# Scene and objects
# --------------------------------------------------------------------------------------------
def _make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Draw the static scene: gradient + fixed smooth texture + darker pavement stripes (float64)."""
    yy = np.linspace(0.0, 1.0, height)[:, None]
    xx = np.linspace(0.0, 1.0, width)[None, :]
    gx, gy = rng.uniform(30.0, 55.0), rng.uniform(15.0, 30.0)
    background = 100.0 + gx * xx + gy * yy + 8.0 * np.sin(np.pi * (xx + 0.5 * yy))

    raw = rng.standard_normal((height + 2, width + 2))
    smooth = sum(raw[i : i + height, j : j + width] for i in range(3) for j in range(3)) / 3.0  # std ~1
    background = background + 3.0 * smooth

    rows = np.arange(height, dtype=np.float64)[:, None]
    cols = np.arange(width, dtype=np.float64)[None, :]
    scale = min(height, width) / 120.0
    for _ in range(int(rng.integers(3, 6))):
        thickness = max(1.0, scale * rng.uniform(1.5, 3.5))
        darkening = rng.uniform(15.0, 30.0)
        slope = rng.uniform(-0.08, 0.08)
        if rng.random() < 0.7:  # mostly horizontal joints
            offset = rng.uniform(0.1, 0.9) * height
            distance = np.abs(rows - (offset + slope * (cols - width / 2.0)))
        else:
            offset = rng.uniform(0.1, 0.9) * width
            distance = np.abs(cols - (offset + slope * (rows - height / 2.0)))
        background = background - darkening * (distance <= thickness / 2.0)
    return np.clip(background, 20.0, 210.0)


def _pedestrian_shapes(rng: np.random.Generator, scale: float, size: float = 1.0) -> list[_Shape]:
    rx = max(1.0, size * scale * rng.uniform(3.0, 4.0))
    ry = max(2.0, size * scale * rng.uniform(7.0, 9.0))
    head = max(1.0, size * scale * rng.uniform(2.2, 2.8))
    body_value, head_value = rng.uniform(40.0, 75.0), rng.uniform(180.0, 215.0)
    return [
        _Shape("ellipse", 0.0, 0.0, rx, ry, body_value),
        _Shape("ellipse", 0.0, -(ry + 0.7 * head), head, head, head_value),
    ]


def _make_pedestrians(rng: np.random.Generator, n_frames: int, height: int, width: int) -> list[_Object]:
    """3 to 6 walkers, 0.5 to 1.5 px/frame, mostly horizontal or vertical, bouncing at borders."""
    scale = min(height, width) / 120.0
    pedestrians = []
    for _ in range(int(rng.integers(3, 7))):
        shapes = _pedestrian_shapes(rng, scale)
        speed = rng.uniform(0.5, 1.5) * (1.0 if rng.random() < 0.5 else -1.0)
        drift = rng.uniform(-0.15, 0.15)
        velocity = np.array([speed, drift]) if rng.random() < 0.5 else np.array([drift, speed])
        obj = _Object(shapes=shapes, xs=np.empty(0), ys=np.empty(0))
        start = _random_start(rng, obj.extent(), height, width)
        obj.xs, obj.ys = _bounded_path(start, np.tile(velocity, (n_frames, 1)), obj.extent(), height, width)
        pedestrians.append(obj)
    return pedestrians


def _anomaly_kind(video_index: int) -> str:
    """Alternate cart / (bright blob | runner) over the test videos (0-based index)."""
    if video_index % 2 == 0:
        return "cart"
    return "bright_blob" if video_index % 4 == 1 else "runner"


def _anomaly_interval(rng: np.random.Generator, n_frames: int) -> range:
    """Contiguous anomalous frames (0-based, stop exclusive), about 40 % to 75 % of the video."""
    jitter = max(1, n_frames // 20)
    start = round(_ANOMALY_START * n_frames) + int(rng.integers(-jitter, jitter + 1))
    stop = round(_ANOMALY_STOP * n_frames) + int(rng.integers(-jitter, jitter + 1))
    start = min(max(start, 1), n_frames - 3)
    stop = min(max(stop, start + 2), n_frames - 1)
    return range(start, stop)


def _make_anomaly(rng: np.random.Generator, kind: str, interval: range, height: int, width: int) -> _Object:
    """Create one anomalous object, visible during ``interval`` only (its path is defined up to there)."""
    scale = min(height, width) / 120.0
    n_frames = interval.stop + 1
    if kind == "cart":
        hw, hh = max(3.0, scale * rng.uniform(13.0, 17.0)), max(2.0, scale * rng.uniform(5.0, 7.0))
        wheel = max(1.0, 0.55 * hh)
        panels = rng.uniform(140.0, 250.0, size=(2, 8))
        shapes = [
            _Shape("rect", 0.0, 0.0, hw, hh, panels),
            _Shape("rect", 0.0, -0.45 * hh, 0.7 * hw, 0.22 * hh, 30.0),
            _Shape("ellipse", -0.6 * hw, hh, wheel, wheel, 20.0),
            _Shape("ellipse", 0.6 * hw, hh, wheel, wheel, 20.0),
        ]
        speed = rng.uniform(5.0, 9.0) * (1.0 if rng.random() < 0.5 else -1.0)
        steps = np.tile([speed, rng.uniform(-0.5, 0.5)], (n_frames, 1))
    elif kind == "bright_blob":
        radius = max(3.0, scale * rng.uniform(12.0, 16.0))
        texture = rng.uniform(205.0, 255.0, size=(8, 8))
        shapes = [_Shape("ellipse", 0.0, 0.0, 1.2 * radius, radius, texture)]
        angles = rng.uniform(0.0, 2.0 * np.pi, size=n_frames)
        speeds = rng.uniform(5.0, 8.0, size=n_frames)
        steps = np.stack([speeds * np.cos(angles), speeds * np.sin(angles)], axis=1)
    elif kind == "runner":
        shapes = _pedestrian_shapes(rng, scale, size=rng.uniform(1.0, 1.15))
        # zig-zag: a new random heading every 2 frames, 6 to 10 px/frame
        angles = np.repeat(rng.uniform(0.0, 2.0 * np.pi, size=n_frames // 2 + 1), 2)[:n_frames]
        speeds = rng.uniform(6.0, 10.0, size=n_frames)
        steps = np.stack([speeds * np.cos(angles), speeds * np.sin(angles)], axis=1)
    else:  # pragma: no cover - internal
        msg = f"unknown anomaly kind {kind!r}"
        raise ValueError(msg)
    obj = _Object(shapes=shapes, xs=np.empty(0), ys=np.empty(0), kind=kind, frames=interval)
    start = _random_start(rng, obj.extent(), height, width)
    obj.xs, obj.ys = _bounded_path(start, steps, obj.extent(), height, width)
    return obj


def _render_video(
    rng: np.random.Generator,
    background: np.ndarray,
    n_frames: int,
    anomaly_kind: str | None = None,
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray | None]], range | None]:
    """Plan one video and return a lazy ``(frame uint8, mask bool | None)`` iterator + interval."""
    height, width = background.shape
    pedestrians = _make_pedestrians(rng, n_frames, height, width)
    anomaly = None
    interval = None
    if anomaly_kind is not None:
        interval = _anomaly_interval(rng, n_frames)
        anomaly = _make_anomaly(rng, anomaly_kind, interval, height, width)

    def frames() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for t in range(n_frames):
            frame = background.copy()
            # painter's algorithm: pedestrians farther away (smaller feet y) first
            for ped in sorted(pedestrians, key=lambda p: p.ys[t]):
                for shape in ped.shapes:
                    _paint(frame, None, shape, ped.xs[t], ped.ys[t])
            mask = None
            if anomaly is not None:
                mask = np.zeros((height, width), dtype=bool)
                if t in interval:
                    for shape in anomaly.shapes:
                        _paint(frame, mask, shape, anomaly.xs[t], anomaly.ys[t])
            frame += _SENSOR_NOISE_STD * rng.standard_normal((height, width))
            yield np.clip(np.rint(frame), 0, 255).astype(np.uint8), mask

    return frames(), interval


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = f"{name} must be an integer, got {value!r}"
        raise ValueError(msg)
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        msg = f"{name} must be {bound}, got {value}"
        raise ValueError(msg)
    return value


def _validate(
    category: Any, n_train: Any, n_test: Any, n_frames: Any, height: Any, width: Any, seed: Any
) -> dict[str, Any]:
    if (
        not isinstance(category, str)
        or not category
        or category in {".", ".."}
        or any(sep in category for sep in ("/", "\\", os.sep))
    ):
        msg = f"category must be a plain, non-empty folder name, got {category!r}"
        raise ValueError(msg)
    return {
        "category": category,
        "n_train": _check_int("n_train", n_train, 1, _MAX_INDEX),
        "n_test": _check_int("n_test", n_test, 1, _MAX_INDEX),
        "n_frames": _check_int("n_frames", n_frames, 10, _MAX_INDEX),
        "height": _check_int("height", height, 32, 4096),
        "width": _check_int("width", width, 32, 4096),
        "seed": _check_int("seed", seed, 0),
    }


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_manifest(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def prepare_generated_root(
    root: Path,
    generator: str,
    format_version: int,
    params: dict[str, Any],
    folders: Sequence[str],
    overwrite: bool,
    layout: str | None = None,
) -> dict[str, Any] | None:
    """Decide whether a generator must (re)write ``root``; shared by the synthetic dataset generators.

    Returns ``None`` when ``root`` already holds this generator's complete data with the same
    ``params`` (and ``layout``). Otherwise clears ``folders``, writes an incomplete manifest that
    marks ``root`` as the generator's while it writes, and returns that manifest.

    Raises:
        FileExistsError: If ``folders`` hold data that no generator of ours wrote (no manifest), and
            ``overwrite`` is false.

    """
    manifest_path = root / _MANIFEST
    manifest = _read_manifest(manifest_path) if manifest_path.is_file() else None
    ours = manifest is not None and manifest.get("generator") == generator
    if (
        ours
        and not overwrite
        and manifest.get("complete") is True
        and manifest.get("format_version") == format_version
        and manifest.get("layout") == layout
        and manifest.get("params") == params
        and all((root / folder).is_dir() for folder in folders)
    ):
        return None
    if not ours and not overwrite and any((root / folder).exists() for folder in folders):
        msg = (
            f"{root} already holds {'/'.join(folders)} data that this generator did not write (no {_MANIFEST});"
            " refusing to delete it. Choose another root or pass overwrite=True."
        )
        raise FileExistsError(msg)
    for folder in folders:
        if (root / folder).is_dir():
            shutil.rmtree(root / folder)
    root.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"generator": generator, "format_version": format_version, "complete": False}
    if layout is not None:
        record["layout"] = layout
    record["params"] = params
    _write_manifest(manifest_path, record)
    return record


def _generate(
    root: str | os.PathLike[str],
    category: str = "synthetic",
    n_train: int = 4,
    n_test: int = 4,
    n_frames: int = 40,
    height: int = 120,
    width: int = 180,
    seed: int = 0,
    overwrite: bool = False,
) -> tuple[Path, bool]:
    """Do the work of :func:`make_synthetic_ucsd`; also return whether files were (re)written."""
    params = _validate(category, n_train, n_test, n_frames, height, width, seed)
    target = Path(root) / params["category"]
    record = prepare_generated_root(target, _GENERATOR, _FORMAT_VERSION, params, ("Train", "Test"), overwrite)
    if record is None:
        return target, False
    manifest_path = target / _MANIFEST

    n_frames, height, width, seed = params["n_frames"], params["height"], params["width"], params["seed"]
    background = _make_background(np.random.default_rng([seed, _STREAM_SCENE]), height, width)

    for index in range(params["n_train"]):
        folder = target / "Train" / f"Train{index + 1:03d}"
        folder.mkdir(parents=True)
        frames, _ = _render_video(np.random.default_rng([seed, _STREAM_TRAIN, index]), background, n_frames)
        for t, (frame, _mask) in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{t + 1:03d}.tif", format="TIFF")

    test_videos: dict[str, Any] = {}
    for index in range(params["n_test"]):
        name = f"Test{index + 1:03d}"
        folder, gt_folder = target / "Test" / name, target / "Test" / f"{name}_gt"
        folder.mkdir(parents=True)
        gt_folder.mkdir(parents=True)
        kind = _anomaly_kind(index)
        rng = np.random.default_rng([seed, _STREAM_TEST, index])
        frames, interval = _render_video(rng, background, n_frames, anomaly_kind=kind)
        for t, (frame, mask) in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{t + 1:03d}.tif", format="TIFF")
            Image.fromarray(mask.astype(np.uint8) * 255).save(gt_folder / f"{t + 1:03d}.bmp", format="BMP")
        test_videos[name] = {
            "anomaly": kind,
            "first_anomalous_frame": interval.start + 1,  # 1-based, inclusive (file names)
            "last_anomalous_frame": interval.stop,
        }

    record["test_videos"] = test_videos
    record["complete"] = True
    _write_manifest(manifest_path, record)
    return target, True


def make_synthetic_ucsd(
    root: str | os.PathLike[str],
    category: str = "synthetic",
    n_train: int = 4,
    n_test: int = 4,
    n_frames: int = 40,
    height: int = 120,
    width: int = 180,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a small synthetic video anomaly dataset in the UCSD Pedestrian folder layout.

    The result can be loaded directly with
    ``anomalib.data.UCSDped(root=root, category=category)``; ``prepare_data`` then finds the
    folder and downloads nothing. See the module docstring for what the videos show.

    Same arguments give byte-identical files. A ``manifest.json`` in ``root/category`` records
    the parameters and, per test video, the anomaly kind and its 1-based inclusive frame range.
    If that manifest matches the arguments (and ``overwrite`` is False) nothing is rewritten;
    if it differs, the ``Train`` and ``Test`` folders of the category are deleted and
    regenerated. Other files in ``root/category`` are left alone.

    Args:
        root: Dataset root (the ``root`` given to ``UCSDped``); created if missing.
        category: Sub-folder name (the ``category`` given to ``UCSDped``).
        n_train: Number of normal training videos (1 to 999).
        n_test: Number of test videos, each with one anomalous interval (1 to 999).
        n_frames: Frames per video (10 to 999).
        height: Frame height in pixels (32 to 4096).
        width: Frame width in pixels (32 to 4096).
        seed: Non-negative random seed; each video uses its own sub-seed derived from it.
        overwrite: Regenerate even if a matching dataset already exists.

    Returns:
        Path: ``root / category``.

    Raises:
        ValueError: If an argument is out of range or of the wrong type.
        FileExistsError: If ``root/category`` already holds ``Train``/``Test`` data without this
            generator's manifest (e.g. the real UCSD dataset) and ``overwrite`` is False.

    Example:
        >>> path = make_synthetic_ucsd("datasets/vad_data", n_test=2)  # doctest: +SKIP
        >>> sorted(p.name for p in (path / "Test").iterdir())  # doctest: +SKIP
        ['Test001', 'Test001_gt', 'Test002', 'Test002_gt']

    """
    path, _ = _generate(root, category, n_train, n_test, n_frames, height, width, seed, overwrite)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m anomalib_vadproto.data.synthetic ROOT [options]``.

    Args:
        argv: Command-line arguments without the program name; ``None`` uses ``sys.argv[1:]``.

    Returns:
        int: Process exit status (0 on success; argument errors exit with status 2).

    """
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_vadproto.data.synthetic",
        description="Write a deterministic synthetic video anomaly dataset in the UCSD Pedestrian layout.",
    )
    parser.add_argument("root", type=Path, help="dataset root (the folder that will contain CATEGORY)")
    parser.add_argument("--category", default="synthetic", help="sub-folder name (default: %(default)s)")
    parser.add_argument("--n-train", type=int, default=4, help="training videos (default: %(default)s)")
    parser.add_argument("--n-test", type=int, default=4, help="test videos (default: %(default)s)")
    parser.add_argument("--n-frames", type=int, default=40, help="frames per video (default: %(default)s)")
    parser.add_argument("--height", type=int, default=120, help="frame height (default: %(default)s)")
    parser.add_argument("--width", type=int, default=180, help="frame width (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if an identical dataset exists")
    args = parser.parse_args(argv)
    try:
        path, written = _generate(
            args.root,
            category=args.category,
            n_train=args.n_train,
            n_test=args.n_test,
            n_frames=args.n_frames,
            height=args.height,
            width=args.width,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    if written:
        print(f"Wrote synthetic UCSD-style dataset to {path.resolve()}")
    else:
        print(f"Synthetic UCSD-style dataset already up to date at {path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
