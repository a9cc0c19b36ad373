"""The frames of a :class:`~anomalib_vadproto.data.video_folder.VideoFolder`: the frame transform and the clips.

:class:`FrameTransform` crops (``roi``), greys and resizes every recorded frame and mask;
:class:`VideoFolderClipsIndexer` cuts the videos' kept frames into clips and reads their frames, masks and
frame labels (decoding files with PyAV, reading frame folders with PIL); labels taken from masks are the
masks' at the recording's size, for :class:`~anomalib_vadproto.data.clips.FrameLabelsMixin`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from anomalib.data.utils.video import ClipsIndexer
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2.functional import resize

from anomalib_vadproto.data.camera_options import roi_slices
from anomalib_vadproto.data.clips import ClipReaderMixin, read_image_files
from anomalib_vadproto.data.video_folder_labels import (
    MASK_VIDEO_THRESHOLD,
    GroundTruth,
    load_mat_masks,
    read_mask_frames,
    read_mask_labels,
)
from anomalib_vadproto.data.video_folder_layout import VideoSource, read_video_frames
from anomalib_vadproto.data.video_io import VideoIndex, VideoReader, index_video

__all__ = ["FrameTransform", "VideoFolderClipsIndexer"]


@dataclass(frozen=True)
class FrameTransform:
    """What happens to every recorded frame (and mask): crop to ``roi``, grey, resize to ``size``.

    Attributes:
        roi: ``(x, y, w, h)`` in the recording's pixels, or ``None``.
        grayscale: Keep one grey channel (PIL's ``convert("L")`` luma).
        size: ``(height, width)`` of the stored frames, or ``None`` to keep the (cropped) size.

    """

    roi: tuple[int, int, int, int] | None = None
    grayscale: bool = False
    size: tuple[int, int] | None = None

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Return the stored frame size of a recording of ``size`` (``(height, width)``)."""
        if self.size is not None:
            return self.size
        if self.roi is not None:
            return (self.roi[3], self.roi[2])
        return size

    def _crop(self, frames: torch.Tensor) -> torch.Tensor:
        if self.roi is None:
            return frames
        rows, columns = roi_slices(self.roi)
        return frames[..., rows, columns]

    def frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Transform ``uint8`` frames ``(N, C, H, W)`` (3 RGB or 1 grey channels) into stored frames."""
        frames = self._crop(frames)
        if self.grayscale and frames.shape[1] == 3:
            weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
            luma = (frames.to(torch.int32) * weights).sum(1, keepdim=True) + 32768
            frames = (luma >> 16).to(torch.uint8)  # PIL's integer ITU-R 601-2 luma, bit for bit
        if self.size is not None and tuple(frames.shape[-2:]) != self.size:
            frames = resize(frames, list(self.size), interpolation=InterpolationMode.BILINEAR, antialias=True)
        return frames.contiguous()

    def masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Transform boolean masks ``(N, H, W)`` as the frames (nearest-neighbour resize)."""
        masks = self._crop(masks)
        if self.size is not None and tuple(masks.shape[-2:]) != self.size:
            masks = resize(masks[:, None].to(torch.uint8), list(self.size), interpolation=InterpolationMode.NEAREST)
            masks = masks[:, 0] > 0
        return masks.contiguous()


class VideoFolderClipsIndexer(ClipReaderMixin, ClipsIndexer):
    """Clips of the folder's videos: files decoded with PyAV, frame folders read with PIL.

    Frame ``i`` of a video is its ``i``-th kept frame (``fps`` subsampling); frames are cropped, made
    grey and resized by the :class:`FrameTransform` before they are cached or returned.

    Args:
        video_paths: The videos (files or frame folders).
        mask_paths: Per video, its mask source, or ``""`` for none.
        clip_length_in_frames: Frames per clip.
        frames_between_clips: Stride between clip starts.
        sources: Every video's :class:`VideoSource`, by path.
        truths: Every test video's :class:`GroundTruth`, by path.
        transform: The frame transform.
        cache_frames: Decode each video once and keep its (transformed) frames in memory.

    """

    def __init__(
        self,
        video_paths: list[str],
        mask_paths: list[str],
        clip_length_in_frames: int = 2,
        frames_between_clips: int = 1,
        sources: Mapping[str, VideoSource] | None = None,
        truths: Mapping[str, GroundTruth] | None = None,
        transform: FrameTransform | None = None,
        cache_frames: bool = False,
    ) -> None:
        self.sources = dict(sources or {})
        self.truths = dict(truths or {})
        self.transform = transform or FrameTransform()
        self._readers: dict[str, VideoReader] = {}
        self._mat: tuple[str, np.ndarray] | None = None
        super().__init__(
            video_paths=video_paths,
            mask_paths=mask_paths,
            clip_length_in_frames=clip_length_in_frames,
            frames_between_clips=frames_between_clips,
            cache_frames=cache_frames,
        )

    def _compute_frame_pts(self) -> None:
        """Give each video's kept frames the numbers ``0 .. len(kept) - 1`` (nothing is read here)."""
        self.video_pts = [torch.arange(len(self.sources[path].kept)) for path in self.video_paths]
        self.video_fps = [None] * len(self.video_paths)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and deep-copy) without open readers."""
        state = super().__getstate__()
        state["_readers"] = {}
        state["_mat"] = None
        return state

    def _recorded(self, video_idx: int, frames: torch.Tensor) -> tuple[VideoSource, list[int]]:
        source = self.sources[self.video_paths[video_idx]]
        return source, [source.kept[int(i)] for i in frames]

    def _reader(self, index: VideoIndex, step: int) -> VideoReader:
        """Return the open reader of ``index`` (one file open at a time, as the other indexers)."""
        reader = self._readers.get(index.path)
        if reader is None:
            for old in self._readers.values():
                old.close()
            self._readers.clear()
            window = max(2 * self.num_frames, 16)
            reader = VideoReader(index, window=window, max_skip=window * max(step, 1))
            self._readers[index.path] = reader
        return reader

    def _whole(self, source: VideoSource) -> torch.Tensor:
        """Every kept frame of a video, transformed (for the cache)."""
        if source.index is None:
            mode = "L" if self.transform.grayscale else "RGB"
            return self.transform.frames(read_image_files([source.files[i] for i in source.kept], mode))
        return read_video_frames(source.index, source.kept, self.transform.frames)

    def read_frames(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Return kept frames ``frames`` of video ``video_idx``, transformed: ``uint8`` ``(T, 3, h, w)``."""
        source, recorded = self._recorded(video_idx, frames)
        if self.cache is not None:
            clip = self.cached(("video", source.path), functools.partial(self._whole, source))[frames]
        elif source.index is None:
            mode = "L" if self.transform.grayscale else "RGB"
            clip = self.transform.frames(read_image_files([source.files[i] for i in recorded], mode))
        else:
            step = max((b - a for a, b in zip(source.kept, source.kept[1:], strict=False)), default=1)
            clip = self.transform.frames(self._reader(source.index, step).read(recorded))
        return clip.expand(-1, 3, -1, -1) if clip.shape[1] == 1 else clip

    # ---------------------------------------------------------------------------------------- masks
    def _all_masks(self, path: str) -> torch.Tensor:
        source = self.sources[path]
        return self.transform.masks(read_mask_frames(self.truths[path], source, source.kept))

    def read_masks(self, video_idx: int, frames: torch.Tensor) -> torch.Tensor:
        """Return the masks of kept frames ``frames`` of video ``video_idx``: ``bool`` ``(T, h, w)``."""
        path = self.video_paths[video_idx]
        if self.cache is not None:
            return self.cached(("masks", path), functools.partial(self._all_masks, path))[frames]
        source, recorded = self._recorded(video_idx, frames)
        truth = self.truths[path]
        if truth.mask_kind == "mat":  # one volume per file: keep the last one read
            if self._mat is None or self._mat[0] != truth.masks:
                self._mat = (truth.masks, load_mat_masks(truth.masks, source))
            return self.transform.masks(torch.from_numpy(self._mat[1][recorded]))
        if truth.mask_kind == "video":
            masks = self._reader(index_video(truth.masks), 1).read(recorded)[:, 0] > MASK_VIDEO_THRESHOLD
            return self.transform.masks(masks)
        return self.transform.masks(read_mask_frames(truth, source, recorded))

    def read_video_labels(self, video_idx: int) -> torch.Tensor | None:
        """Every kept frame's label (``bool`` ``(N,)``), or ``None`` when the video has no ground truth.

        The video's frame labels where it has them, else its masks' (:func:`read_mask_labels`: at the
        recording's size, cropped to the ``roi`` but not resized by ``image_size``).
        """
        path = self.video_paths[video_idx]
        truth = self.truths.get(path)
        if truth is None:
            return None
        source = self.sources[path]
        if truth.labels is not None:
            return torch.from_numpy(truth.labels[list(source.kept)])
        if truth.masks:
            return read_mask_labels(truth, source, source.kept, self.transform.roi)
        return None
