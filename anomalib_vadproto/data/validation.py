"""A validation set of whole training videos held out: ``val_split_mode: from_train``.

anomalib's video datamodules validate on a copy of the test set (``same_as_test``), so nothing may be
chosen on what validation reports. With ``from_train`` the plugin's datamodules hold out whole normal
training videos instead: they are never trained on (no clip of a held-out video is in the training
split), and validation reports each model's cues on them (``val_<cue>``, e.g. the prediction PSNR).
That is the honest place to choose epochs, learning rates or widths.

Which videos are held out:

* ``val_videos: 2`` (a number): that many videos, spread evenly over the sorted training videos, so
  the choice does not depend on the seed and covers the whole recording;
* ``val_videos: [Train003, Train011]`` (names): those videos (a UCSD folder name, an Avenue or
  ShanghaiTech file stem such as ``01`` or ``01_001``);
* ``val_videos`` unset: ``val_split_ratio`` of the videos (at least one), spread evenly as above.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomalib.data.utils import ValSplitMode

from anomalib_vadproto.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

__all__ = ["HeldOutVideosMixin", "held_out_indices", "video_name"]


def video_name(path: str | Path) -> str:
    """Return the name a video is held out by: a folder's name, a file's stem (``Train003``, ``01_001``)."""
    return Path(path).stem


def held_out_indices(
    names: Sequence[str], val_videos: int | Sequence[str] | None, val_split_ratio: float = 0.5
) -> list[int]:
    """Positions in ``names`` (the training videos, in order) of the videos to hold out for validation.

    Args:
        names: The training videos' names.
        val_videos: A number of videos (spread evenly over the sorted names), a list of names, or
            ``None`` for ``val_split_ratio`` of the videos.
        val_split_ratio: Share of the videos held out when ``val_videos`` is ``None``.

    Returns:
        list[int]: Sorted positions; at least one video is held out and at least one is trained on.

    Raises:
        InvalidArgumentError: (a ``ValueError``) for a number outside ``1 .. len(names) - 1``, an unknown
            or repeated name, or a list that would hold out every video.

    """
    total = len(names)
    if isinstance(val_videos, str):
        val_videos = [val_videos]
    if val_videos is None:
        if not 0 < val_split_ratio < 1:
            msg = f"val_split_ratio must be between 0 and 1 (exclusive) to hold out videos; got {val_split_ratio!r}"
            raise InvalidArgumentError(msg)
        val_videos = min(max(1, round(val_split_ratio * total)), total - 1)
    if isinstance(val_videos, bool) or not isinstance(val_videos, int | Sequence):
        msg = f"val_videos must be a number of videos or a list of video names; got {val_videos!r}"
        raise InvalidArgumentError(msg)
    if isinstance(val_videos, int):
        if not 1 <= val_videos < total:
            msg = (
                f"val_videos={val_videos}: hold out at least 1 and at most {total - 1} of the {total} training"
                " videos (at least one must be trained on)"
            )
            raise InvalidArgumentError(msg)
        order = sorted(range(total), key=lambda i: names[i])
        # The middle of each of val_videos equal stretches of the sorted videos.
        return sorted(order[int((k + 0.5) * total / val_videos)] for k in range(val_videos))
    wanted = [str(name) for name in val_videos]
    position = {name: i for i, name in enumerate(names)}
    unknown = [name for name in wanted if name not in position]
    if unknown:
        shown = ", ".join(sorted(names)[:8]) + (", ..." if total > 8 else "")
        msg = f"val_videos names {', '.join(unknown)}, which are not training videos (they are: {shown})"
        raise InvalidArgumentError(msg)
    if len(set(wanted)) != len(wanted) or not 1 <= len(wanted) < total:
        msg = f"val_videos must name distinct training videos, at least 1 and at most {total - 1}; got {wanted}"
        raise InvalidArgumentError(msg)
    return sorted(position[name] for name in wanted)


class HeldOutVideosMixin:
    """``val_split_mode: from_train`` for a video datamodule: validate on whole held-out training videos.

    Mixed in before an anomalib video datamodule; the datamodule's ``__init__`` stores ``val_videos``.
    Other ``val_split_mode`` values keep anomalib's behaviour (anomalib's own ``from_train`` would
    split the training videos at random by ``val_split_ratio`` with no way to name them).
    """

    val_videos: int | list[str] | None = None
    #: Names of the videos held out by the last setup (empty unless ``from_train``).
    held_out_videos: tuple[str, ...] = ()

    def _create_val_split(self) -> None:
        if self.val_split_mode != ValSplitMode.FROM_TRAIN:  # type: ignore[attr-defined]
            super()._create_val_split()  # type: ignore[misc]
            return
        train: Any = self.train_data  # type: ignore[attr-defined]
        names = [video_name(path) for path in train.samples.image_path]
        held = set(held_out_indices(names, self.val_videos, self.val_split_ratio))  # type: ignore[attr-defined]
        kept = [i for i in range(len(names)) if i not in held]
        # subsample deep-copies the dataset (the frame cache is shared, see FrameCache) and re-indexes clips.
        self.val_data = train.subsample(sorted(held))
        self.train_data = train.subsample(kept)
        self.held_out_videos = tuple(names[i] for i in sorted(held))
        logger.info(
            "Validation: %d held-out training video(s), never trained on: %s",
            len(held),
            ", ".join(self.held_out_videos),
        )
