"""CUHK Avenue and ShanghaiTech datamodules that decode with PyAV: no torchcodec, no download.

anomalib 2.7's ``Avenue`` and ``ShanghaiTech`` read ``.avi`` files through torchvision's
``VideoClips``, which needs torchcodec and system FFmpeg libraries under torchvision 0.29. The
datamodules here are the same datamodules (subclasses, same arguments, same on-disk layouts, the
same ``VideoBatch`` clips) with the video files decoded by PyAV (:mod:`.video_io`), which bundles
its own FFmpeg. They also fix the sharp edges of anomalib's readers:

* Avenue ``.mat`` masks are returned as tensors (anomalib's indexer returns NumPy arrays, which
  crash the dataset unless the masks were converted to PNG folders after a download).
* Avenue's ``root/**/*.avi`` search counts ``ground_truth_demo/testing_videos`` (inside the default
  ``gt_dir``) as a second copy of every test video; duplicates are dropped.
* ShanghaiTech training videos are read where the dataset ships them (``training/videos``), so
  anomalib's OpenCV re-encoding into ``training/converted_videos`` is not needed (an existing
  ``converted_videos`` folder is used when ``videos`` is absent).
* ShanghaiTech can pool scenes: ``scene="all"`` (or ``None``) reads all 13 scenes together (the
  standard protocol), ``scene=[1, 3]`` a subset. Every clip keeps its own ``video_path``, so the
  papers' per-video protocol groups frames by video as before.
* A missing dataset raises ``FileNotFoundError`` naming what is expected (nothing is downloaded);
  a video file that cannot be decoded raises :class:`~.video_io.VideoReadError` naming the file.

Frames are numbered as torchcodec numbers them, so clips (``clip_length_in_frames``,
``frames_between_clips``, ``target_frame``) cover the same frames as with anomalib's classes.
``cache_frames=True`` decodes each video once and keeps it in memory (as
:class:`~anomalib_vadproto.LocalUCSDped` does); without it, clips read in order (test, validation)
still decode every frame once, and shuffled training clips seek to the nearest key frame.
``device_clips=True`` keeps the training frames as one ``uint8`` tensor on the training device and
cuts the training batches there (:mod:`~anomalib_vadproto.data.device_clips`).

Example:
    >>> from anomalib_vadproto import LocalAvenue, LocalShanghaiTech  # doctest: +SKIP
    >>> avenue = LocalAvenue(root="datasets/avenue", gt_dir="datasets/avenue/ground_truth_demo",
    ...                      clip_length_in_frames=5, num_workers=0)  # doctest: +SKIP
    >>> sht = LocalShanghaiTech(root="datasets/shanghaitech", scene="all", clip_length_in_frames=5)  # doctest: +SKIP

"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anomalib.data import Avenue, ShanghaiTech
from anomalib.data.datasets.base.video import AnomalibVideoDataset, VideoTargetFrame
from anomalib.data.datasets.video.avenue import make_avenue_dataset
from anomalib.data.datasets.video.shanghaitech import ShanghaiTechTestClipsIndexer
from anomalib.data.utils import Split, ValSplitMode
from anomalib.data.utils.video import ClipsIndexer
from torchvision.transforms.v2 import Transform

from anomalib_vadproto.data.datamodules import (
    ClipReaderMixin,
    enum_arguments,
    fill_caches_for_workers,
    read_image_files,
)
from anomalib_vadproto.data.device_clips import DeviceClipsMixin
from anomalib_vadproto.data.video_io import VideoIndex, VideoReader, index_video, read_video
from anomalib_vadproto.errors import DatasetLayoutError

__all__ = [
    "AvenueVideoClipsIndexer",
    "LocalAvenue",
    "LocalAvenueDataset",
    "LocalShanghaiTech",
    "LocalShanghaiTechDataset",
    "PyAVClipsIndexer",
    "ShanghaiTechFramesClipsIndexer",
    "check_avenue_layout",
    "check_shanghaitech_layout",
    "load_avenue_mat_masks",
    "parse_scenes",
]

_SYNTHETIC_HINT = "For synthetic data in this layout: python -m anomalib_vadproto.data.synthetic_video {} <root>."


# ================================================================================================
# Indexers
# ================================================================================================
class PyAVClipsIndexer(ClipReaderMixin, ClipsIndexer):
    """anomalib ``ClipsIndexer`` for video files, decoded with PyAV instead of torchcodec.

    Each file is indexed once (its packets are listed, nothing is decoded); frame ``i`` is the
    ``i``-th frame in display order, as with torchcodec. Videos without masks only (the mask reader
    raises); subclasses add masks.

    Args:
        video_paths: Video files.
        mask_paths: Per video, its mask source, or ``""`` for none.
        clip_length_in_frames: Frames per clip.
        frames_between_clips: Stride between clip starts.
        cache_frames: Decode each video once and keep its frames in memory.

    """

    def __init__(
        self,
        video_paths: list[str],
        mask_paths: list[str],
        clip_length_in_frames: int = 2,
        frames_between_clips: int = 1,
        cache_frames: bool = False,
    ) -> None:
        self._reader: VideoReader | None = None
        super().__init__(
            video_paths=video_paths,
            mask_paths=mask_paths,
            clip_length_in_frames=clip_length_in_frames,
            frames_between_clips=frames_between_clips,
            cache_frames=cache_frames,
        )

    def _compute_frame_pts(self) -> None:
        """Index every video file (raises ``VideoReadError`` naming a file that cannot be read)."""
        self.video_index: list[VideoIndex] = [index_video(path) for path in self.video_paths]
        self.video_pts = [torch.arange(index.num_frames) for index in self.video_index]
        self.video_fps = [index.fps for index in self.video_index]

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and deep-copy) without the open reader."""
        state = super().__getstate__()
        state["_reader"] = None
        return state

    def read_frames(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Decode the given frames of video ``video_idx`` (``uint8`` RGB ``(T, 3, H, W)``)."""
        index = self.video_index[video_idx]
        if self.cache is not None:
            return self.cached(("video", index.path), functools.partial(read_video, index))[frames]
        if self._reader is None or self._reader.path != index.path:
            if self._reader is not None:
                self._reader.close()
            window = max(2 * self.num_frames, 16)
            self._reader = VideoReader(index, window=window, max_skip=window)
        return self._reader.read(frames.tolist())


def load_avenue_mat_masks(path: str | Path) -> torch.Tensor:
    """Read an Avenue ``N_label.mat`` (``volLabel``, a cell array of ``(H, W)`` masks) as bool ``(N, H, W)``.

    Raises:
        ValueError: If the file cannot be read or holds no ``volLabel`` cell array.

    """
    import scipy.io

    try:
        content = scipy.io.loadmat(str(path))
    except (NotImplementedError, ValueError, OSError, TypeError) as exc:
        msg = f"Cannot read Avenue masks {path}: {exc}"
        raise ValueError(msg) from exc
    volume = content.get("volLabel")
    if not isinstance(volume, np.ndarray) or volume.dtype.kind != "O" or volume.size == 0:
        msg = f"{path} holds no `volLabel` cell array of per-frame masks"
        raise ValueError(msg)
    return torch.from_numpy(np.stack([np.asarray(mask) for mask in volume.reshape(-1)]) > 0)


def _check_mask_count(source: str | Path, count: int, video: str, frames: torch.Tensor) -> None:
    if int(frames.max()) >= count:
        msg = f"{source} holds {count} masks, but {video} has frame {int(frames.max())} (0-based)"
        raise ValueError(msg)


class AvenueVideoClipsIndexer(PyAVClipsIndexer):
    """Avenue clips from ``.avi`` files (PyAV) with masks from ``N_label/`` PNG folders or ``N_label.mat``.

    As anomalib's ``AvenueClipsIndexer``, a PNG folder next to the ``.mat`` file (anomalib's
    conversion) is preferred, its files taken in sorted order; masks are ``> 0`` of what is stored,
    returned as tensors in both cases. A ``.mat`` volume is loaded once per video and kept (the
    whole dataset's with ``cache_frames``, else the last one read).
    """

    _last_masks: tuple[str, torch.Tensor] | None = None

    def _mask_folder_files(self, folder: Path) -> list[Path]:
        return sorted(folder.glob("*"))

    def _mat_volume(self, path: Path) -> torch.Tensor:
        if self.cache is not None:
            return self.cached(("masks", str(path)), functools.partial(load_avenue_mat_masks, path))
        if self._last_masks is None or self._last_masks[0] != str(path):
            self._last_masks = (str(path), load_avenue_mat_masks(path))
        return self._last_masks[1]

    def read_masks(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Read the clip's masks (``(T, H, W)`` bool or 0/1)."""
        mat = Path(self.mask_paths[video_idx])
        folder = mat.with_suffix("")
        video = self.video_paths[video_idx]
        if folder.is_dir():
            files = self._mask_folder_files(folder)
            _check_mask_count(folder, len(files), video, frames)
            if self.cache is not None:
                volume = self.cached(("masks", str(folder)), lambda: read_image_files(files, "L")[:, 0])
                return volume[frames]
            return read_image_files([files[int(i)] for i in frames], "L")[:, 0]
        if mat.is_file():
            volume = self._mat_volume(mat)
            _check_mask_count(mat, len(volume), video, frames)
            return volume[frames]
        msg = f"No ground-truth masks for {video}: expected {mat} or the PNG folder {folder}/"
        raise FileNotFoundError(msg)


class ShanghaiTechFramesClipsIndexer(ClipReaderMixin, ShanghaiTechTestClipsIndexer):
    """anomalib's ShanghaiTech test indexer (JPEG frame folders, ``.npy`` masks), optionally cached.

    The frame list of each folder is read once (anomalib lists it for every clip); masks are read
    memory-mapped (anomalib loads the whole ``.npy`` for every clip). Items equal anomalib's.
    """

    def __init__(self, *args: Any, cache_frames: bool = False, **kwargs: Any) -> None:  # noqa: ANN401
        self._files: dict[int, list[Path]] = {}
        super().__init__(*args, cache_frames=cache_frames, **kwargs)

    def _frame_files(self, video_idx: int) -> list[Path]:
        if video_idx not in self._files:
            self._files[video_idx] = sorted(Path(self.video_paths[video_idx]).glob("*.jpg"))
        return self._files[video_idx]

    def read_frames(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Read the clip's JPEG frames (``uint8`` RGB ``(T, 3, H, W)``)."""
        files = self._frame_files(video_idx)
        if self.cache is not None:
            return self.cached(("video", self.video_paths[video_idx]), lambda: read_image_files(files, "RGB"))[frames]
        return read_image_files([files[int(i)] for i in frames], "RGB")

    def read_masks(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Read the clip's masks from the video's ``(N, H, W)`` ``.npy`` file."""
        path = self.mask_paths[video_idx]
        if self.cache is not None:
            volume = self.cached(("masks", path), lambda: torch.from_numpy(np.load(path) > 0))
            _check_mask_count(path, len(volume), self.video_paths[video_idx], frames)
            return volume[frames]
        volume = np.load(path, mmap_mode="r")
        _check_mask_count(path, len(volume), self.video_paths[video_idx], frames)
        return torch.from_numpy(np.asarray(volume[frames.numpy()]) > 0)


# ================================================================================================
# Avenue
# ================================================================================================
def check_avenue_layout(root: Path | str, gt_dir: Path | str) -> tuple[Path, Path]:
    """Check that ``root`` and ``gt_dir`` hold the CUHK Avenue layout anomalib reads; return them.

    Expected: ``root/training_videos/NN.avi``, ``root/testing_videos/NN.avi`` and, per test video
    ``NN.avi``, ``gt_dir/testing_label_mask/N_label.mat`` or a ``N_label/`` folder of PNG masks.

    Raises:
        DatasetLayoutError: (a ``FileNotFoundError``) naming what is missing.

    """
    root, gt_dir = Path(root), Path(gt_dir)
    expected = (
        f"expected {root}/training_videos/01.avi ..., {root}/testing_videos/01.avi ... and, per test video,"
        f" {gt_dir}/testing_label_mask/1_label.mat (or a 1_label/ folder of PNG masks)"
    )
    how = (
        "Unpack CUHK Avenue (Avenue_Dataset.zip and ground_truth_demo.zip from the authors' page) there. "
        + _SYNTHETIC_HINT.format("avenue")
    )
    if not root.is_dir():
        msg = f"No Avenue dataset at {root}: {expected}. {how}"
        raise DatasetLayoutError(msg)
    for folder in ("training_videos", "testing_videos"):
        if not any((root / folder).glob("*.avi")):
            msg = f"{root / folder} has no .avi videos: {expected}. {how}"
            raise DatasetLayoutError(msg)
    labels = gt_dir / "testing_label_mask"
    missing = []
    for video in sorted((root / "testing_videos").glob("*.avi")):
        stem = video.stem.lstrip("0") + "_label"  # anomalib's naming: 01.avi -> 1_label.mat
        if not ((labels / f"{stem}.mat").is_file() or (labels / stem).is_dir()):
            missing.append(f"{stem}.mat")
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        msg = f"No ground-truth masks in {labels} for {len(missing)} test video(s) ({shown}): {expected}. {how}"
        raise DatasetLayoutError(msg)
    return root, gt_dir


def make_local_avenue_samples(root: Path, gt_dir: Path, split: Split | str | None = None) -> pd.DataFrame:
    """Return anomalib's Avenue samples without the duplicates its ``root/**/*.avi`` search can produce."""
    samples = make_avenue_dataset(root, gt_dir, split)
    task = samples.attrs.get("task")
    samples = samples.drop_duplicates(subset="image_path").reset_index(drop=True)
    samples.attrs["task"] = task
    return samples


class LocalAvenueDataset(AnomalibVideoDataset):
    """CUHK Avenue clips decoded with PyAV (anomalib's ``AvenueDataset`` layout and items).

    Args:
        split: ``Split.TRAIN`` or ``Split.TEST``.
        root: Dataset root (holds ``training_videos/`` and ``testing_videos/``).
        gt_dir: Ground-truth root (holds ``testing_label_mask/``).
        clip_length_in_frames: Frames per clip.
        frames_between_clips: Stride between clip starts.
        augmentations: Augmentations applied to the clips.
        target_frame: Frame of the clip whose label and mask are returned.
        cache_frames: Decode each video once and keep it in memory.

    """

    def __init__(
        self,
        split: Split,
        root: Path | str,
        gt_dir: Path | str,
        clip_length_in_frames: int = 2,
        frames_between_clips: int = 1,
        augmentations: Transform | None = None,
        target_frame: VideoTargetFrame = VideoTargetFrame.LAST,
        cache_frames: bool = False,
    ) -> None:
        super().__init__(
            clip_length_in_frames=clip_length_in_frames,
            frames_between_clips=frames_between_clips,
            target_frame=target_frame,
            augmentations=augmentations,
        )
        self.root, self.gt_dir, self.split = Path(root), Path(gt_dir), split
        self.indexer_cls = functools.partial(AvenueVideoClipsIndexer, cache_frames=cache_frames)
        self.samples = make_local_avenue_samples(self.root, self.gt_dir, self.split)


class LocalAvenue(DeviceClipsMixin, Avenue):
    """anomalib's :class:`~anomalib.data.Avenue` decoded with PyAV, for data already on disk.

    Same arguments, layout and batches as ``Avenue``; needs no torchcodec, never downloads
    (``prepare_data`` raises ``FileNotFoundError`` naming what is missing), reads ``.mat`` masks as
    tensors and ignores the copies of the test videos under ``ground_truth_demo/testing_videos``.

    Args:
        cache_frames: Decode each video once and keep it in memory (full-resolution Avenue: about
            10 GB per split, so for small data or reduced copies). With ``num_workers > 0`` every
            video is decoded at setup and the workers share the frames (``fill_caches_for_workers``).
        device_clips: Keep the training videos' frames as one ``uint8`` tensor on the training device
            and assemble each training batch there by index (:mod:`~anomalib_vadproto.data.device_clips`):
            same batches as the frame cache under the same seed, no per-clip Python work, no copy of
            pixels per step; the train loader yields clip indices and runs without workers.
            Validation and test are unchanged. Full-resolution Avenue training frames take about 10 GB
            of device memory.
        **kwargs: ``Avenue``'s arguments (``root``, ``gt_dir``, ``clip_length_in_frames``, ...).

    """

    def __init__(self, cache_frames: bool = False, device_clips: bool = False, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(**kwargs)
        self.cache_frames = cache_frames
        self.device_clips = device_clips

    def prepare_data(self) -> None:
        """Check the local layout (no download)."""
        check_avenue_layout(self.root, self.gt_dir)

    def _setup(self, _stage: str | None = None) -> None:
        check_avenue_layout(self.root, self.gt_dir)
        common = {
            "root": self.root,
            "gt_dir": self.gt_dir,
            "clip_length_in_frames": self.clip_length_in_frames,
            "frames_between_clips": self.frames_between_clips,
            "target_frame": self.target_frame,
            "cache_frames": self.cache_frames,
        }
        self.train_data = LocalAvenueDataset(split=Split.TRAIN, **common)
        self.test_data = LocalAvenueDataset(split=Split.TEST, **common)
        fill_caches_for_workers(self)


# ================================================================================================
# ShanghaiTech
# ================================================================================================
_SCENE_FILE = re.compile(r"^(\d{2})_")


def parse_scenes(scene: int | str | Sequence[int] | None) -> tuple[int, ...] | None:
    """Normalise a ``scene`` argument: ``None``/``"all"`` -> ``None`` (every scene), else sorted scene numbers.

    Args:
        scene: A scene number (``1``), ``"all"``/``None``, a list of numbers, or digits (``"3"``, ``"1,3"``).

    Returns:
        tuple[int, ...] | None: The scenes, or ``None`` for all scenes on disk.

    Raises:
        ValueError: For anything else, or a number outside 1 to 99.

    """
    if scene is None or (isinstance(scene, str) and scene.strip().lower() == "all"):
        return None
    if isinstance(scene, str):
        parts = [part.strip() for part in scene.split(",")]
        if not all(part.isdigit() for part in parts):
            msg = f"scene must be a number 1-99, a list of them, or 'all'; got {scene!r}"
            raise ValueError(msg)
        scene = [int(part) for part in parts]
    values = [scene] if not isinstance(scene, Sequence) else list(scene)
    valid = [not isinstance(v, bool) and isinstance(v, int | np.integer) and 1 <= v <= 99 for v in values]
    if not values or not all(valid):
        msg = f"scene must be a number 1-99, a list of them, or 'all'; got {scene!r}"
        raise ValueError(msg)
    return tuple(sorted({int(v) for v in values}))


def _scene_of(name: str) -> int | None:
    match = _SCENE_FILE.match(name)
    return int(match.group(1)) if match else None


def _in_scenes(name: str, scenes: tuple[int, ...] | None) -> bool:
    scene = _scene_of(name)
    return scene is not None and (scenes is None or scene in scenes)


def _train_dir(root: Path, train_folder: str | None) -> Path:
    training = root / "training"
    if train_folder is not None:
        return training / train_folder
    videos = training / "videos"
    if not any(videos.glob("*.avi")) and any((training / "converted_videos").glob("*.avi")):
        return training / "converted_videos"
    return videos


def _scene_text(scenes: tuple[int, ...] | None) -> str:
    return "all scenes" if scenes is None else "scene(s) " + ", ".join(f"{s:02d}" for s in scenes)


def check_shanghaitech_layout(
    root: Path | str, scene: int | str | Sequence[int] | None = 1, train_folder: str | None = None
) -> Path:
    """Check that ``root`` holds the ShanghaiTech layout for the scenes; return the training-video folder.

    Expected: ``root/training/videos/SS_NNN.avi`` (or ``training/converted_videos``, anomalib's
    re-encoded copies), ``root/testing/frames/SS_NNNN/*.jpg`` and
    ``root/testing/test_pixel_mask/SS_NNNN.npy``, with training and test videos for every scene asked for.

    Raises:
        DatasetLayoutError: (a ``FileNotFoundError``) naming what is missing.
        ValueError: For an invalid ``scene``.

    """
    root, scenes = Path(root), parse_scenes(scene)
    train_dir = _train_dir(root, train_folder)
    frames_dir, masks_dir = root / "testing" / "frames", root / "testing" / "test_pixel_mask"
    expected = (
        f"expected {train_dir}/01_001.avi ..., {frames_dir}/01_0014/000.jpg ... and {masks_dir}/01_0014.npy"
        f" for {_scene_text(scenes)}"
    )
    how = "Unpack ShanghaiTech Campus there (manual download). " + _SYNTHETIC_HINT.format("shanghaitech")
    if not root.is_dir():
        msg = f"No ShanghaiTech dataset at {root}: {expected}. {how}"
        raise DatasetLayoutError(msg)
    train = [p for p in train_dir.glob("*.avi") if _in_scenes(p.name, scenes)] if train_dir.is_dir() else []
    test = (
        [p for p in frames_dir.iterdir() if p.is_dir() and _in_scenes(p.name, scenes) and any(p.glob("*.jpg"))]
        if frames_dir.is_dir()
        else []
    )
    for what, found, folder in (("training videos", train, train_dir), ("test frame folders", test, frames_dir)):
        if not found:
            msg = f"No {what} for {_scene_text(scenes)} in {folder}: {expected}. {how}"
            raise DatasetLayoutError(msg)
        if scenes is not None:
            lacking = sorted(set(scenes) - {_scene_of(p.name) for p in found})
            if lacking:
                msg = f"No {what} for {_scene_text(tuple(lacking))} in {folder}: {expected}. {how}"
                raise DatasetLayoutError(msg)
    missing = sorted(p.name + ".npy" for p in test if not (masks_dir / f"{p.name}.npy").is_file())
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        msg = f"No pixel masks in {masks_dir} for {len(missing)} test video(s) ({shown}): {expected}. {how}"
        raise DatasetLayoutError(msg)
    return train_dir


def make_local_shanghaitech_samples(
    root: Path | str,
    scene: int | str | Sequence[int] | None,
    split: Split | str | None = None,
    train_folder: str | None = None,
) -> pd.DataFrame:
    """ShanghaiTech samples of one or more scenes, in the columns of anomalib's ``make_shanghaitech_dataset``.

    Training rows are the ``.avi`` files of ``training/videos`` (see :func:`check_shanghaitech_layout`),
    test rows the frame folders of ``testing/frames`` with their ``testing/test_pixel_mask`` files.
    """
    root, scenes = Path(root).resolve(), parse_scenes(scene)
    train_dir = _train_dir(root, train_folder)
    frames_dir, masks_dir = root / "testing" / "frames", root / "testing" / "test_pixel_mask"
    rows = [
        (str(train_dir), train_dir.name, str(path), "train", "")
        for path in sorted(train_dir.glob("*.avi"))
        if _in_scenes(path.name, scenes)
    ]
    if frames_dir.is_dir():
        rows += [
            (str(frames_dir), frames_dir.name, str(folder), "test", str(masks_dir / f"{folder.name}.npy"))
            for folder in sorted(frames_dir.iterdir())
            if folder.is_dir() and _in_scenes(folder.name, scenes) and any(folder.glob("*.jpg"))
        ]
    samples = pd.DataFrame(rows, columns=["root", "folder", "image_path", "split", "mask_path"])
    samples.attrs["task"] = "classification" if (samples["mask_path"] == "").all() else "segmentation"
    if split:
        split_value = split.value if isinstance(split, Split) else split
        samples = samples[samples.split == split_value].reset_index(drop=True)
        samples.attrs["task"] = "classification" if (samples["mask_path"] == "").all() else "segmentation"
    return samples


class LocalShanghaiTechDataset(AnomalibVideoDataset):
    """ShanghaiTech clips of one, several or all scenes: training ``.avi`` via PyAV, test JPEG folders.

    Args:
        split: ``Split.TRAIN`` or ``Split.TEST``.
        root: Dataset root (holds ``training/`` and ``testing/``).
        scene: A scene number, a list of them, or ``"all"``/``None`` for every scene.
        clip_length_in_frames: Frames per clip.
        frames_between_clips: Stride between clip starts.
        target_frame: Frame of the clip whose label and mask are returned.
        augmentations: Augmentations applied to the clips.
        cache_frames: Decode each video once and keep it in memory.
        train_folder: Sub-folder of ``training/`` holding the videos (default: ``videos``, or
            ``converted_videos`` when ``videos`` has none).

    """

    def __init__(
        self,
        split: Split,
        root: Path | str,
        scene: int | str | Sequence[int] | None = 1,
        clip_length_in_frames: int = 2,
        frames_between_clips: int = 1,
        target_frame: VideoTargetFrame = VideoTargetFrame.LAST,
        augmentations: Transform | None = None,
        cache_frames: bool = False,
        train_folder: str | None = None,
    ) -> None:
        super().__init__(
            clip_length_in_frames=clip_length_in_frames,
            frames_between_clips=frames_between_clips,
            target_frame=target_frame,
            augmentations=augmentations,
        )
        self.root, self.split = Path(root), split
        self.scenes = parse_scenes(scene)
        indexer = PyAVClipsIndexer if split == Split.TRAIN else ShanghaiTechFramesClipsIndexer
        self.indexer_cls = functools.partial(indexer, cache_frames=cache_frames)
        self.samples = make_local_shanghaitech_samples(self.root, self.scenes, self.split, train_folder)


class LocalShanghaiTech(DeviceClipsMixin, ShanghaiTech):
    """anomalib's :class:`~anomalib.data.ShanghaiTech` decoded with PyAV, for one, several or all scenes.

    Same layout and batches as ``ShanghaiTech``; needs no torchcodec, never re-encodes the training
    videos (they are read from ``training/videos``) and raises ``FileNotFoundError`` naming what is
    missing. ``category`` (the run folder below the datamodule name) is the scene, ``"01"``, or
    ``"all"``, or the scenes joined by ``_``.

    Args:
        scene: A scene number (1 to 13 in the real data), a list of them, or ``"all"``/``None`` for
            every scene on disk (the standard protocol trains and tests on all scenes together).
        cache_frames: Decode each video once and keep it in memory (for small data; full
            ShanghaiTech does not fit). With ``num_workers > 0`` every video is decoded at setup and
            the workers share the frames (``fill_caches_for_workers``).
        device_clips: Keep the training videos' frames as one ``uint8`` tensor on the training device
            and assemble each training batch there by index (:mod:`~anomalib_vadproto.data.device_clips`):
            same batches as the frame cache under the same seed; the train loader yields clip indices
            and runs without workers. For one or a few scenes: the full training set does not fit in
            device memory.
        train_folder: Sub-folder of ``root/training`` holding the training videos (default:
            ``videos``, or anomalib's ``converted_videos`` when ``videos`` has none).
        target_frame: Frame of the clip whose label and mask are used, a ``VideoTargetFrame`` or its
            value (``"last"``), as ``Avenue`` accepts (``ShanghaiTech`` takes the enum only).
        val_split_mode: How the validation set is made, a ``ValSplitMode`` or its value
            (``"same_as_test"``), as ``Avenue`` accepts.
        **kwargs: ``ShanghaiTech``'s other arguments (``root``, ``clip_length_in_frames``, ...).

    """

    def __init__(
        self,
        scene: int | str | list[int] | None = 1,
        cache_frames: bool = False,
        train_folder: str | None = None,
        target_frame: VideoTargetFrame | str = VideoTargetFrame.LAST,
        val_split_mode: ValSplitMode | str = ValSplitMode.SAME_AS_TEST,
        device_clips: bool = False,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(**enum_arguments(target_frame, val_split_mode), **kwargs)
        self.scenes = parse_scenes(scene)
        self.scene = scene
        self.cache_frames = cache_frames
        self.device_clips = device_clips
        self.train_folder = train_folder
        self.category = "all" if self.scenes is None else "_".join(f"{s:02d}" for s in self.scenes)

    def prepare_data(self) -> None:
        """Check the local layout (no download, no re-encoding)."""
        check_shanghaitech_layout(self.root, self.scenes, self.train_folder)

    def _setup(self, _stage: str | None = None) -> None:
        check_shanghaitech_layout(self.root, self.scenes, self.train_folder)
        common = {
            "root": self.root,
            "scene": self.scenes,
            "clip_length_in_frames": self.clip_length_in_frames,
            "frames_between_clips": self.frames_between_clips,
            "target_frame": self.target_frame,
            "cache_frames": self.cache_frames,
            "train_folder": self.train_folder,
        }
        self.train_data = LocalShanghaiTechDataset(split=Split.TRAIN, **common)
        self.test_data = LocalShanghaiTechDataset(split=Split.TEST, **common)
        fill_caches_for_workers(self)
