"""Datamodules that check local data instead of trying to download it.

anomalib's ``UCSDped`` starts a download whenever ``root/<category>`` is missing; offline, or with
a typo in the path, that surfaces as a network error. :class:`LocalUCSDped` is the same datamodule
(same arguments, same layout, same batches) that never downloads and says exactly what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from anomalib.data import UCSDped
from anomalib.data.datasets.video.ucsd_ped import UCSDpedClipsIndexer
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype
from torchvision.tv_tensors import Mask


def check_ucsd_layout(root: Path | str, category: str) -> Path:
    """Check ``root/category`` holds the UCSDped layout anomalib reads, and return it.

    Raises:
        FileNotFoundError: With the missing path and how to create the data.

    """
    folder = Path(root) / category
    how = (
        "Create it with `anomalib-vadproto make-synthetic <root>` (synthetic data, category 'synthetic'), or"
        " lay out UCSD Ped2 there (for the shared copy: python shared/tools/materialize_ucsd_ped2.py"
        " shared/data/ucsd_ped2_compact <root>)."
    )
    if not folder.is_dir():
        msg = f"No dataset at {folder}: expected {folder}/Train/Train001/*.tif and {folder}/Test/Test001/*.tif. {how}"
        raise FileNotFoundError(msg)
    for split in ("Train", "Test"):
        videos = [p for p in (folder / split).glob(f"{split}*") if p.is_dir() and not p.name.endswith("_gt")]
        if not videos or not any(any(v.glob("*.tif")) for v in videos):
            msg = f"{folder / split} has no video folders of .tif frames ({split}001/001.tif, ...). {how}"
            raise FileNotFoundError(msg)
    return folder


class FrameCache(dict):
    """Decoded frames per video folder, shared (not copied) by ``deepcopy``: val is a deep copy of test."""

    def __deepcopy__(self, memo: dict) -> FrameCache:
        return self


class CachedUCSDpedClipsIndexer(UCSDpedClipsIndexer):
    """``UCSDpedClipsIndexer`` that decodes each video folder once and cuts clips from memory.

    anomalib's indexer lists the folder and decodes every frame of every clip, so with stride-1 clips
    of ``T`` frames each frame is decoded ``T`` times per epoch; on a 2-core CPU that decoding is a
    quarter of a lite training epoch. Here frames are kept as ``uint8`` (Ped2: ~1.2 GB for train and
    test) and converted exactly as :func:`anomalib.data.utils.image.read_image` does, so batches are
    bit-identical. Masks are cached the same way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.cache = FrameCache()

    def _video(self, folder: str, pattern: str, mode: str) -> torch.Tensor:
        key = (folder, pattern)
        if key not in self.cache:
            paths = sorted(Path(folder).glob(pattern))
            self.cache[key] = torch.stack([pil_to_tensor(Image.open(path).convert(mode)) for path in paths])
        return self.cache[key]

    def get_clip(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], int]:
        """Return ``(frames [T, 3, H, W] float in [0, 1], empty audio, {}, video index)``."""
        if idx >= self.num_clips():
            msg = f"Index {idx} out of range ({self.num_clips()} number of clips)"
            raise IndexError(msg)
        video_idx, clip_idx = self.get_clip_location(idx)
        frames = self._video(self.video_paths[video_idx], "*.tif", "RGB")[self.clips[video_idx][clip_idx].long()]
        return to_dtype(frames, torch.float32, scale=True), torch.empty((1, 0)), {}, video_idx

    def get_mask(self, idx: int) -> torch.Tensor | None:
        """Return the clip's ground-truth masks ``[T, H, W]`` (uint8 0/1), or ``None`` without masks."""
        video_idx, clip_idx = self.get_clip_location(idx)
        folder = self.mask_paths[video_idx]
        if folder == "":
            return None
        masks = self._video(folder, "*.bmp", "L")[self.clips[video_idx][clip_idx].long(), 0]
        return Mask(masks > 0, dtype=torch.uint8)


class LocalUCSDped(UCSDped):
    """anomalib's :class:`~anomalib.data.UCSDped` for data already on disk: never downloads.

    Takes ``UCSDped``'s arguments. ``prepare_data`` checks the layout and raises a
    ``FileNotFoundError`` naming what is missing.

    Args:
        cache_frames: Decode each video once and keep its frames in memory
            (:class:`CachedUCSDpedClipsIndexer`); same batches, far less decoding. Worth it with
            ``num_workers: 0`` (worker processes start each epoch with an empty cache).
        **kwargs: ``UCSDped``'s arguments.

    """

    def __init__(self, cache_frames: bool = False, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(**kwargs)
        self.cache_frames = cache_frames

    def prepare_data(self) -> None:
        """Check the local layout (no download)."""
        check_ucsd_layout(self.root, self.category)

    def _setup(self, _stage: str | None = None) -> None:
        super()._setup(_stage)
        if self.cache_frames:
            for dataset in (self.train_data, self.test_data):
                dataset.indexer_cls = CachedUCSDpedClipsIndexer
                dataset._setup_clips()  # noqa: SLF001
