"""Clip-buffer inference: score every frame of a video or stream with an exported clip model.

A clip model scores the *last* frame of a clip of ``T`` consecutive frames. :class:`ClipInferencer`
keeps the last ``T`` frames in a ring buffer (:class:`ClipBuffer`); frame ``k`` is scored from
frames ``k - T + 1 .. k`` as soon as it arrives, so the first ``T - 1`` frames of a source get no
score. Clips are batched (``batch_size``) for files; ``batch_size=1`` gives one result per frame
with no delay (live streams).

Frames are converted exactly as training reads them: ``uint8`` RGB to float32 in ``[0, 1]`` with
torchvision's ``to_dtype(scale=True)`` (anomalib's ``read_image``), and, when the frame size differs
from the graph's input size, resized with torchvision's bilinear ``resize`` without antialiasing,
the transform of the models' pre-processor. For exact parity with ``anomalib test``, export with
``--input_size`` equal to the video's frame size: the graph then resizes to the model's image size
itself, with the same transform as the Lightning pre-processor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .clip_model import ClipModel

logger = logging.getLogger(__name__)


class ClipBuffer:
    """A ring buffer of the last ``length`` frames.

    Args:
        length: Frames per clip ``T``.

    Example:
        >>> buffer = ClipBuffer(3)
        >>> [buffer.push(np.full((1,), k)) for k in range(4)]
        [False, False, True, True]
        >>> buffer.clip().ravel().tolist()
        [1, 2, 3]

    """

    def __init__(self, length: int) -> None:
        if length < 1:
            msg = f"clip length must be at least 1, got {length}."
            raise ValueError(msg)
        self.length = int(length)
        self._frames: np.ndarray | None = None
        self._next = 0  # slot the next frame goes to (= the oldest frame once full)
        self.count = 0

    @property
    def full(self) -> bool:
        """Whether ``length`` frames have been pushed."""
        return self.count >= self.length

    def push(self, frame: np.ndarray) -> bool:
        """Add a frame (overwriting the oldest once full); returns :attr:`full`.

        Raises:
            ValueError: If the frame's shape differs from the first frame's.

        """
        if self._frames is None:
            self._frames = np.empty((self.length, *frame.shape), dtype=frame.dtype)
        elif frame.shape != self._frames.shape[1:]:
            msg = f"frame {self.count} has shape {frame.shape}, the earlier frames {self._frames.shape[1:]}."
            raise ValueError(msg)
        self._frames[self._next] = frame
        self._next = (self._next + 1) % self.length
        self.count += 1
        return self.full

    def clip(self) -> np.ndarray:
        """Return the buffered frames, oldest first: ``(length, *frame_shape)`` (a copy).

        Raises:
            RuntimeError: Before the buffer is full.

        """
        if not self.full:
            msg = f"the clip needs {self.length} frames, {self.count} buffered."
            raise RuntimeError(msg)
        return np.concatenate((self._frames[self._next :], self._frames[: self._next]))

    def reset(self) -> None:
        """Forget all frames (e.g. at a cut or when a new video starts)."""
        self._frames, self._next, self.count = None, 0, 0


def to_model_input(frames: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Convert RGB frames ``(..., H, W, 3)`` to float32 ``(..., 3, h, w)`` in ``[0, 1]``, as in training.

    ``uint8`` is scaled by torchvision's ``to_dtype(scale=True)``; float input is taken as ``[0, 1]``.
    With ``size`` different from ``(H, W)``, the frames are resized with torchvision's bilinear
    ``resize(antialias=False)``, the pre-processor's transform.

    Args:
        frames: One frame ``(H, W, 3)`` (or ``(H, W)`` grey) or a stack ``(N, H, W, 3)``.
        size: Target ``(h, w)``; ``None`` keeps the size.

    Returns:
        float32 array, channels first.

    Raises:
        ValueError: For any other shape.

    """
    import torch
    from torchvision.transforms.v2.functional import resize, to_dtype

    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[..., None]  # one grey frame (H, W) -> (H, W, 1)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    if frames.ndim < 3 or frames.shape[-1] != 3:
        msg = f"frames must be (..., H, W, 3) RGB, (..., H, W, 1) or (H, W) grey, got shape {frames.shape}."
        raise ValueError(msg)
    tensor = torch.from_numpy(np.require(frames, requirements=["C", "W"])).movedim(-1, -3)
    tensor = to_dtype(tensor, torch.float32, scale=True) if tensor.dtype == torch.uint8 else tensor.float()
    if size is not None and tuple(tensor.shape[-2:]) != tuple(size):
        tensor = resize(tensor, list(size), antialias=False)
    return tensor.numpy()


@dataclass
class FrameResult:
    """The model's outputs for one frame of the source.

    Attributes:
        index: Frame index in the source, from 0.
        outputs: Output name -> value for this frame (scalars for scores and cues, ``(1, h, w)``
            arrays for maps); empty for the first ``T - 1`` frames, which get no score.
        image: The source frame, when the inferencer keeps images (overlays of live streams).

    """

    index: int
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    image: np.ndarray | None = None

    @property
    def scored(self) -> bool:
        """Whether the frame was scored (it ends a full clip)."""
        return bool(self.outputs)


class ClipInferencer:
    """Score each frame of a frame sequence with a clip model.

    Args:
        model: A clip model (:class:`~anomalib_vadproto.deploy.OpenVINOClipModel`,
            :class:`~anomalib_vadproto.deploy.TorchClipModel` or any :class:`ClipModel`).
        resize: Resize frames whose size differs from the model's input size (default). ``False``
            raises instead.
        outputs: Output names to keep per frame (default: all). Dropping the maps saves memory on long
            videos.

    Example:
        >>> inferencer = ClipInferencer(load_clip_model("model.xml"))  # doctest: +SKIP
        >>> for result in inferencer.run(frame.image for frame in open_source("video.mp4")):  # doctest: +SKIP
        ...     print(result.index, result.outputs.get("pred_score"))

    """

    def __init__(self, model: ClipModel, resize: bool = True, outputs: Iterable[str] | None = None) -> None:
        self.model = model
        self.metadata = model.metadata
        self.clip_length = self.metadata.clip_length
        self.input_size = self.metadata.input_size  # None: the model takes any size
        self.resize = resize
        self.outputs = None if outputs is None else set(outputs)
        self._source_size: tuple[int, int] | None = None
        self._resize_logged = False

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Convert one RGB frame to the model's input ``(3, h, w)`` float32 (see :func:`to_model_input`).

        Raises:
            ValueError: If the frame is not an image, its size differs from the first frame's, or it
                differs from the model's input size with ``resize=False``.

        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3)):
            msg = f"a frame must be (H, W, 3) RGB or (H, W) grey, got shape {image.shape}."
            raise ValueError(msg)
        size = tuple(image.shape[:2])
        if self._source_size is None:
            self._source_size = size
        elif size != self._source_size:
            msg = f"the frame size changed from {self._source_size} to {size} within one source."
            raise ValueError(msg)
        target = self.input_size
        if target is not None and size != tuple(target):
            if not self.resize:
                msg = f"frames of {size} do not match the model's input size {tuple(target)} (resizing is off)."
                raise ValueError(msg)
            if not self._resize_logged:
                logger.info(
                    "Resizing frames from %s to the model's input size %s (export with --input_size %s for exact"
                    " parity with anomalib test).",
                    size,
                    tuple(target),
                    list(size),
                )
                self._resize_logged = True
        return to_model_input(image, target)

    def predict(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on prepared clips ``(N, T, 3, h, w)``; keep only the selected outputs."""
        outputs = self.model(clips)
        return {k: v for k, v in outputs.items() if self.outputs is None or k in self.outputs}

    def run(
        self, frames: Iterable[np.ndarray], batch_size: int = 1, keep_images: bool = False
    ) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per frame, in order.

        Frame ``k >= T - 1`` is scored from frames ``k - T + 1 .. k``; earlier frames are yielded with
        empty outputs. With ``batch_size > 1``, up to that many clips are scored at once, so results
        arrive in groups (the last group may be smaller).

        Args:
            frames: RGB frames ``(H, W, 3)`` (``uint8`` or float in ``[0, 1]``), e.g. from
                :func:`~anomalib_vadproto.deploy.open_source`.
            batch_size: Clips per model call.
            keep_images: Attach each source frame to its result.

        Raises:
            ValueError: On a bad ``batch_size`` or frame (see :meth:`prepare`).

        """
        if batch_size < 1:
            msg = f"batch_size must be at least 1, got {batch_size}."
            raise ValueError(msg)
        self._source_size = None
        buffer = ClipBuffer(self.clip_length)
        clips: list[np.ndarray] = []
        pending: list[FrameResult] = []
        for index, image in enumerate(frames):
            result = FrameResult(index, image=np.asarray(image) if keep_images else None)
            if not buffer.push(self.prepare(image)):
                yield result
                continue
            clips.append(buffer.clip())
            pending.append(result)
            if len(clips) == batch_size:
                yield from self._score(clips, pending)
                clips, pending = [], []
        if clips:
            yield from self._score(clips, pending)

    def _score(self, clips: list[np.ndarray], pending: list[FrameResult]) -> Iterator[FrameResult]:
        outputs = self.predict(np.stack(clips))
        for i, result in enumerate(pending):
            result.outputs = {name: value[i] for name, value in outputs.items()}
            yield result
