"""Synthetic video anomaly datasets in the CUHK Avenue and ShanghaiTech layouts (video files).

The scenes, walkers and anomalies are those of :mod:`anomalib_vadproto.data.synthetic` (the
UCSD-layout generator); here each video is rendered in colour (a fixed tint per scene, so a swapped
colour channel shows) and written as a video file with PyAV, in the layouts anomalib's ``Avenue``
and ``ShanghaiTech`` datamodules (and the plugin's :class:`~anomalib_vadproto.LocalAvenue` and
:class:`~anomalib_vadproto.LocalShanghaiTech`) read::

    avenue root/                                   shanghaitech root/
    ├── manifest.json                              ├── manifest.json
    ├── training_videos/01.avi ...                 ├── training/videos/01_001.avi ...   (SS_NNN.avi)
    ├── testing_videos/01.avi ...                  └── testing/
    └── ground_truth_demo/testing_label_mask/          ├── frames/01_0001/000.jpg ...   (SS_NNNN/)
        ├── 1_label.mat  (volLabel: 1 x N cell)        ├── test_pixel_mask/01_0001.npy  (N, H, W) 0/1
        └── 1_label/000.png ...  (mask_format="png")   └── test_frame_mask/01_0001.npy  (N,) 0/1

Every test video has one anomalous interval in its middle (about 40 % to 75 % of its frames) and
normal frames before and after it; masks are 1 exactly on the anomalous object. ShanghaiTech data
can hold several scenes (``scenes=(1, 2)``), each with its own background and tint. Videos are
``mjpeg`` by default (like Avenue's files); ``codec="ffv1"`` is lossless, so decoded frames equal
:func:`render_synthetic_video`'s exactly (tests use it); ``"mpeg4"`` has inter frames.

:func:`make_synthetic_video_folder` writes the plain layout of :class:`~anomalib_vadproto.VideoFolder`
(your own recordings): ``train/`` videos as ``.mp4`` (MPEG-4), ``.avi`` (MJPEG) and a folder of PNG
frames, ``test/`` videos, and in ``ground_truth/`` one label form per test video (frame labels as
``.npy``, ``.csv`` or ``.txt`` ranges; masks as a video, a PNG folder, ``.npy`` or ``.mat``), at a
camera's 30 fps by default.

Same arguments give the same frames; a ``manifest.json`` records them, and a second call with the
same arguments returns without writing anything.

Example:
    >>> from anomalib_vadproto.data.synthetic_video import make_synthetic_avenue
    >>> root = make_synthetic_avenue("./datasets/synthetic_avenue")  # doctest: +SKIP
    >>> from anomalib_vadproto import LocalAvenue  # doctest: +SKIP
    >>> datamodule = LocalAvenue(root=root, gt_dir=root / "ground_truth_demo")  # doctest: +SKIP

Command line::

    python -m anomalib_vadproto.data.synthetic_video avenue ./datasets/synthetic_avenue
    python -m anomalib_vadproto.data.synthetic_video shanghaitech ./datasets/synthetic_sht --scenes 1 2 3
    python -m anomalib_vadproto.data.synthetic_video video_folder ./my_videos --label-forms csv npy mask_video

"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anomalib_vadproto.data.synthetic import (
    _STREAM_SCENE,
    _STREAM_TEST,
    _STREAM_TRAIN,
    _anomaly_kind,
    _check_int,
    _make_background,
    _render_video,
    _write_manifest,
    prepare_generated_root,
)
from anomalib_vadproto.errors import check_choice

__all__ = [
    "LABEL_FORMS",
    "SyntheticVideo",
    "main",
    "make_synthetic_avenue",
    "make_synthetic_shanghaitech",
    "make_synthetic_video_folder",
    "render_synthetic_video",
]

_GENERATOR = "anomalib_vadproto.data.synthetic_video"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_CODECS = ("mjpeg", "mpeg4", "ffv1")
_JPEG_QUALITY = 95
_FPS = 25
#: Ground-truth forms of :func:`make_synthetic_video_folder`, one per test video (``none``: no ground truth).
LABEL_FORMS = ("npy", "csv", "txt", "mask_video", "mask_folder", "mask_npy", "mask_mat", "none")
#: Video forms of its training videos: ``.mp4`` (MPEG-4), ``.avi`` (MJPEG) or a folder of PNG frames.
TRAIN_FORMS = ("mp4", "avi", "frames")
_CONTAINER_CODECS = {"mp4": "mpeg4", "avi": "mjpeg"}


@dataclass(frozen=True)
class SyntheticVideo:
    """One rendered video.

    Attributes:
        frames: ``uint8`` RGB frames ``(N, H, W, 3)``.
        masks: Boolean anomaly masks ``(N, H, W)`` (test videos), else ``None``.
        anomalous: The anomalous frames (0-based, stop exclusive) of a test video, else ``None``.
        kind: The anomaly kind of a test video (``"cart"``, ``"bright_blob"``, ``"runner"``), else ``None``.

    """

    frames: np.ndarray
    masks: np.ndarray | None
    anomalous: range | None
    kind: str | None


def _tint(grey: np.ndarray, scene: int) -> np.ndarray:
    """Colour a grey frame with the scene's fixed tint (R, G and B differ for every grey level > 0)."""
    gains = np.array([1.0, 0.75 - 0.02 * (scene % 4), 0.5 + 0.03 * (scene % 3)])
    offsets = np.array([0.0, 20.0, 60.0])
    rgb = grey.astype(np.float64)[..., None] * gains + offsets
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def render_synthetic_video(
    split: str,
    index: int,
    n_frames: int = 20,
    height: int = 64,
    width: int = 96,
    seed: int = 0,
    scene: int = 0,
) -> SyntheticVideo:
    """Render one video of a synthetic dataset (what the generators write, before encoding).

    Args:
        split: ``"train"`` (normal only) or ``"test"`` (one anomalous interval, masks).
        index: 0-based video index within its split (and scene).
        n_frames: Frames per video.
        height: Frame height.
        width: Frame width.
        seed: Dataset seed.
        scene: Scene number (its background and tint); Avenue data use scene 0.

    Returns:
        SyntheticVideo: Frames, masks and the anomalous interval.

    Raises:
        ValueError: For an unknown split.

    """
    check_choice("split", split, ("train", "test"))
    background = _make_background(np.random.default_rng([seed, _STREAM_SCENE, scene]), height, width)
    stream = _STREAM_TRAIN if split == "train" else _STREAM_TEST
    kind = _anomaly_kind(index) if split == "test" else None
    rendered, interval = _render_video(
        np.random.default_rng([seed, stream, scene, index]), background, n_frames, anomaly_kind=kind
    )
    frames, masks = zip(*rendered, strict=True)
    return SyntheticVideo(
        frames=np.stack([_tint(frame, scene) for frame in frames]),
        masks=np.stack(masks) if kind is not None else None,
        anomalous=interval,
        kind=kind,
    )


def _check_common(n_train: Any, n_test: Any, n_frames: Any, height: Any, width: Any, seed: Any, codec: Any) -> dict:  # noqa: ANN401
    check_choice("codec", codec, _CODECS)
    return {
        "n_train": _check_int("n_train", n_train, 1, 99),
        "n_test": _check_int("n_test", n_test, 1, 99),
        "n_frames": _check_int("n_frames", n_frames, 10, 999),
        "height": _check_int("height", height, 32, 4096),
        "width": _check_int("width", width, 32, 4096),
        "seed": _check_int("seed", seed, 0),
        "codec": codec,
    }


def _prepare_root(root: Path, layout: str, params: dict, folders: Sequence[str], overwrite: bool) -> dict | None:
    """Return ``None`` if ``root`` already holds this dataset, else clear our folders and return a manifest."""
    return prepare_generated_root(root, _GENERATOR, _FORMAT_VERSION, params, folders, overwrite, layout=layout)


def _interval_record(video: SyntheticVideo) -> dict[str, Any]:
    assert video.anomalous is not None  # noqa: S101 - test videos only
    return {
        "anomaly": video.kind,
        "first_anomalous_frame": video.anomalous.start,  # 0-based, inclusive
        "last_anomalous_frame": video.anomalous.stop - 1,
    }


def _write_mat_masks(path: Path, masks: np.ndarray) -> None:
    """Write Avenue's ``volLabel``: a 1 x N MATLAB cell array of ``(H, W)`` 0/1 ``uint8`` masks."""
    import scipy.io

    cell = np.empty((1, len(masks)), dtype=object)
    for t, mask in enumerate(masks):
        cell[0, t] = mask.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"volLabel": cell})


def make_synthetic_avenue(
    root: str | os.PathLike[str],
    n_train: int = 2,
    n_test: int = 2,
    n_frames: int = 20,
    height: int = 64,
    width: int = 96,
    seed: int = 0,
    codec: str = "mjpeg",
    mask_format: str = "mat",
    overwrite: bool = False,
) -> Path:
    """Write a small synthetic dataset in CUHK Avenue's layout.

    Videos are ``root/training_videos/NN.avi`` and ``root/testing_videos/NN.avi``; test masks are in
    ``root/ground_truth_demo/testing_label_mask`` (anomalib's default ``gt_dir``), one
    ``N_label.mat`` (``volLabel`` cell array, as Avenue ships them) or one ``N_label/`` folder of
    PNGs (``000.png``, ..., as anomalib's conversion writes them) per test video.

    Args:
        root: Dataset root (``root`` of ``LocalAvenue``/``Avenue``); created if missing.
        n_train: Training videos (1 to 99).
        n_test: Test videos (1 to 99).
        n_frames: Frames per video (10 to 999).
        height: Frame height (32 to 4096).
        width: Frame width (32 to 4096).
        seed: Non-negative seed.
        codec: ``"mjpeg"``, ``"mpeg4"`` or ``"ffv1"`` (lossless).
        mask_format: ``"mat"`` or ``"png"``.
        overwrite: Rewrite even if a matching dataset exists.

    Returns:
        Path: ``root``.

    Raises:
        ValueError: For an argument out of range.
        FileExistsError: If ``root`` holds Avenue folders this generator did not write (and not ``overwrite``).

    """
    params = _check_common(n_train, n_test, n_frames, height, width, seed, codec)
    check_choice("mask_format", mask_format, ("mat", "png"))
    params["mask_format"] = mask_format
    root = Path(root)
    folders = ("training_videos", "testing_videos", "ground_truth_demo")
    record = _prepare_root(root, "avenue", params, folders, overwrite)
    if record is None:
        return root

    from anomalib_vadproto.data.video_io import write_video

    size = {k: params[k] for k in ("n_frames", "height", "width", "seed")}
    for index in range(params["n_train"]):
        video = render_synthetic_video("train", index, **size)
        write_video(root / "training_videos" / f"{index + 1:02d}.avi", video.frames, fps=_FPS, codec=codec)
    masks_dir = root / "ground_truth_demo" / "testing_label_mask"
    masks_dir.mkdir(parents=True, exist_ok=True)
    test_videos = {}
    for index in range(params["n_test"]):
        video = render_synthetic_video("test", index, **size)
        write_video(root / "testing_videos" / f"{index + 1:02d}.avi", video.frames, fps=_FPS, codec=codec)
        assert video.masks is not None  # noqa: S101 - test videos have masks
        if mask_format == "mat":
            _write_mat_masks(masks_dir / f"{index + 1}_label.mat", video.masks)
        else:
            folder = masks_dir / f"{index + 1}_label"
            folder.mkdir()
            for t, mask in enumerate(video.masks):
                Image.fromarray(mask.astype(np.uint8)).save(folder / f"{t:03d}.png")
        test_videos[f"{index + 1:02d}"] = _interval_record(video)
    record.update(test_videos=test_videos, complete=True)
    _write_manifest(root / _MANIFEST, record)
    return root


def make_synthetic_shanghaitech(
    root: str | os.PathLike[str],
    scenes: Sequence[int] = (1, 2),
    n_train: int = 2,
    n_test: int = 2,
    n_frames: int = 20,
    height: int = 64,
    width: int = 96,
    seed: int = 0,
    codec: str = "mjpeg",
    overwrite: bool = False,
) -> Path:
    """Write a small synthetic dataset in ShanghaiTech Campus's layout.

    Per scene ``SS``: training videos ``root/training/videos/SS_NNN.avi`` and test videos as JPEG
    frame folders ``root/testing/frames/SS_NNNN/NNN.jpg`` (0-based, quality 95), with pixel masks
    ``root/testing/test_pixel_mask/SS_NNNN.npy`` (``(N, H, W)`` ``uint8`` 0/1) and frame labels
    ``root/testing/test_frame_mask/SS_NNNN.npy`` (``(N,)``), as the real dataset ships them.

    Args:
        root: Dataset root (``root`` of ``LocalShanghaiTech``/``ShanghaiTech``); created if missing.
        scenes: Scene numbers (1 to 99), e.g. ``(1, 2)``.
        n_train: Training videos per scene (1 to 99).
        n_test: Test videos per scene (1 to 99).
        n_frames: Frames per video (10 to 999).
        height: Frame height (32 to 4096).
        width: Frame width (32 to 4096).
        seed: Non-negative seed.
        codec: Codec of the training videos: ``"mjpeg"``, ``"mpeg4"`` or ``"ffv1"`` (lossless).
        overwrite: Rewrite even if a matching dataset exists.

    Returns:
        Path: ``root``.

    Raises:
        ValueError: For an argument out of range.
        FileExistsError: If ``root`` holds ``training``/``testing`` folders this generator did not
            write (and not ``overwrite``).

    """
    params = _check_common(n_train, n_test, n_frames, height, width, seed, codec)
    scene_list = sorted({_check_int("scene", scene, 1, 99) for scene in scenes})
    if not scene_list:
        msg = "scenes must name at least one scene"
        raise ValueError(msg)
    params["scenes"] = scene_list
    root = Path(root)
    record = _prepare_root(root, "shanghaitech", params, ("training", "testing"), overwrite)
    if record is None:
        return root

    from anomalib_vadproto.data.video_io import write_video

    size = {k: params[k] for k in ("n_frames", "height", "width", "seed")}
    frames_dir, pixel_dir, frame_dir = (
        root / "testing" / sub for sub in ("frames", "test_pixel_mask", "test_frame_mask")
    )
    for directory in (pixel_dir, frame_dir):
        directory.mkdir(parents=True, exist_ok=True)
    test_videos = {}
    for scene in scene_list:
        for index in range(params["n_train"]):
            video = render_synthetic_video("train", index, scene=scene, **size)
            path = root / "training" / "videos" / f"{scene:02d}_{index + 1:03d}.avi"
            write_video(path, video.frames, fps=_FPS, codec=codec)
        for index in range(params["n_test"]):
            video = render_synthetic_video("test", index, scene=scene, **size)
            assert video.masks is not None  # noqa: S101 - test videos have masks
            name = f"{scene:02d}_{index + 1:04d}"
            (frames_dir / name).mkdir(parents=True)
            for t, frame in enumerate(video.frames):
                Image.fromarray(frame).save(frames_dir / name / f"{t:03d}.jpg", quality=_JPEG_QUALITY)
            np.save(pixel_dir / f"{name}.npy", video.masks.astype(np.uint8))
            np.save(frame_dir / f"{name}.npy", video.masks.any(axis=(1, 2)).astype(np.uint8))
            test_videos[name] = _interval_record(video)
    record.update(test_videos=test_videos, complete=True)
    _write_manifest(root / _MANIFEST, record)
    return root


def _write_folder_video(path: Path, frames: np.ndarray, form: str, fps: int) -> None:
    """Write one video of the video-folder layout: ``path.<form>``, or PNG frames in the folder ``path``."""
    from anomalib_vadproto.data.video_io import write_video

    if form == "frames":
        path.mkdir(parents=True)
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(path / f"{t:03d}.png")
    else:
        write_video(path.with_name(f"{path.name}.{form}"), frames, fps=fps, codec=_CONTAINER_CODECS[form])


def _write_ground_truth(gt_dir: Path, stem: str, video: SyntheticVideo, form: str, fps: int) -> None:
    """Write one test video's ground truth in ``form`` (one of :data:`LABEL_FORMS`)."""
    assert video.masks is not None and video.anomalous is not None  # noqa: S101 - test videos have both
    first, last = video.anomalous.start, video.anomalous.stop - 1  # 0-based, inclusive
    masks = video.masks.astype(np.uint8)
    if form == "npy":
        np.save(gt_dir / f"{stem}.npy", masks.any(axis=(1, 2)).astype(np.uint8))
    elif form == "csv":
        (gt_dir / f"{stem}.csv").write_text(f"start,end\n{first},{last}\n")
    elif form == "txt":
        (gt_dir / f"{stem}.txt").write_text(f"# anomalous frames: 0-based, both ends included\n{first}-{last}\n")
    elif form == "mask_video":
        _write_folder_video(gt_dir / f"{stem}_mask", masks * 255, "mp4", fps)
    elif form == "mask_folder":
        (gt_dir / f"{stem}_mask").mkdir()
        for t, mask in enumerate(masks):
            Image.fromarray(mask).save(gt_dir / f"{stem}_mask" / f"{t:03d}.png")
    elif form == "mask_npy":
        np.save(gt_dir / f"{stem}_mask.npy", masks)
    elif form == "mask_mat":
        import scipy.io

        scipy.io.savemat(gt_dir / f"{stem}_mask.mat", {"masks": np.moveaxis(masks, 0, 2)})  # MATLAB's (H, W, N)


def make_synthetic_video_folder(
    root: str | os.PathLike[str],
    n_train: int = 3,
    n_test: int | None = None,
    n_frames: int = 40,
    height: int = 64,
    width: int = 96,
    fps: int = 30,
    seed: int = 0,
    label_forms: Sequence[str] = ("csv", "txt", "npy", "mask_video"),
    train_forms: Sequence[str] = TRAIN_FORMS,
    overwrite: bool = False,
) -> Path:
    """Write a small synthetic dataset in the layout of :class:`~anomalib_vadproto.VideoFolder`.

    Training videos ``root/train/normal_NN.<form>`` cycle through ``train_forms`` (``mp4``: MPEG-4,
    ``avi``: MJPEG, ``frames``: a folder ``normal_NN/`` of ``000.png`` ...); test videos
    ``root/test/test_NN.mp4`` and ``.avi`` alternate, each with one anomalous interval, and their
    ground truth in ``root/ground_truth/`` cycles through ``label_forms``:

    * ``npy``: ``test_NN.npy``, one 0/1 per frame; ``csv``: ``test_NN.csv`` with a ``start,end`` header
      and one row; ``txt``: ``test_NN.txt`` holding ``first-last``; (ranges 0-based, both ends included);
    * ``mask_video``: ``test_NN_mask.mp4`` (white = anomalous); ``mask_folder``: ``test_NN_mask/000.png``
      ... (0/1); ``mask_npy``: ``test_NN_mask.npy`` ``(N, H, W)``; ``mask_mat``: ``test_NN_mask.mat``
      holding ``masks`` ``(H, W, N)`` as MATLAB stores a volume;
    * ``none``: no ground truth (a test set of ``none`` only is scored as prediction only).

    ``manifest.json`` records each test video's anomalous frames and label form.

    Args:
        root: Dataset root (``root`` of ``VideoFolder``); created if missing.
        n_train: Training videos (2 to 99).
        n_test: Test videos (1 to 99); ``None``: one per label form.
        n_frames: Frames per video (10 to 999).
        height: Frame height (32 to 4096).
        width: Frame width (32 to 4096).
        fps: Frame rate the videos are written at (1 to 240).
        seed: Non-negative seed.
        label_forms: Ground-truth forms (:data:`LABEL_FORMS`), cycled over the test videos.
        train_forms: Training video forms (:data:`TRAIN_FORMS`), cycled over the training videos.
        overwrite: Rewrite even if a matching dataset exists.

    Returns:
        Path: ``root``.

    Raises:
        ValueError: For an argument out of range or an unknown form.
        FileExistsError: If ``root`` holds ``train``/``test``/``ground_truth`` folders this generator did
            not write (and not ``overwrite``).

    """
    forms = [check_choice("label_forms", form, LABEL_FORMS) for form in label_forms]
    trains = [check_choice("train_forms", form, TRAIN_FORMS) for form in train_forms]
    if not forms or not trains:
        msg = "label_forms and train_forms must name at least one form each"
        raise ValueError(msg)
    params = _check_common(
        n_train, n_test if n_test is not None else len(forms), n_frames, height, width, seed, "mjpeg"
    )
    params.update(
        n_train=_check_int("n_train", n_train, 2, 99),
        fps=_check_int("fps", fps, 1, 240),
        label_forms=forms,
        train_forms=trains,
    )
    del params["codec"]
    root = Path(root)
    record = _prepare_root(root, "video_folder", params, ("train", "test", "ground_truth"), overwrite)
    if record is None:
        return root
    size = {k: params[k] for k in ("n_frames", "height", "width", "seed")}
    for index in range(params["n_train"]):
        video = render_synthetic_video("train", index, **size)
        _write_folder_video(root / "train" / f"normal_{index + 1:02d}", video.frames, trains[index % len(trains)], fps)
    gt_dir = root / "ground_truth"
    gt_dir.mkdir(parents=True, exist_ok=True)
    test_videos = {}
    for index in range(params["n_test"]):
        video = render_synthetic_video("test", index, **size)
        stem, form = f"test_{index + 1:02d}", forms[index % len(forms)]
        _write_folder_video(root / "test" / stem, video.frames, ("mp4", "avi")[index % 2], fps)
        if form != "none":
            _write_ground_truth(gt_dir, stem, video, form, fps)
        test_videos[stem] = {**_interval_record(video), "label_form": form}
    record.update(test_videos=test_videos, complete=True)
    _write_manifest(root / _MANIFEST, record)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m anomalib_vadproto.data.synthetic_video LAYOUT ROOT [options]``.

    ``LAYOUT`` is ``avenue``, ``shanghaitech`` or ``video_folder``.

    Args:
        argv: Arguments without the program name; ``None`` uses ``sys.argv[1:]``.

    Returns:
        int: Exit status (argument errors exit with status 2).

    """
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_vadproto.data.synthetic_video",
        description="Write a synthetic video anomaly dataset in the Avenue, ShanghaiTech or VideoFolder layout.",
    )
    parser.add_argument("layout", choices=("avenue", "shanghaitech", "video_folder"))
    parser.add_argument("root", type=Path, help="dataset root")
    parser.add_argument("--n-train", type=int, help="training videos (per scene) (default: 2; video_folder: 3)")
    parser.add_argument(
        "--n-test", type=int, help="test videos (per scene) (default: 2; video_folder: one per label form)"
    )
    parser.add_argument("--n-frames", type=int, help="frames per video (default: 20; video_folder: 40)")
    parser.add_argument("--height", type=int, default=64, help="frame height (default: %(default)s)")
    parser.add_argument("--width", type=int, default=96, help="frame width (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--codec", choices=_CODECS, default="mjpeg", help="video codec (default: %(default)s)")
    parser.add_argument("--scenes", type=int, nargs="+", default=[1, 2], help="shanghaitech scenes (default: 1 2)")
    parser.add_argument("--mask-format", choices=("mat", "png"), default="mat", help="avenue masks (default: mat)")
    parser.add_argument("--fps", type=int, default=30, help="video_folder: recording frame rate (default: 30)")
    parser.add_argument(
        "--label-forms",
        nargs="+",
        choices=LABEL_FORMS,
        default=["csv", "txt", "npy", "mask_video"],
        help="video_folder: ground-truth form of each test video, cycled (default: csv txt npy mask_video)",
    )
    parser.add_argument("--overwrite", action="store_true", help="rewrite even if an identical dataset exists")
    args = parser.parse_args(argv)
    common = {"height": args.height, "width": args.width, "seed": args.seed, "overwrite": args.overwrite}
    try:
        if args.layout == "video_folder":
            path = make_synthetic_video_folder(
                args.root,
                n_train=3 if args.n_train is None else args.n_train,
                n_test=args.n_test,
                n_frames=40 if args.n_frames is None else args.n_frames,
                fps=args.fps,
                label_forms=args.label_forms,
                **common,
            )
        else:
            common.update(
                n_train=2 if args.n_train is None else args.n_train,
                n_test=2 if args.n_test is None else args.n_test,
                n_frames=20 if args.n_frames is None else args.n_frames,
                codec=args.codec,
            )
            if args.layout == "avenue":
                path = make_synthetic_avenue(args.root, mask_format=args.mask_format, **common)
            else:
                path = make_synthetic_shanghaitech(args.root, scenes=args.scenes, **common)
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    print(f"Synthetic {args.layout} dataset at {path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
