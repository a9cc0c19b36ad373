"""Export of 5-D video models to ONNX and OpenVINO through anomalib's own ``export``.

anomalib's stock ``to_onnx`` probes the model with a 4-D image and fails on clips. The mixin
below traces a ``(N, T, 3, H, W)`` clip with a dynamic batch instead. The exported graph is the
whole anomalib pipeline (pre-processor, model, post-processor) and is **read-only**: test-time
state updates (MNAD's gated memory update) never run inside it, and exporting leaves the live
model's state exactly as it was. Besides anomalib's outputs (``pred_score``, ``pred_label``,
``anomaly_map``, ``pred_mask``) the graph returns the raw per-clip cues (``cue_<name>``) so that
deployed models can apply the papers' per-video protocol. The ONNX file (and the OpenVINO IR
converted from it) carries a :class:`~anomalib_vadproto.components.metadata.ModelMetadata` record: clip
length, sizes and the cue fusion, so a deployed model fuses cues exactly as ``anomalib test`` does, and
the training datamodule's camera options (``fps``, ``roi``), so it is fed the frames training saw.

The ONNX exporter (``torch.onnx`` with onnxscript's optimiser and onnx_ir's passes) logs one INFO record per
folded constant, removed node and deduplicated initializer, and prints its progress. During our export
call those records are raised to WARNING and the prints are off (:func:`quiet_onnx_exporter`); the export
logs its own progress and result instead. With this module's logger enabled for DEBUG, nothing is hidden.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from anomalib.deploy.export import ExportType
from torch import Tensor, nn

from anomalib_vadproto.components.metadata import METADATA_KEY, ModelMetadata, check_camera_options

logger = logging.getLogger(__name__)

ANOMALIB_OUTPUTS = ("pred_score", "pred_label", "anomaly_map", "pred_mask")
MIN_OPSET = 18
CALIBRATION_CLIPS = 300  # training clips that calibrate INT8 post-training quantisation
# Kept FP32 under INT8_PTQ: element-wise arithmetic and reductions. NNCF 3.4 also quantises the inputs
# and outputs of ReduceMean/ReduceSum; on CDDA's score (p ~ 1e-7, an 8-bit range of [0, 8e-5]) that
# rounded p to 0 and made 1/p infinite.
FLOAT_OPS = (
    "Add",
    "Subtract",
    "Multiply",
    "Divide",
    "Power",
    "SquaredDifference",
    "Sqrt",
    "Exp",
    "Log",
    "Softmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceProd",
    "ReduceL2",
    "ReduceMax",
    "ReduceMin",
    "NormalizeL2",
)
QUANTISABLE_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
#: Loggers of the ONNX exporter whose INFO records :func:`quiet_onnx_exporter` hides during an export.
EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextmanager
def quiet_onnx_exporter(level: int = logging.WARNING) -> Iterator[bool]:
    """Hide the ONNX exporter's records below ``level`` inside the block; restore the loggers' levels after.

    Only the loggers of :data:`EXPORTER_LOGGERS` that have no level of their own (they inherit the root's,
    INFO under anomalib's CLI) are raised, and only for the block. Nothing is hidden when this module's
    logger is enabled for DEBUG, nor from a logger whose level the user has set.

    Args:
        level: The lowest level still shown inside the block.

    Yields:
        Whether the exporter is quiet (``False`` at DEBUG): the caller then also turns off the exporter's
        progress prints (``torch.onnx.export(verbose=False)``).

    """
    if logger.isEnabledFor(logging.DEBUG):
        yield False
        return
    raised = [item for item in map(logging.getLogger, EXPORTER_LOGGERS) if item.level == logging.NOTSET]
    for item in raised:
        item.setLevel(level)
    try:
        yield True
    finally:
        for item in raised:
            item.setLevel(logging.NOTSET)


class ExportGraph(nn.Module):
    """The traced pipeline: pre-process, score (read-only), post-process, flatten to a tuple."""

    def __init__(self, module: nn.Module, output_names: list[str]) -> None:
        super().__init__()
        self.module = module
        self.output_names = output_names

    def forward(self, clip: Tensor) -> tuple[Tensor, ...]:
        """Return the outputs named in ``output_names`` for a raw ``[0, 1]`` clip."""
        outputs = self.module.predict_clip(clip)
        return tuple(outputs[name] for name in self.output_names)


class VideoExportMixin:
    """Mixin for video ``AnomalibModule`` subclasses: 5-D ONNX/OpenVINO export, read-only graph.

    Place it before ``AnomalibModule`` in the bases. The model must provide ``clip_length``,
    ``image_size`` and a torch model with ``score(clip) -> (InferenceBatch, cues)`` and a
    ``read_only`` attribute.
    """

    #: ``True`` while :meth:`to_openvino` runs: the ONNX file is then an intermediate in a temporary folder.
    _onnx_is_intermediate: bool = False
    #: The training datamodule's camera options (``fps``, ``roi``, ``folder_fps``;
    #: :func:`~anomalib_vadproto.components.metadata.check_camera_options`), written into the export's
    #: metadata so that deployment subsamples and crops new footage as training did; ``None``: none. The
    #: Lightning models set them at the start of a fit and keep them in their checkpoints.
    camera_options: dict[str, Any] | None = None

    def predict_clip(self, clip: Tensor) -> dict[str, Tensor]:
        """Full pipeline on a raw clip: pre-process, score, post-process.

        Args:
            clip: ``(N, T, 3, H, W)`` frames in ``[0, 1]``.

        Returns:
            Non-``None`` anomalib outputs plus ``cue_<name>`` raw cues, each with batch first.

        """
        x = self.pre_processor(clip) if self.pre_processor else clip
        predictions, cues = self.model.score(x)
        if self.post_processor:
            predictions = self.post_processor(predictions)
        outputs = {name: value for name, value in predictions._asdict().items() if value is not None}
        outputs.update({f"cue_{name}": value for name, value in cues.items()})
        return outputs

    @contextmanager
    def read_only_eval(self) -> Iterator[None]:
        """Evaluate without touching any state; the previous mode is restored on exit.

        Eval mode freezes the BN statistics and ``read_only`` disables test-time updates.
        """
        was_training = self.training
        self.eval()
        self.model.read_only = True
        try:
            yield
        finally:
            self.model.read_only = False
            self.train(was_training)

    def export_metadata(self, input_size: tuple[int, int] | None = None) -> ModelMetadata:
        """Describe the model for deployment: clip length, sizes, cue fusion, post-processor bounds.

        Args:
            input_size: ``(H, W)`` of the frames the exported graph accepts; ``None`` for any size.

        Returns:
            The record that :meth:`to_onnx` embeds in the exported file, with the training datamodule's
            camera options (:attr:`camera_options`) where it had any.

        """
        protocol = getattr(self, "protocol", None)
        bounds = {}
        post = getattr(self, "post_processor", None)
        for key, attribute in (
            ("image_min", "image_min"),
            ("image_max", "image_max"),
            ("image_threshold", "_image_threshold"),
        ):
            value = getattr(post, attribute, None) if post is not None else None
            value = float(value) if isinstance(value, Tensor) and value.numel() == 1 else None
            bounds[key] = value if value is not None and math.isfinite(value) else None
        camera = check_camera_options(getattr(self, "camera_options", None)) or {}
        return ModelMetadata(
            model=type(self).__name__,
            clip_length=int(self.clip_length),
            image_size=tuple(self.image_size),
            input_size=None if input_size is None else tuple(int(v) for v in input_size),
            cue_weights=dict(protocol.cue_weights) if protocol is not None else {},
            normal_cues=tuple(protocol.normal_cues) if protocol is not None else (),
            smoothing=bool(protocol.smoothing) if protocol is not None else False,
            smoothing_taps=int(getattr(protocol, "smoothing_taps", 15)),
            smoothing_sigma=float(getattr(protocol, "smoothing_sigma", 2.0)),
            smoothing_mode=str(getattr(protocol, "smoothing_mode", "nearest")),
            **bounds,
            **camera,
        )

    def example_clip(self, input_size: tuple[int, int] | None = None, batch: int = 2) -> Tensor:
        """Return a zero clip of the model's length at ``input_size`` (default: the model's image size)."""
        height, width = input_size or tuple(self.image_size)
        return torch.zeros(batch, self.clip_length, 3, int(height), int(width), device=self.device)

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,  # noqa: ANN401
    ) -> Path:
        """Export the read-only pipeline to ONNX for ``(N, T, 3, H, W)`` clips with dynamic ``N``.

        Args:
            export_root: Folder under which ``weights/onnx/<name>.onnx`` is written.
            model_file_name: File name without extension.
            input_size: ``(H, W)`` of the raw frames the graph accepts; the graph resizes them to the
                model's ``image_size``. Defaults to ``image_size``.
            **kwargs: Passed to ``torch.onnx.export``; opsets below 18 are raised to 18 (the dynamo
                exporter's down-conversion fails and leaves 18 anyway).

        Returns:
            Path of the ONNX file.

        """
        # Not at module level: importing ``anomalib.models`` here would register the plugin's models (the
        # ``.pth`` hook) while this module, which they subclass, is still half-imported.
        from anomalib.models.components.base.export_mixin.utils import create_export_root

        if kwargs.pop("dynamo", True) is False:
            msg = "Only the dynamo ONNX exporter is supported (anomalib 2.7 removed the legacy one)."
            raise ValueError(msg)
        kwargs.pop("dynamic_axes", None)
        opset = max(MIN_OPSET, int(kwargs.pop("opset_version", MIN_OPSET) or MIN_OPSET))
        export_root = create_export_root(export_root, ExportType.ONNX)
        onnx_path = export_root / f"{model_file_name}.onnx"
        clip = self.example_clip(input_size)
        name = type(self).__name__
        height, width = clip.shape[-2:]
        logger.info(
            "Exporting %s to ONNX: %d-frame clips of %dx%d, opset %d ...", name, clip.shape[1], height, width, opset
        )
        with self.read_only_eval(), torch.no_grad(), quiet_onnx_exporter() as quiet:
            names = list(self.predict_clip(clip))
            graph = ExportGraph(self, names).eval()
            torch.onnx.export(
                graph,
                (clip,),
                str(onnx_path),
                dynamo=True,
                opset_version=opset,
                input_names=kwargs.pop("input_names", ["input"]),
                output_names=names,
                dynamic_shapes=({0: torch.export.Dim("batch_size")},),
                verbose=kwargs.pop("verbose", False if quiet else None),
                **kwargs,
            )
        embed_metadata(onnx_path, self.export_metadata((int(height), int(width))))
        if self._onnx_is_intermediate:  # a temporary file, deleted once OpenVINO has converted it
            logger.info("Traced %s (outputs: %s); converting it to OpenVINO ...", name, ", ".join(names))
        else:
            logger.info("Exported %s to %s (outputs: %s)", name, onnx_path, ", ".join(names))
        return onnx_path

    def to_openvino(self, *args: Any, **kwargs: Any) -> Path:  # noqa: ANN401
        """Export to OpenVINO with anomalib's ``to_openvino``, through a temporary ONNX file from :meth:`to_onnx`.

        Args:
            *args: Positional arguments of anomalib's ``ExportMixin.to_openvino``.
            **kwargs: Keyword arguments of anomalib's ``ExportMixin.to_openvino``.

        Returns:
            Path of the OpenVINO ``.xml`` file.

        """
        self._onnx_is_intermediate = True
        try:
            return super().to_openvino(*args, **kwargs)
        finally:
            self._onnx_is_intermediate = False

    #: Under ``INT8_PTQ``, the quantisable layers (convolutions, matrix products) nearest to the outputs
    #: stay in FP32: on every path from an output back to the input, the first ``int8_fp32_depth`` of
    #: them (0 quantises every one). The cues compare two nearly equal tensors (a predicted frame and the
    #: frame, a query and its memory item); 8-bit rounding of the layers that produce them swamps the
    #: differences that the score ranks, while the deeper layers tolerate it.
    int8_fp32_depth: int = 1

    def _post_training_quantization_ov(self, model: Any, datamodule: Any = None) -> Any:  # noqa: ANN401
        """INT8 post-training quantisation (``CompressionType.INT8_PTQ``) calibrated on training clips.

        anomalib's version calibrates on ``val_dataloader()``, which for its video datamodules is the
        test split (``val_split_mode: same_as_test``): calibrating there would tune the INT8 ranges on
        test videos. Here NNCF sees up to 300 clips drawn (seeded) from the training split.
        Element-wise operations and the ``int8_fp32_depth`` layers nearest to the outputs
        (:func:`output_layers`) stay in FP32.

        Args:
            model: The OpenVINO model converted from the exported ONNX graph.
            datamodule: The datamodule whose training clips calibrate the quantiser.

        Returns:
            The quantised OpenVINO model.

        Raises:
            ValueError: Without a datamodule, or for a model that was never validated (its
                post-processor has no normalisation statistics, so the graph normalises with NaN, which
                OpenVINO's INT8 transformations cannot compile).

        """
        import nncf
        from torch.utils.data import DataLoader

        if datamodule is None:
            msg = "INT8_PTQ needs a datamodule: its training clips calibrate the quantiser (pass --data)."
            raise ValueError(msg)
        post = getattr(self, "post_processor", None)
        stats = [getattr(post, name, None) for name in ("image_min", "image_max")] if post is not None else []
        if any(isinstance(value, Tensor) and not bool(torch.isfinite(value).all()) for value in stats):
            msg = (
                f"INT8_PTQ needs a trained {type(self).__name__}: its post-processor has no normalisation"
                " statistics (they are set by the validation pass of `anomalib train`). Export after"
                " training, or pass the trained checkpoint (--ckpt_path)."
            )
            raise ValueError(msg)
        datamodule.setup("fit")
        dataset = datamodule.train_data
        loader = DataLoader(
            dataset,
            batch_size=1,
            shuffle=True,
            collate_fn=dataset.collate_fn,
            generator=torch.Generator().manual_seed(0),
        )
        calibration = nncf.Dataset(loader, lambda batch: batch.image.numpy())
        # The scores are products, quotients and logarithms of small errors and distances (CDDA's p is
        # ~1e-7): 8-bit element-wise ops round them to 0, so only convolutions and matrix products run
        # in INT8, and not those that produce the compared tensors.
        names = output_layers(model, int(self.int8_fp32_depth))
        logger.info("INT8_PTQ keeps %d layers next to the outputs in FP32: %s", len(names), ", ".join(names))
        ignored = nncf.IgnoredScope(types=list(FLOAT_OPS), names=names, validate=False)
        return nncf.quantize(
            model, calibration, subset_size=min(CALIBRATION_CLIPS, len(dataset)), ignored_scope=ignored
        )


def output_layers(model: Any, depth: int) -> list[str]:  # noqa: ANN401
    """Name the quantisable layers within ``depth`` such layers of the outputs of an OpenVINO model.

    Walks the graph upstream from every result. Each convolution or matrix product met on the way
    counts one; the walk along a path stops once it has met ``depth`` of them. Constants are not followed.

    Args:
        model: An ``openvino.Model``.
        depth: How many quantisable layers to collect along each path (``0``: none).

    Returns:
        The friendly names of the collected layers, in graph order.

    Raises:
        ValueError: If ``depth`` is negative.

    """
    if depth < 0:
        msg = f"int8_fp32_depth must be >= 0, got {depth}."
        raise ValueError(msg)
    if depth == 0:
        return []
    best: dict[str, int] = {}  # node -> the most layers still to collect when reaching it
    found: set[str] = set()
    stack = [(result.input_value(0).get_node(), depth) for result in model.get_results()]
    while stack:
        node, remaining = stack.pop()
        name = node.get_friendly_name()
        if best.get(name, -1) >= remaining:
            continue
        best[name] = remaining
        if node.get_type_name() in QUANTISABLE_OPS:
            found.add(name)
            remaining -= 1
            if remaining == 0:
                continue
        for value in node.inputs():
            source = value.get_source_output().get_node()
            if source.get_type_name() != "Constant":
                stack.append((source, remaining))
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in found]


def embed_metadata(onnx_path: Path | str, metadata: ModelMetadata) -> None:
    """Write ``metadata`` into the ONNX file's ``metadata_props`` (OpenVINO keeps it in ``rt_info``).

    Args:
        onnx_path: The exported ONNX file; external weight files are left untouched.
        metadata: The record to store under :data:`~anomalib_vadproto.components.metadata.METADATA_KEY`.

    """
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    proto.metadata_props.add(key=METADATA_KEY, value=metadata.to_json())
    onnx.save(proto, str(onnx_path))
