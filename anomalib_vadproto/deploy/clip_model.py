"""The interface of an exported clip model, shared by the OpenVINO and PyTorch back-ends.

A clip model maps raw ``(N, T, 3, H, W)`` float32 clips in ``[0, 1]`` to named per-clip outputs
(``pred_score``, ``pred_label``, ``anomaly_map``, ``pred_mask``, ``cue_<name>``) and describes itself
with a :class:`~anomalib_vadproto.deploy.metadata.ModelMetadata`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .metadata import ModelMetadata

MODEL_SUFFIXES = (".xml", ".onnx", ".pt")


@runtime_checkable
class ClipModel(Protocol):
    """What the inferencer needs from a back-end."""

    metadata: ModelMetadata

    def __call__(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """Score ``(N, T, 3, H, W)`` float32 clips in ``[0, 1]``; return every output by name."""
        ...


def check_clips(clips: np.ndarray, clip_length: int, input_size: tuple[int, int] | None) -> np.ndarray:
    """Return ``clips`` as contiguous float32 after checking their shape against the model.

    Args:
        clips: ``(N, T, 3, H, W)`` frames in ``[0, 1]``.
        clip_length: The model's ``T``.
        input_size: The model's ``(H, W)``, or ``None`` for any size.

    Raises:
        ValueError: With the expected and the given shape.

    """
    clips = np.ascontiguousarray(clips, dtype=np.float32)
    height, width = input_size if input_size is not None else (None, None)
    expected = (None, clip_length, 3, height, width)
    if clips.ndim != 5 or any(e is not None and e != s for e, s in zip(expected, clips.shape, strict=True)):
        msg = f"The model expects clips of shape {expected} (None = any size), got {clips.shape}."
        raise ValueError(msg)
    return clips


def check_metadata(metadata: ModelMetadata, clip_length: int, input_size: tuple[int, int] | None, path: Path) -> None:
    """Check that the metadata stored with a graph agrees with the graph's input shape.

    Raises:
        ValueError: On a clip-length or input-size mismatch (a file assembled from two exports).

    """
    if metadata.clip_length != clip_length:
        msg = (
            f"{path}: the graph takes clips of {clip_length} frames but its metadata says {metadata.clip_length}"
            f" ({metadata.model}); re-export the model."
        )
        raise ValueError(msg)
    if metadata.input_size is not None and input_size is not None and tuple(metadata.input_size) != input_size:
        msg = (
            f"{path}: the graph takes frames of {input_size} but its metadata says {metadata.input_size};"
            " re-export the model."
        )
        raise ValueError(msg)


def load_clip_model(path: str | Path, device: str = "CPU", precision: str | None = "f32") -> ClipModel:
    """Load an exported model by its file type.

    Args:
        path: ``model.xml`` (OpenVINO IR) or ``model.onnx`` (both run on OpenVINO), or ``model.pt``
            (``anomalib export --export_type torch``; a pickle, so loading it needs
            ``TRUST_REMOTE_CODE=1``, as for anomalib's ``TorchInferencer``).
        device: OpenVINO device (``CPU``, ``GPU``, ``AUTO``) or torch device (``cpu``, ``cuda``;
            ``CPU``/``GPU`` are mapped to them).
        precision: OpenVINO's inference precision of the unquantised layers (``f32`` by default, so a
            CPU with bf16 instructions does not silently compute in bf16; ``bf16``, ``f16``, or ``None``
            for the device's own choice). PyTorch models ignore it.

    Returns:
        The loaded model.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: For an unknown file type, a model without metadata, or a metadata/graph mismatch.

    """
    path = Path(path)
    if not path.is_file():
        msg = f"No model file at {path}: export one with `anomalib export --export_type openvino|torch ...`."
        raise FileNotFoundError(msg)
    suffix = path.suffix.lower()
    if suffix in (".xml", ".onnx"):
        from .openvino import OpenVINOClipModel

        return OpenVINOClipModel(path, device=device, precision=precision)
    if suffix == ".pt":
        from .torch_model import TorchClipModel

        return TorchClipModel(path, device=device)
    msg = f"{path}: unknown model type {suffix!r}; expected one of {', '.join(MODEL_SUFFIXES)}."
    raise ValueError(msg)
