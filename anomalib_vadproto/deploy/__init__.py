"""Deployment of exported video models: frame sources, clip-buffer inference, score normalisation.

* :func:`open_source` reads video files, frame folders, stream URLs and cameras (PyAV) as RGB frames.
* :func:`load_clip_model` loads an OpenVINO IR / ONNX file (:class:`OpenVINOClipModel`) or anomalib's
  torch export (:class:`TorchClipModel`); each carries its :class:`ModelMetadata` (clip length,
  sizes, cue fusion).
* :class:`ClipInferencer` buffers the last ``T`` frames and scores each new frame.
* :func:`make_normalizer` turns raw cues into scores: the papers' ``offline`` per-video protocol or
  the causal ``running``, ``running-std`` and ``validation`` normalisers.
* :func:`score_source` / ``anomalib-vadproto score`` do all of it for one source and write
  CSV/JSON/PNG (and an overlay video).
"""

from .clip_model import ClipModel, load_clip_model
from .inferencer import ClipBuffer, ClipInferencer, FrameResult, to_model_input
from .metadata import METADATA_KEY, ModelMetadata
from .normalization import (
    NORMALIZATIONS,
    Normalizer,
    OfflineNormalizer,
    RunningMinMaxNormalizer,
    RunningStdNormalizer,
    ValidationNormalizer,
    fuse_with_bounds,
    make_normalizer,
)
from .openvino import OpenVINOClipModel, openvino_core
from .score import OutputExistsError, ScoreResult, SourceFailure, score_source, write_outputs
from .torch_model import TorchClipModel
from .video_io import Frame, FrameFolderSource, VideoReadError, VideoSource, VideoWriter, open_source

__all__ = [
    "METADATA_KEY",
    "NORMALIZATIONS",
    "ClipBuffer",
    "ClipInferencer",
    "ClipModel",
    "Frame",
    "FrameFolderSource",
    "FrameResult",
    "ModelMetadata",
    "Normalizer",
    "OfflineNormalizer",
    "OpenVINOClipModel",
    "OutputExistsError",
    "RunningMinMaxNormalizer",
    "RunningStdNormalizer",
    "ScoreResult",
    "SourceFailure",
    "TorchClipModel",
    "ValidationNormalizer",
    "VideoReadError",
    "VideoSource",
    "VideoWriter",
    "fuse_with_bounds",
    "load_clip_model",
    "make_normalizer",
    "open_source",
    "openvino_core",
    "score_source",
    "to_model_input",
    "write_outputs",
]
