"""ShanghaiTech Campus, decoded with PyAV: no torchcodec, no re-encoding, no download.

:class:`LocalShanghaiTech` is anomalib's ``ShanghaiTech`` datamodule (a subclass: same layout and
batches) with these differences:

* training videos are read where the dataset ships them (``training/videos``) with PyAV, so
  anomalib's OpenCV re-encoding into ``training/converted_videos`` is not needed (an existing
  ``converted_videos`` folder is used when ``videos`` is absent);
* scenes can be pooled: ``scene="all"`` (or ``None``) reads all 13 scenes together (the standard
  protocol), ``scene=[1, 3]`` a subset; every clip keeps its own ``video_path``, so the papers'
  per-video protocol groups frames by video as before;
* a missing dataset raises ``FileNotFoundError`` naming what is expected.

Example:
    >>> from anomalib_vadproto import LocalShanghaiTech  # doctest: +SKIP
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
from anomalib.data import ShanghaiTech
from anomalib.data.datasets.base.video import AnomalibVideoDataset, VideoTargetFrame
from anomalib.data.datasets.video.shanghaitech import ShanghaiTechTestClipsIndexer
from anomalib.data.utils import Split, ValSplitMode
from torchvision.transforms.v2 import Transform

from anomalib_vadproto.data.avenue import SYNTHETIC_HINT
from anomalib_vadproto.data.clips import (
    ClipReaderMixin,
    FrameLabelsMixin,
    PyAVClipsIndexer,
    check_mask_count,
    enum_arguments,
    fill_caches_for_workers,
    read_image_files,
)
from anomalib_vadproto.data.device_clips import DeviceClipsMixin
from anomalib_vadproto.data.validation import HeldOutVideosMixin
from anomalib_vadproto.errors import DatasetLayoutError

__all__ = [
    "LocalShanghaiTech",
    "LocalShanghaiTechDataset",
    "ShanghaiTechFramesClipsIndexer",
    "check_shanghaitech_layout",
    "make_local_shanghaitech_samples",
    "parse_scenes",
]

_SCENE_FILE = re.compile(r"^(\d{2})_")


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
            check_mask_count(path, len(volume), self.video_paths[video_idx], frames)
            return volume[frames]
        volume = np.load(path, mmap_mode="r")
        check_mask_count(path, len(volume), self.video_paths[video_idx], frames)
        return torch.from_numpy(np.asarray(volume[frames.numpy()]) > 0)


# ================================================================================================


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
    how = "Unpack ShanghaiTech Campus there (manual download). " + SYNTHETIC_HINT.format("shanghaitech")
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


class LocalShanghaiTechDataset(FrameLabelsMixin, AnomalibVideoDataset):
    """ShanghaiTech clips of one, several or all scenes: training ``.avi`` via PyAV, test JPEG folders.

    As anomalib's, a test frame is anomalous when its pixel mask (``test_pixel_mask``) has an anomalous
    pixel, here taken at full resolution, not after the augmentations' resize
    (:class:`~anomalib_vadproto.data.clips.FrameLabelsMixin`).

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


class LocalShanghaiTech(HeldOutVideosMixin, DeviceClipsMixin, ShanghaiTech):
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
        val_split_mode: How the validation set is made (a ``ValSplitMode``, its value or name): ``"from_train"``
            validates on whole held-out training videos, never trained on (:mod:`~anomalib_vadproto.data.validation`).
        val_videos: With ``from_train``, how many training videos to hold out, or their names.
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
        val_videos: int | list[str] | None = None,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(**enum_arguments(target_frame, val_split_mode), **kwargs)
        self.val_videos = val_videos
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
