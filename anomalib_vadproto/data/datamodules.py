"""Datamodules that check local data instead of trying to download it.

anomalib's ``UCSDped`` starts a download whenever ``root/<category>`` is missing; offline, or with
a typo in the path, that surfaces as a network error. :class:`LocalUCSDped` is the same datamodule
(same arguments, same layout, same batches) that never downloads and says exactly what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import torch
from anomalib.data import UCSDped
from anomalib.data.datasets.base.video import VideoTargetFrame
from anomalib.data.datasets.video.ucsd_ped import UCSDpedClipsIndexer
from anomalib.data.utils import ValSplitMode
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype
from torchvision.tv_tensors import Mask

from anomalib_vadproto.components.clip import as_enum
from anomalib_vadproto.data.device_clips import DeviceClipsMixin
from anomalib_vadproto.errors import DatasetLayoutError


def check_ucsd_layout(root: Path | str, category: str) -> Path:
    """Check ``root/category`` holds the UCSDped layout anomalib reads, and return it.

    Every test video folder (a folder of ``.tif`` frames under ``Test/``, as anomalib lists them) needs
    its ground-truth folder ``<video>_gt`` with one ``.bmp`` mask per frame: anomalib reads the mask of
    every test clip and would otherwise stop with an ``IndexError`` in the middle of testing.

    Raises:
        DatasetLayoutError: (a ``FileNotFoundError``) naming the first missing path and how to create
            the data, or the first test video whose masks are missing or do not match its frames.

    """
    folder = Path(root) / category
    how = (
        "Create synthetic data with `anomalib-vadproto make-synthetic <root>` (category 'synthetic'), or lay out"
        " UCSD Ped2 as <root>/<category>/{Train,Test}/<video>/NNN.tif frames, with one NNN.bmp mask per test"
        " frame in <root>/<category>/Test/<video>_gt/ (e.g. Test/Test001_gt/001.bmp)."
    )
    if not folder.is_dir():
        msg = f"No dataset at {folder}: expected {folder}/Train/Train001/*.tif and {folder}/Test/Test001/*.tif. {how}"
        raise DatasetLayoutError(msg)
    for split in ("Train", "Test"):
        videos = [p for p in (folder / split).glob(f"{split}*") if p.is_dir() and not p.name.endswith("_gt")]
        if not videos or not any(any(v.glob("*.tif")) for v in videos):
            msg = f"{folder / split} has no video folders of .tif frames ({split}001/001.tif, ...). {how}"
            raise DatasetLayoutError(msg)
    check_ucsd_ground_truth(folder / "Test")
    return folder


def check_ucsd_ground_truth(test_folder: Path) -> None:
    """Check every test video folder of ``test_folder`` has a ``<video>_gt`` folder with one ``.bmp`` per frame.

    Raises:
        DatasetLayoutError: (a ``FileNotFoundError``) naming the first video (in sorted order) whose
            ground-truth folder is missing or holds another number of masks than it has frames.

    """
    # The test videos as anomalib's make_ucsd_dataset lists them: every sub-folder holding .tif frames.
    videos = sorted(p for p in test_folder.iterdir() if p.is_dir() and any(p.glob("*.tif")))
    for video in videos:
        frames = sum(1 for _ in video.glob("*.tif"))
        ground_truth = video.with_name(f"{video.name}_gt")
        if not ground_truth.is_dir():
            msg = (
                f"Test video {video} has no ground-truth folder {ground_truth} (one .bmp mask per frame, {frames}"
                f" here), which anomalib needs to test. Add the masks there, or move {video.name} out of {test_folder}."
            )
            raise DatasetLayoutError(msg)
        masks = sum(1 for _ in ground_truth.glob("*.bmp"))
        if masks != frames:
            msg = (
                f"{ground_truth} holds {masks} .bmp masks for the {frames} .tif frames of {video}: every test frame"
                " needs its mask (anomalib pairs them in sorted order). Complete the masks or remove the extra ones."
            )
            raise DatasetLayoutError(msg)


class FrameCache(dict):
    """Decoded frames per video folder, shared (not copied) by ``deepcopy``: val is a deep copy of test."""

    def __deepcopy__(self, memo: dict) -> FrameCache:
        return self


def read_image_files(paths: Sequence[Path | str], mode: str) -> torch.Tensor:
    """Read image files as a ``uint8`` tensor ``(N, C, H, W)``, converted to PIL ``mode`` (``"RGB"``, ``"L"``).

    The conversion is :func:`anomalib.data.utils.image.read_image`'s (PIL ``convert``), so frames equal
    anomalib's once scaled to ``[0, 1]``.
    """
    return torch.stack([pil_to_tensor(Image.open(path).convert(mode)) for path in paths])


class ClipReaderMixin:
    """``get_clip``/``get_mask`` for anomalib ``ClipsIndexer`` subclasses, from per-video readers.

    Mixed in before an anomalib indexer, it replaces the clip and mask reading: a subclass says how to
    read frames (:meth:`read_frames`) and masks (:meth:`read_masks`) of one video, and, with
    ``cache_frames``, each video (and its masks) is decoded once into a :class:`FrameCache` and clips
    are cut from memory. Frames are returned as anomalib's readers return them (float in ``[0, 1]``,
    ``(T, 3, H, W)``), masks as ``Mask`` ``(T, H, W)`` of 0/1 ``uint8`` (``> 0`` of what is stored).

    Args:
        *args: The indexer's arguments.
        cache_frames: Keep every decoded video in memory (shared by the deep copies anomalib makes).
        **kwargs: The indexer's keyword arguments.

    """

    video_paths: list[str]
    mask_paths: list[str]
    clips: list[torch.Tensor]

    def __init__(self, *args: Any, cache_frames: bool = True, **kwargs: Any) -> None:  # noqa: ANN401
        self.cache: FrameCache | None = FrameCache() if cache_frames else None
        super().__init__(*args, **kwargs)

    def cached(self, key: Hashable, load: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Return ``load()``, computed once per ``key`` when caching (every time otherwise)."""
        if self.cache is None:
            return load()
        if key not in self.cache:
            self.cache[key] = load()
        return self.cache[key]

    def fill_cache(self) -> None:
        """Decode every video (and its masks) into the cache now; nothing without ``cache_frames``.

        DataLoader worker processes forked after this share the decoded frames with the main process
        (copy-on-write) instead of each decoding the videos again, every epoch, into a cache of its own.
        """
        if self.cache is None:
            return
        first = torch.zeros(1, dtype=torch.long)
        for video_idx in range(len(self.video_paths)):
            self.read_frames(video_idx, first)
            if self.mask_paths[video_idx] != "":
                self.read_masks(video_idx, first)

    def read_frames(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Return frames ``frames`` (indices) of video ``video_idx``: ``uint8`` ``(T, 3, H, W)``."""
        raise NotImplementedError

    def read_masks(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Return the masks of frames ``frames`` of video ``video_idx``: ``(T, H, W)``, non-zero = anomalous."""
        raise NotImplementedError

    def get_clip(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], int]:
        """Return ``(frames [T, 3, H, W] float in [0, 1], empty audio, {}, video index)``."""
        if idx >= self.num_clips():  # type: ignore[attr-defined]
            msg = f"Index {idx} out of range ({self.num_clips()} number of clips)"  # type: ignore[attr-defined]
            raise IndexError(msg)
        video_idx, clip_idx = self.get_clip_location(idx)  # type: ignore[attr-defined]
        frames = self.read_frames(video_idx, self.clips[video_idx][clip_idx].long())
        return to_dtype(frames, torch.float32, scale=True), torch.empty((1, 0)), {}, video_idx

    def get_mask(self, idx: int) -> torch.Tensor | None:
        """Return the clip's ground-truth masks ``[T, H, W]`` (uint8 0/1), or ``None`` without masks."""
        video_idx, clip_idx = self.get_clip_location(idx)  # type: ignore[attr-defined]
        if self.mask_paths[video_idx] == "":
            return None
        masks = self.read_masks(video_idx, self.clips[video_idx][clip_idx].long())
        return Mask(torch.as_tensor(masks) > 0, dtype=torch.uint8)


class CachedUCSDpedClipsIndexer(ClipReaderMixin, UCSDpedClipsIndexer):
    """``UCSDpedClipsIndexer`` that decodes each video folder once and cuts clips from memory.

    anomalib's indexer lists the folder and decodes every frame of every clip, so with stride-1 clips
    of ``T`` frames each frame is decoded ``T`` times per epoch; on a 2-core CPU that decoding is a
    quarter of a lite training epoch. Here frames are kept as ``uint8`` (Ped2: ~1.2 GB for train and
    test) and converted exactly as :func:`anomalib.data.utils.image.read_image` does, so batches are
    bit-identical. Masks are cached the same way.
    """

    def _video(self, folder: str, pattern: str, mode: str) -> torch.Tensor:
        return self.cached((folder, pattern), lambda: read_image_files(sorted(Path(folder).glob(pattern)), mode))

    def read_frames(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Read the ``.tif`` frames of the video folder."""
        return self._video(self.video_paths[video_idx], "*.tif", "RGB")[frames]

    def read_masks(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Read the ``.bmp`` masks of the ``_gt`` folder."""
        return self._video(self.mask_paths[video_idx], "*.bmp", "L")[frames, 0]


def fill_caches_for_workers(datamodule: Any) -> None:  # noqa: ANN401
    """With ``cache_frames`` and ``num_workers > 0``, decode every video of both splits in this process.

    Called at the end of a local datamodule's ``_setup``: the workers that each dataloader forks then
    start with the whole cache (:meth:`ClipReaderMixin.fill_cache`). Under the ``spawn`` start method
    (macOS, Windows) each worker receives a pickled copy of it instead. With ``device_clips`` the
    training split is left out: its loader has no workers, and its frames are decoded into the device
    tensor (:class:`~anomalib_vadproto.data.device_clips.DeviceClips`) instead.
    """
    if not getattr(datamodule, "cache_frames", False) or datamodule.num_workers <= 0:
        return
    datasets = (datamodule.test_data,) if getattr(datamodule, "device_clips", False) else ()
    for dataset in datasets or (datamodule.train_data, datamodule.test_data):
        indexer = getattr(dataset, "indexer", None)
        if isinstance(indexer, ClipReaderMixin):
            indexer.fill_cache()


def enum_arguments(target_frame: VideoTargetFrame | str, val_split_mode: ValSplitMode | str) -> dict[str, Any]:
    """Anomalib's enum-typed datamodule arguments from a member, its value or its name (``last``, ``LAST``)."""
    return {
        "target_frame": as_enum("target_frame", target_frame, VideoTargetFrame),
        "val_split_mode": as_enum("val_split_mode", val_split_mode, ValSplitMode),
    }


class LocalUCSDped(DeviceClipsMixin, UCSDped):
    """anomalib's :class:`~anomalib.data.UCSDped` for data already on disk: never downloads.

    Takes ``UCSDped``'s arguments. ``prepare_data`` checks the layout and raises a
    ``FileNotFoundError`` naming what is missing.

    Args:
        cache_frames: Decode each video once and keep its frames in memory
            (:class:`CachedUCSDpedClipsIndexer`); same batches, far less decoding. With
            ``num_workers > 0`` every video is decoded at setup, in the main process, and the worker
            processes share those frames (:func:`fill_caches_for_workers`).
        device_clips: Keep the decoded frames of the training split as one ``uint8`` tensor on the
            training device and assemble each training batch there by index
            (:mod:`~anomalib_vadproto.data.device_clips`): no per-clip Python work and no copy of
            pixels from the host per step; same batches as the frame cache under the same seed. The
            train loader then yields clip indices, runs without worker processes, and Lightning's
            ``transfer_batch_to_device`` hook (this datamodule's) turns them into the ``VideoBatch``.
            Validation and test batches are unchanged. Needs every training video in one frame size
            and the training split in device memory (Ped2: 0.7 GB); random augmentations draw once
            per batch.
        target_frame: Frame of the clip whose label and mask are used: a ``VideoTargetFrame``, its value
            (``"last"``, as the shipped configs write it) or its name (``"LAST"``).
        val_split_mode: How the validation set is made: a ``ValSplitMode``, its value
            (``"same_as_test"``) or its name.
        **kwargs: ``UCSDped``'s other arguments.

    """

    def __init__(
        self,
        cache_frames: bool = False,
        target_frame: VideoTargetFrame | str = VideoTargetFrame.LAST,
        val_split_mode: ValSplitMode | str = ValSplitMode.SAME_AS_TEST,
        device_clips: bool = False,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(**enum_arguments(target_frame, val_split_mode), **kwargs)
        self.cache_frames = cache_frames
        self.device_clips = device_clips

    def prepare_data(self) -> None:
        """Check the local layout (no download)."""
        check_ucsd_layout(self.root, self.category)

    def _setup(self, _stage: str | None = None) -> None:
        super()._setup(_stage)
        # device_clips reads whole training videos through the caching indexer (its cache is emptied
        # as the device tensor is filled).
        datasets = (self.train_data, self.test_data) if self.cache_frames else ()
        for dataset in datasets or ((self.train_data,) if self.device_clips else ()):
            dataset.indexer_cls = CachedUCSDpedClipsIndexer
            dataset._setup_clips()  # noqa: SLF001
        fill_caches_for_workers(self)
