"""The PyTorch back-end: run a torch export (``anomalib export --export_type torch``) or a live module on clips.

anomalib 2.7's torch export is ``torch.save({"model": module})``: a pickle of the whole Lightning
module, so loading it runs code from the file. Like anomalib's ``TorchInferencer``, loading one needs
``TRUST_REMOTE_CODE=1`` in the environment. The module scores clips through the same read-only
``predict_clip`` pipeline that the ONNX/OpenVINO export traces (pre-processor, model,
post-processor), at any frame size. The OpenVINO back-end is :mod:`.openvino`; :func:`~.loader.load_clip_model`
picks one of them by file type.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anomalib_vadproto.components.metadata import ModelMetadata

from .clip_model import check_clips

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)


def _torch_device(device: str) -> str:
    """Map OpenVINO-style names (``CPU``, ``GPU``) to torch devices."""
    return {"cpu": "cpu", "gpu": "cuda", "auto": "cpu"}.get(device.lower(), device)


class TorchClipModel:
    """A video ``AnomalibModule`` (from a ``.pt`` export or in memory) that maps clips to named outputs.

    Args:
        path: The exported ``model.pt``.
        device: Torch device (``cpu``, ``cuda``, ...); ``CPU``/``GPU`` are accepted.

    Attributes:
        module: The Lightning module, in eval mode.
        metadata: Clip length, sizes and cue fusion (``input_size`` is ``None``: any size).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: Without ``TRUST_REMOTE_CODE=1``, or if the file holds no video model.

    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch

        path = Path(path)
        if not path.is_file():
            msg = f"No PyTorch model at {path}: export one with `anomalib export --export_type torch`."
            raise FileNotFoundError(msg)
        if os.environ.get("TRUST_REMOTE_CODE", "0").lower() not in {"1", "true"}:
            msg = (
                f"{path} is a pickle (anomalib's torch export); loading it runs code from the file. If you trust it,"
                " set TRUST_REMOTE_CODE=1 (or pass --trust-remote-code), or use the OpenVINO export."
            )
            raise ValueError(msg)
        checkpoint = torch.load(path, map_location=_torch_device(device), weights_only=False)  # nosec B614
        module = checkpoint.get("model") if isinstance(checkpoint, dict) else None
        self._init(module, device, path)

    @classmethod
    def from_module(cls, module: Any, device: str = "cpu") -> TorchClipModel:  # noqa: ANN401
        """Wrap a live video model (e.g. straight after training) without exporting it."""
        model = cls.__new__(cls)
        model._init(module, device, None)
        return model

    def _init(self, module: Any, device: str, path: Path | None) -> None:  # noqa: ANN401
        if not (hasattr(module, "predict_clip") and hasattr(module, "export_metadata")):
            msg = f"{path or module!r} does not hold an anomalib-vadproto video model (no predict_clip)."
            raise ValueError(msg)
        self.device = _torch_device(device)
        self.module = module.to(self.device).eval()
        if hasattr(module, "use_preferred_memory_format"):
            module.use_preferred_memory_format()  # channels-last on CPU, as anomalib's Engine runs it
        self.metadata: ModelMetadata = module.export_metadata(None)

    @property
    def clip_length(self) -> int:
        """Frames per clip."""
        return self.metadata.clip_length

    def __call__(self, clips: np.ndarray | Tensor) -> dict[str, np.ndarray]:
        """Score ``(N, T, 3, H, W)`` float clips in ``[0, 1]`` read-only; returns every output by name.

        Args:
            clips: A NumPy array or a torch tensor (any device); it is converted and checked first.

        Raises:
            ValueError: For clips of another layout (channels-last ``(N, T, H, W, 3)`` included), type
                or value range, or with NaN (see :func:`~.clip_model.check_clips`).

        """
        import torch

        clips = check_clips(clips, self.clip_length, None)
        with self.module.read_only_eval(), torch.no_grad():
            outputs = self.module.predict_clip(torch.from_numpy(clips).to(self.device))
        return {name: value.detach().cpu().numpy() for name, value in outputs.items()}
