"""Load an exported clip model with the back-end its file type calls for.

``model.xml`` (OpenVINO IR) and ``model.onnx`` run on OpenVINO (:class:`~.openvino.OpenVINOClipModel`);
``model.pt`` (``anomalib export --export_type torch``) runs on PyTorch
(:class:`~.torch_backend.TorchClipModel`). This module sits above both back-ends and the
:class:`~.clip_model.ClipModel` interface they share, so the imports run one way:
``loader -> openvino | torch_backend -> clip_model``. Neither back-end imports torch or OpenVINO until
a model is loaded.
"""

from __future__ import annotations

from pathlib import Path

from .clip_model import ClipModel
from .openvino import OpenVINOClipModel
from .torch_backend import TorchClipModel

MODEL_SUFFIXES = (".xml", ".onnx", ".pt")


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
        ValueError: For an unknown file type, a file OpenVINO cannot read (malformed ``model.xml``, missing
            ``model.bin``), a model without metadata, or a metadata/graph mismatch.

    """
    path = Path(path)
    if not path.is_file():
        msg = f"No model file at {path}: export one with `anomalib export --export_type openvino|torch ...`."
        raise FileNotFoundError(msg)
    suffix = path.suffix.lower()
    if suffix in (".xml", ".onnx"):
        return OpenVINOClipModel(path, device=device, precision=precision)
    if suffix == ".pt":
        return TorchClipModel(path, device=device)
    msg = f"{path}: unknown model type {suffix!r}; expected one of {', '.join(MODEL_SUFFIXES)}."
    raise ValueError(msg)
