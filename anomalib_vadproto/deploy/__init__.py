"""Deployment of exported video models: frame sources, clip-buffer inference, score normalisation.

* :func:`open_source` reads video files, frame folders, stream URLs and cameras (PyAV) as RGB frames
  (:mod:`.video_io`); :class:`CameraSource` applies the camera options an export carries (``fps``, ``roi``).
* :func:`load_clip_model` (:mod:`.loader`) loads an OpenVINO IR / ONNX file (:class:`OpenVINOClipModel`,
  :mod:`.openvino`) or anomalib's torch export (:class:`TorchClipModel`, :mod:`.torch_backend`); each
  is a :class:`ClipModel` (:mod:`.clip_model`) and carries its :class:`ModelMetadata` (clip length,
  sizes, cue fusion; defined in :mod:`anomalib_vadproto.components.metadata`).
* :class:`ClipInferencer` buffers the last ``T`` frames and scores each new frame (:mod:`.inferencer`).
* :func:`make_normalizer` turns raw cues into scores: the papers' ``offline`` per-video protocol or
  the causal ``running``, ``running-std`` and ``validation`` normalisers (:mod:`.normalization`).
* :func:`score_source` (:mod:`.scoring`) does all of it for one source; :func:`write_outputs`
  (:mod:`.writers`) writes CSV/JSON/PNG (and an overlay video); ``anomalib-vadproto score``
  (:mod:`.score`) is the command that runs both.
"""

from anomalib_vadproto.components.metadata import METADATA_KEY, ModelMetadata

from .clip_model import ClipModel
from .inferencer import ClipBuffer, ClipInferencer, FrameResult, to_model_input
from .loader import load_clip_model
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
from .scoring import ScoreResult, SourceFailure, score_source
from .torch_backend import TorchClipModel
from .video_io import (
    CameraOptions,
    CameraSource,
    Frame,
    FrameFolderSource,
    VideoReadError,
    VideoSource,
    VideoWriter,
    open_source,
)
from .writers import OutputExistsError, write_outputs

__all__ = [
    "METADATA_KEY",
    "NORMALIZATIONS",
    "CameraOptions",
    "CameraSource",
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
