"""Reading clips: the frame cache and the per-video readers shared by the plugin's datamodules.

anomalib's clip indexers decode every frame of every clip, so with stride-1 clips of ``T`` frames each
frame is decoded ``T`` times per epoch. :class:`ClipReaderMixin` replaces their clip and mask reading
with per-video readers and an optional in-memory cache of decoded videos (:class:`FrameCache`), and
:class:`PyAVClipsIndexer` reads video files with PyAV (:mod:`.video_io`) instead of torchcodec.

:class:`FrameLabelsMixin` gives a video dataset its frame labels from the full-resolution masks:
anomalib labels a frame from its mask after the augmentations, which hold the model's ``Resize``, so
at a small ``image_size`` a small anomaly vanishes and its frame is labelled normal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import torch
from anomalib.data.datasets.base.video import VideoTargetFrame
from anomalib.data.utils import ValSplitMode
from anomalib.data.utils.video import ClipsIndexer
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype
from torchvision.tv_tensors import Mask

from anomalib_vadproto.components.clip import as_enum
from anomalib_vadproto.data.device_clips import target_index
from anomalib_vadproto.data.video_io import VideoIndex, VideoReader, index_video, read_video

__all__ = [
    "ClipReaderMixin",
    "FrameCache",
    "FrameLabelsMixin",
    "PyAVClipsIndexer",
    "check_mask_count",
    "clip_frame_labels",
    "enum_arguments",
    "fill_caches_for_workers",
    "mask_labels",
    "read_image_files",
]

#: Masks read at a time when a video's frame labels are computed (:meth:`ClipReaderMixin.read_video_labels`).
LABEL_CHUNK = 64


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


def mask_labels(masks: torch.Tensor) -> torch.Tensor:
    """Frame labels of masks ``(T, H, W)``: ``bool`` ``(T,)``, ``True`` where a frame has a non-zero pixel."""
    masks = torch.as_tensor(masks)
    return masks.reshape(len(masks), -1).ne(0).any(1)


class ClipReaderMixin:
    """``get_clip``/``get_mask`` for anomalib ``ClipsIndexer`` subclasses, from per-video readers.

    Mixed in before an anomalib indexer, it replaces the clip and mask reading: a subclass says how to
    read frames (:meth:`read_frames`) and masks (:meth:`read_masks`) of one video, and, with
    ``cache_frames``, each video (and its masks) is decoded once into a :class:`FrameCache` and clips
    are cut from memory. Frames are returned as anomalib's readers return them (float in ``[0, 1]``,
    ``(T, 3, H, W)``), masks as ``Mask`` ``(T, H, W)`` of 0/1 ``uint8`` (``> 0`` of what is stored).
    :meth:`clip_labels` gives a clip's frame labels from the full-resolution masks (computed once per
    video, :meth:`video_labels`), for :class:`FrameLabelsMixin`.

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
        self._video_labels: dict[int, torch.Tensor | None] = {}
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
            self.video_labels(video_idx)

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

    def read_video_labels(self, video_idx: int) -> torch.Tensor | None:
        """Return the label of every frame of video ``video_idx`` (``bool`` ``(N,)``), or ``None`` without masks.

        A frame is anomalous when its mask, as stored (full resolution), has a non-zero pixel. The masks
        are read :data:`LABEL_CHUNK` frames at a time (from the frame cache when there is one).
        """
        if self.mask_paths[video_idx] == "":
            return None
        frames = torch.arange(len(self.video_pts[video_idx]))  # type: ignore[attr-defined]
        labels = [mask_labels(self.read_masks(video_idx, chunk)) for chunk in frames.split(LABEL_CHUNK)]
        return torch.cat(labels) if labels else torch.zeros(0, dtype=torch.bool)

    def video_labels(self, video_idx: int) -> torch.Tensor | None:
        """:meth:`read_video_labels`, computed once per video (and at :meth:`fill_cache`)."""
        if video_idx not in self._video_labels:
            self._video_labels[video_idx] = self.read_video_labels(video_idx)
        return self._video_labels[video_idx]

    def clip_labels(self, idx: int) -> torch.Tensor | None:
        """Return the frame labels of clip ``idx`` (``int32`` ``(T,)``), or ``None`` when its video has none."""
        video_idx, clip_idx = self.get_clip_location(idx)  # type: ignore[attr-defined]
        labels = self.video_labels(video_idx)
        if labels is None:
            return None
        return labels[self.clips[video_idx][clip_idx].long()].int()


def clip_frame_labels(indexer: Any, idx: int) -> torch.Tensor | None:  # noqa: ANN401
    """Return the frame labels of clip ``idx`` (``int32`` ``(T,)``) from its full-resolution masks, or ``None``.

    A :class:`ClipReaderMixin` indexer gives them per video (:meth:`ClipReaderMixin.clip_labels`); any
    other anomalib ``ClipsIndexer`` from the clip's masks, read again (``None`` without masks).
    """
    if isinstance(indexer, ClipReaderMixin):
        return indexer.clip_labels(idx)
    masks = indexer.get_mask(idx)
    return None if masks is None else mask_labels(masks).int()


class FrameLabelsMixin:
    """A video dataset's frame labels (``gt_label``) from the full-resolution masks (mixed in before the dataset).

    anomalib's ``AnomalibVideoDataset.__getitem__`` applies the augmentations, which in anomalib 2.x end
    with the model's ``Resize`` to its ``image_size``, to the clip and its masks, and only then labels
    each frame anomalous when its resized mask has an anomalous pixel: at a small ``image_size`` a small
    anomaly vanishes and its frame is labelled normal (one UCSD Ped2 test frame at 64x64). Here each
    item's ``gt_label`` is set again from the masks as the indexer reads them (:func:`clip_frame_labels`,
    or the indexer's own frame labels where it has them, as ``VideoFolder``'s), with anomalib's target
    frame selection (``target_frame``) and shapes (a scalar for one frame, ``(T,)`` for ``all``).
    ``gt_mask`` stays as anomalib gives it (resized, for the pixel metrics).
    """

    indexer: Any
    target_frame: VideoTargetFrame
    clip_length_in_frames: int

    def __getitem__(self, index: int) -> Any:  # noqa: ANN401
        """Return anomalib's item with ``gt_label`` from the full-resolution masks (unchanged without labels)."""
        item = super().__getitem__(index)  # type: ignore[misc]
        labels = clip_frame_labels(self.indexer, index)
        if labels is not None:
            target = target_index(self.target_frame, self.clip_length_in_frames)
            item.gt_label = labels.squeeze(0) if target is None else labels[target]
        return item


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


def check_mask_count(source: str | Path, count: int, video: str, frames: torch.Tensor) -> None:
    """Raise a ``ValueError`` if ``frames`` asks for a mask beyond the ``count`` that ``source`` holds."""
    if int(frames.max()) >= count:
        msg = f"{source} holds {count} masks, but {video} has frame {int(frames.max())} (0-based)"
        raise ValueError(msg)


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
