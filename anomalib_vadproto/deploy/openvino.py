"""Run an exported OpenVINO video model on clips.

anomalib 2.7's ``OpenVINOInferencer`` cannot take 5-D input (it builds an image batch), so the
plugin compiles the IR itself. The graph already contains the pre-processor and post-processor,
so clips go in as raw ``[0, 1]`` frames ``(N, T, 3, H, W)`` at the export's input size. The IR (or
ONNX file) carries the model's :class:`~anomalib_vadproto.components.metadata.ModelMetadata`. The PyTorch back-end
is :mod:`.torch_backend`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from anomalib_vadproto.components.metadata import METADATA_KEY, ModelMetadata

from .clip_model import check_clips, check_metadata

PRECISIONS = ("f32", "bf16", "f16", None)


@functools.cache
def openvino_core() -> Any:  # noqa: ANN401
    """Return the process's one OpenVINO ``Core``, created on first use and kept until exit.

    OpenVINO's documentation recommends one ``Core`` per application; here it is also a matter of
    process health. In OpenVINO 2026.4 a ``Core`` that compiles for the CPU installs an alternate
    signal stack on the calling thread and, when it is destroyed, puts back the stack that was there
    before it. Two Cores destroyed in creation order (not reverse) leave the thread's alternate
    signal stack pointing at freed memory, and the next signal whose handler runs on that stack
    (a Python handler, such as the SIGCHLD handler torch's DataLoader installs) kills the process
    with SIGSEGV. Every Core in this package is this one.
    """
    import openvino as ov

    return ov.Core()


def read_openvino_model(core: Any, path: Path) -> Any:  # noqa: ANN401
    """Read an IR (``model.xml`` with its ``model.bin``) or an ONNX file with OpenVINO.

    Raises:
        ValueError: Naming the file when OpenVINO cannot read it (malformed XML, a missing or truncated
            ``.bin``, not an ONNX model); OpenVINO's own error is chained.

    """
    try:
        return core.read_model(path)
    except RuntimeError as error:
        kind = "ONNX model" if path.suffix.lower() == ".onnx" else "OpenVINO IR (model.xml with its model.bin)"
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = f": {lines[-1]}" if lines else ""  # the last line is OpenVINO's reason; the rest is its call stack
        msg = f"{path} is not a readable {kind}{reason}; re-export it with `anomalib export`."
        raise ValueError(msg) from error


class OpenVINOClipModel:
    """A compiled OpenVINO model that maps clips to named outputs.

    Args:
        path: The exported ``model.xml`` (or the ``model.onnx`` it was converted from).
        device: OpenVINO device name (``"CPU"``, ``"GPU"``, ``"AUTO"``).
        precision: Inference precision of the layers that are not quantised: ``"f32"`` (default: the
            scores match PyTorch), ``"bf16"`` or ``"f16"``, or ``None`` for the device's default.
            OpenVINO's CPU plugin defaults to bf16 on CPUs with bf16 instructions, which breaks parity
            with PyTorch; an INT8 export keeps its INT8 layers either way.
        static_batches: How many batch sizes get a graph compiled for that size (static shapes,
            compiled on first use, a second or so each); calls with further sizes run the exported
            graph with its dynamic batch. OpenVINO plans memory and kernels once for a static shape
            instead of at every call; ``0`` runs every call on the dynamic graph.

    Attributes:
        metadata: Clip length, sizes and cue fusion of the model.
        input_size: ``(H, W)`` of the frames the graph accepts.
        output_names: The graph's outputs.
        compiled: The graph as exported (dynamic batch), compiled at load time.

    """

    def __init__(
        self, path: str | Path, device: str = "CPU", precision: str | None = "f32", static_batches: int = 4
    ) -> None:
        if precision not in PRECISIONS:
            msg = f"precision must be one of {', '.join(map(str, PRECISIONS))}, got {precision!r}."
            raise ValueError(msg)
        if static_batches < 0:
            msg = f"static_batches must be >= 0, got {static_batches}."
            raise ValueError(msg)
        path = Path(path)
        if not path.is_file():
            msg = f"No OpenVINO model at {path}: export one with `anomalib export --export_type openvino`."
            raise FileNotFoundError(msg)
        core = openvino_core()
        model = read_openvino_model(core, path)
        shape = model.input(0).get_partial_shape()
        dims = [dim.get_length() if dim.is_static else None for dim in shape]
        if len(dims) != 5 or None in dims[1:] or dims[2] != 3:
            msg = f"{path} is not a video clip model: its input has shape {shape}, expected (N, T, 3, H, W)."
            raise ValueError(msg)
        self.input_shape = tuple(dims)
        self.input_size: tuple[int, int] = (int(dims[3]), int(dims[4]))
        self.metadata = self._read_metadata(model, path)
        check_metadata(self.metadata, int(dims[1]), self.input_size, path)
        config = {"INFERENCE_PRECISION_HINT": precision} if precision and device.upper() in ("CPU", "GPU") else {}
        self._core, self._model, self._device, self._config = core, model, device.upper(), config
        self.static_batches = static_batches
        self._static: dict[int, Any] = {}  # batch size -> graph compiled for it
        self._dynamic: Any = None
        self.output_names = [output.get_any_name() for output in model.outputs]
        self.compiled = self._compile(None if dims[0] is None else dims[0])  # checks that the graph compiles

    def _compile(self, batch: int | None) -> Any:  # noqa: ANN401
        """Compile (once) the graph for ``batch`` clips (static shapes), or for any batch (``None``)."""
        if batch is None:
            if self._dynamic is None:
                self._dynamic = self._core.compile_model(self._model, self._device, self._config)
            return self._dynamic
        if batch not in self._static:
            model = self._model.clone()
            model.reshape({model.input(0).get_any_name(): [batch, *self.input_shape[1:]]})
            self._static[batch] = self._core.compile_model(model, self._device, self._config)
        return self._static[batch]

    def compiled_for(self, batch: int) -> Any:  # noqa: ANN401
        """Return the compiled graph for ``batch`` clips: static for the first ``static_batches`` sizes seen."""
        if batch in self._static or (self.input_shape[0] is None and len(self._static) < self.static_batches):
            return self._compile(batch)
        return self._compile(self.input_shape[0])

    @staticmethod
    def _read_metadata(model: object, path: Path) -> ModelMetadata:
        for key in (["framework", METADATA_KEY], [METADATA_KEY]):
            if model.has_rt_info(key):
                return ModelMetadata.from_json(model.get_rt_info(key).astype(str))
        msg = (
            f"{path} has no {METADATA_KEY} metadata (clip length, cue fusion): it was not exported by"
            " anomalib-vadproto, or by an older version; re-export it with `anomalib export`."
        )
        raise ValueError(msg)

    @property
    def clip_length(self) -> int:
        """Frames per clip the graph was exported for."""
        return int(self.input_shape[1])

    def __call__(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """Score ``(N, T, 3, H, W)`` float clips in ``[0, 1]``; returns every output by name.

        Raises:
            ValueError: For clips of another layout, type or value range, or with NaN (see
                :func:`~.clip_model.check_clips`).

        """
        clips = check_clips(clips, self.clip_length, self.input_size)
        compiled = self.compiled_for(len(clips))
        results = compiled(clips)
        return {name: results[output] for name, output in zip(self.output_names, compiled.outputs, strict=True)}
