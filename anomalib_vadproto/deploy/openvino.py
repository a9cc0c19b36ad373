"""Run an exported OpenVINO video model on clips.

anomalib 2.7's ``OpenVINOInferencer`` cannot take 5-D input (it builds an image batch), so the
plugin compiles the IR itself. The graph already contains the pre-processor and post-processor,
so clips go in as raw ``[0, 1]`` frames ``(N, T, 3, H, W)`` at the export's input size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OpenVINOClipModel:
    """A compiled OpenVINO model that maps clips to named outputs.

    Args:
        path: The exported ``model.xml``.
        device: OpenVINO device name (``"CPU"``, ``"GPU"``, ``"AUTO"``).

    """

    def __init__(self, path: str | Path, device: str = "CPU") -> None:
        import openvino as ov

        path = Path(path)
        if not path.is_file():
            msg = f"No OpenVINO model at {path}: export one with `anomalib export --export_type openvino`."
            raise FileNotFoundError(msg)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(path), device)
        self.input_shape = tuple(self.compiled.input(0).get_partial_shape().to_string().strip("[]").split(","))
        self.output_names = [output.get_any_name() for output in self.compiled.outputs]

    @property
    def clip_length(self) -> int:
        """Frames per clip the graph was exported for."""
        return int(self.input_shape[1])

    def __call__(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """Score ``(N, T, 3, H, W)`` float32 clips in ``[0, 1]``; returns every output by name."""
        clips = np.ascontiguousarray(clips, dtype=np.float32)
        expected = tuple(int(v) if v.strip().isdigit() else None for v in self.input_shape)
        mismatch = clips.ndim != len(expected) or any(
            e is not None and e != s for e, s in zip(expected, clips.shape, strict=True)
        )
        if mismatch:
            msg = f"The model expects clips of shape {expected} (None = any batch size), got {clips.shape}."
            raise ValueError(msg)
        results = self.compiled(clips)
        return {name: results[output] for name, output in zip(self.output_names, self.compiled.outputs, strict=False)}
