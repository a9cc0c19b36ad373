"""GPU-resident training clips: the training split as one ``uint8`` tensor on the device, batches cut there.

Paper-profile training on a GPU spends its time in per-clip Python work (the dataset's ``__getitem__``,
anomalib's collate) and in copying every batch's pixels from the host, not in arithmetic. With
``device_clips=True`` a local datamodule (:class:`~anomalib_vadproto.LocalUCSDped`,
:class:`~anomalib_vadproto.LocalAvenue`, :class:`~anomalib_vadproto.LocalShanghaiTech`) instead:

1. decodes every training video once into one ``uint8`` tensor ``(total_frames, C, H, W)``, with a
   ``(num_clips, T)`` tensor of the global frame indices of every clip, in the indexer's clip order
   (:class:`DeviceClips`, built when the train dataloader is first asked for);
2. makes the train dataloader yield clip indices only (:class:`ClipIndexBatch`), with the sampler,
   shuffling and batch size of the usual loader, so one seed gives the same clips in the same order;
3. in its ``transfer_batch_to_device`` hook (Lightning calls it for every batch), moves the frame
   tensor to the batch's device the first time it sees that device, then gathers the batch's frames
   there, converts them to float in ``[0, 1]`` as anomalib's readers do, applies the training
   augmentations (the model's ``Resize``, which anomalib appends) to the whole batch and returns the
   ``VideoBatch`` the model receives today (``image``, ``original_image``, ``video_path``, ``frames``,
   ``last_frame``).

Per step that leaves a host-to-device copy of the clip indices (a few bytes) and a handful of tensor
operations on the device. Validation and test batches (labels, masks, per-video metadata for the
protocol metric) keep the usual path.

Limitations: every training video needs the same frame size (anomalib's collate would resize them);
random augmentations draw their parameters once per batch instead of once per clip; the whole
training split must fit in the device memory (UCSD Ped2: 0.7 GB, Avenue: about 10 GB at full
resolution, the full ShanghaiTech training set does not fit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from anomalib.data import VideoBatch
from anomalib.data.datasets.base.video import VideoTargetFrame
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from torchvision.transforms.v2.functional import to_dtype

__all__ = ["ClipIndexBatch", "ClipIndices", "DeviceClips", "DeviceClipsMixin", "target_index"]


@dataclass
class ClipIndexBatch:
    """What the device-clips train dataloader yields: a batch's clip indices (``int64`` ``(B,)``, on the host)."""

    ids: torch.Tensor


class ClipIndices(Dataset):
    """Map-style dataset of the clip indices ``0 .. num_clips - 1`` (batched without a per-item call).

    Args:
        num_clips: Number of clips in the training split.

    """

    def __init__(self, num_clips: int) -> None:
        self.num_clips = num_clips

    def __len__(self) -> int:
        """Return the number of clips."""
        return self.num_clips

    def __getitem__(self, index: int) -> int:
        """Return the index itself."""
        if not 0 <= index < self.num_clips:
            msg = f"Clip index {index} out of range ({self.num_clips} clips)"
            raise IndexError(msg)
        return index

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        """Return a whole batch of indices at once (the DataLoader's batched fetch)."""
        return torch.as_tensor(indices, dtype=torch.long)

    @staticmethod
    def collate(ids: torch.Tensor | Sequence[int]) -> ClipIndexBatch:
        """Wrap a batch of indices (from :meth:`__getitems__`) as a :class:`ClipIndexBatch`."""
        return ClipIndexBatch(torch.as_tensor(ids, dtype=torch.long))


def target_index(target_frame: VideoTargetFrame | str, clip_length: int) -> int | None:
    """Position of the target frame in a clip, as ``AnomalibVideoDataset`` selects it; ``None`` to keep all.

    Args:
        target_frame: ``first``, ``last``, ``mid`` or ``all``.
        clip_length: Frames per clip (clips of one frame keep their frame axis, as anomalib's do).

    Raises:
        ValueError: For an unknown target frame.

    """
    target = VideoTargetFrame(target_frame)
    if clip_length <= 1 or target == VideoTargetFrame.ALL:
        return None
    positions = {VideoTargetFrame.FIRST: 0, VideoTargetFrame.LAST: -1, VideoTargetFrame.MID: int(clip_length / 2)}
    return positions[target]


class _OnDevice(NamedTuple):
    frames: torch.Tensor  # (total_frames, C, H, W) uint8
    clip_frames: torch.Tensor  # (num_clips, T) int64 global frame indices


class DeviceClips:
    """The frames of a training split as one ``uint8`` tensor, and every clip as global frame indices.

    Build with :meth:`from_indexer`; :meth:`batch` assembles a ``VideoBatch`` on any device, moving the
    frames there once per device (:meth:`on`).

    Args:
        frames: ``uint8`` ``(total_frames, C, H, W)``: every video's frames, one video after the other.
        clip_frames: ``int64`` ``(num_clips, T)``: the rows of ``frames`` of each clip.
        clip_pts: ``(num_clips, T)``: each clip's frame numbers within its video (the item's ``frames``).
        clip_video: ``int64`` ``(num_clips,)``: each clip's video.
        last_frame: ``int64`` ``(num_clips,)``: the last frame number of each clip's video (anomalib's
            ``last_frame``: the last frame of the video's last clip).
        video_paths: Path of each video.
        target: Position of the target frame in a clip (:func:`target_index`), ``None`` to keep all.

    """

    def __init__(
        self,
        frames: torch.Tensor,
        clip_frames: torch.Tensor,
        clip_pts: torch.Tensor,
        clip_video: torch.Tensor,
        last_frame: torch.Tensor,
        video_paths: Sequence[str],
        target: int | None,
    ) -> None:
        if frames.dtype != torch.uint8 or frames.ndim != 4:
            msg = f"frames must be uint8 (N, C, H, W), got {frames.dtype} {tuple(frames.shape)}"
            raise ValueError(msg)
        self.frames = frames
        self.clip_frames = clip_frames.long()
        self.clip_pts = clip_pts
        self.clip_video = clip_video.long()
        self.last_frame = last_frame.long()
        self.video_paths = np.asarray(list(video_paths), dtype=object)
        self.target = target
        self.source: Any = None  # the indexer the clips were built from (to notice a new one)
        self._devices: dict[torch.device, _OnDevice] = {}

    @classmethod
    def from_indexer(cls, indexer: Any, target: int | None, empty_cache: bool = False) -> DeviceClips:  # noqa: ANN401
        """Decode every video of a frame-reading indexer (``ClipReaderMixin``) into one tensor.

        Each video is read whole through ``indexer.read_frames`` (from the frame cache when it holds
        it), into a tensor allocated once.

        Args:
            indexer: A ``ClipReaderMixin`` indexer (``read_frames``, ``video_pts``, ``clips``).
            target: Position of the target frame (:func:`target_index`).
            empty_cache: Empty the indexer's frame cache after each video, so the frames are not held
                twice (for a cache no other split reads).

        Raises:
            TypeError: If the indexer cannot read whole videos.
            ValueError: If the videos differ in frame size, or no video has a clip.

        """
        if not callable(getattr(indexer, "read_frames", None)):
            msg = (
                f"device_clips needs an indexer that reads frames per video (ClipReaderMixin), got"
                f" {type(indexer).__name__}"
            )
            raise TypeError(msg)
        counts = [len(pts) for pts in indexer.video_pts]
        clip_counts = [len(clips) for clips in indexer.clips]
        if sum(clip_counts) == 0:
            msg = f"No training clips: {len(counts)} video(s), each shorter than one clip"
            raise ValueError(msg)
        offsets = torch.tensor([0, *counts[:-1]]).cumsum(0)
        cache = getattr(indexer, "cache", None) if empty_cache else None
        frames: torch.Tensor | None = None
        for video_idx, count in enumerate(counts):
            if count == 0:
                continue
            known = set(cache) if cache is not None else set()
            video = indexer.read_frames(video_idx, torch.arange(count))
            for key in set(cache or ()) - known:  # what this video added: dropped now, not after the split
                del cache[key]
            if frames is None:
                frames = torch.empty((sum(counts), *video.shape[1:]), dtype=torch.uint8)
            if video.shape[1:] != frames.shape[1:] or len(video) != count:
                msg = (
                    f"device_clips needs every training video in one frame size: {indexer.video_paths[video_idx]}"
                    f" has {len(video)} frames of {tuple(video.shape[1:])} (expected {count} of"
                    f" {tuple(frames.shape[1:])}). Resize the videos, or train without device_clips."
                )
                raise ValueError(msg)
            start = int(offsets[video_idx])
            frames[start : start + count] = video
        if cache is not None:
            cache.clear()
        clips = list(indexer.clips)  # (clips of the video, T) each; (0, T) for a video shorter than a clip
        store = cls(
            frames=frames,
            clip_frames=torch.cat([c.long() + offsets[v] for v, c in enumerate(clips)]),
            clip_pts=torch.cat(clips),
            clip_video=torch.repeat_interleave(torch.arange(len(clips)), torch.tensor(clip_counts)),
            last_frame=torch.cat([c[-1, -1].long().expand(len(c)) for c in clips if len(c)]),
            video_paths=[str(path) for path in indexer.video_paths],
            target=target,
        )
        store.source = indexer
        return store

    @property
    def num_clips(self) -> int:
        """Number of clips."""
        return len(self.clip_frames)

    def on(self, device: torch.device | str) -> _OnDevice:
        """Return the frames and clip indices on ``device``: moved there at the first call, the same after."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._devices:
            self._devices[device] = self._move(device)
        return self._devices[device]

    def _move(self, device: torch.device) -> _OnDevice:
        return _OnDevice(self.frames.to(device), self.clip_frames.to(device))

    def release(self) -> None:
        """Free the device copies (they are made again when needed)."""
        self._devices.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (spawned processes, checkpoints) without the device copies or the source indexer."""
        state = self.__dict__.copy()
        state["_devices"] = {}
        state["source"] = None
        return state

    def batch(self, ids: torch.Tensor, device: torch.device | str, augmentations: Callable | None = None) -> VideoBatch:
        """Build the ``VideoBatch`` of clips ``ids`` on ``device``, as anomalib's dataset and collate build it.

        ``image`` is ``float32`` in ``[0, 1]`` (``(B, T, C, H, W)``, ``(B, C, H, W)`` for one-frame clips)
        after ``augmentations`` (applied to the whole batch), ``original_image`` the target frame as
        ``uint8`` before them, ``frames`` the target frame's number, ``last_frame`` the last frame of
        the clip's video, ``video_path`` the clip's video. No clip label or mask: training videos have
        none, as in anomalib's training batches.

        Args:
            ids: ``int64`` ``(B,)`` clip indices, on the host.
            device: Where the batch is built.
            augmentations: The training dataset's augmentations (``None`` for none).

        """
        ids = torch.as_tensor(ids, dtype=torch.long)
        on = self.on(device)
        index = on.clip_frames.index_select(0, ids.to(on.clip_frames.device, non_blocking=True))
        clips = on.frames.index_select(0, index.flatten()).unflatten(0, index.shape)
        image = to_dtype(clips, torch.float32, scale=True)
        original = image if self.target is None else image[:, self.target]
        original_image = to_dtype(original, torch.uint8, scale=True)
        if augmentations is not None:
            image = augmentations(image)
        if image.shape[1] == 1:  # anomalib squeezes the frame axis of one-frame clips
            image = image.squeeze(1)
        # The metadata is made and validated on the host (as anomalib's collate does), then moved:
        # validating it on the device would read it back, a synchronisation per step.
        pts = self.clip_pts[ids]
        batch = VideoBatch(
            image=image,
            original_image=original_image,
            video_path=self.video_paths[self.clip_video[ids].numpy()].tolist(),
            frames=pts if self.target is None else pts[:, self.target],
            last_frame=self.last_frame[ids],
        )
        for name in ("frames", "last_frame"):
            value = getattr(batch, name).to(image.device, non_blocking=True)
            if name in vars(batch):
                vars(batch)[name] = value  # already validated
            else:
                setattr(batch, name, value)
        return batch


class DeviceClipsMixin:
    """The ``device_clips`` behaviour of a local video datamodule (mixed in before the anomalib class).

    The datamodule sets ``self.device_clips`` in its ``__init__``; its training dataset's indexer must
    read frames per video (``ClipReaderMixin``). Without ``device_clips`` nothing changes.
    """

    device_clips: bool
    train_data: Any
    _device_clip_store: DeviceClips | None = None

    def device_clip_store(self) -> DeviceClips:
        """Return the training split's :class:`DeviceClips`, built at the first call (and again for a new split)."""
        indexer = getattr(self.train_data, "indexer", None)
        store = self._device_clip_store
        if store is None or (store.source is not None and store.source is not indexer):
            cache = getattr(indexer, "cache", None)
            # A cache another split reads (a validation split cut from training) keeps its frames.
            shared = any(
                cache is not None and getattr(getattr(other, "indexer", None), "cache", None) is cache
                for other in (getattr(self, "val_data", None), getattr(self, "test_data", None))
            )
            target = target_index(self.train_data.target_frame, self.train_data.clip_length_in_frames)
            store = DeviceClips.from_indexer(indexer, target, empty_cache=not shared)
            self._device_clip_store = store
        return store

    def train_dataloader(self) -> DataLoader:
        """Return the usual train dataloader, or with ``device_clips`` one over clip indices (no workers).

        The index loader keeps the usual loader's batch size, ``drop_last``, generator and sampler
        (shuffled with ``RandomSampler`` as anomalib's): under one seed both give the same clips in
        the same order. Lightning's distributed sampler replaces its sampler as it would the usual one.
        """
        loader = super().train_dataloader()  # type: ignore[misc]
        if not self.device_clips:
            return loader
        store = self.device_clip_store()
        sampler = loader.sampler
        kwargs: dict[str, Any] = {"shuffle": isinstance(sampler, RandomSampler)}
        if not isinstance(sampler, RandomSampler | SequentialSampler):
            kwargs = {"sampler": sampler}
        return DataLoader(
            ClipIndices(store.num_clips),
            batch_size=loader.batch_size,
            drop_last=loader.drop_last,
            generator=loader.generator,
            num_workers=0,  # an index batch costs microseconds: worker processes would only add latency
            collate_fn=ClipIndices.collate,
            **kwargs,
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:  # noqa: ANN401
        """Build the ``VideoBatch`` of a :class:`ClipIndexBatch` on ``device``; move other batches as usual.

        Other batches go to the model's hook when a trainer is attached (Lightning calls this one instead
        of the model's, so a model that overrides it keeps its behaviour), else to Lightning's default.
        """
        if isinstance(batch, ClipIndexBatch):
            return self.device_clip_store().batch(batch.ids, device, self.train_data.augmentations)
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if module is not None:
            return module.transfer_batch_to_device(batch, device, dataloader_idx)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)  # type: ignore[misc]
