"""What a deployed clip model needs besides its graph: clip length, sizes and the papers' cue fusion.

The export writes a :class:`ModelMetadata` as JSON into the ONNX file's ``metadata_props`` under
:data:`METADATA_KEY`; OpenVINO's converter carries it into the IR (``rt_info["framework"]``), so
``model.xml`` holds it too and no side file can get lost. A ``.pt`` export holds the whole
Lightning module, from which the same record is built directly.

The export (:mod:`anomalib_vadproto.components.export`) writes the record and the deployment back-ends
(:mod:`anomalib_vadproto.deploy`) read it; both import it from here, so the model side never imports
the deployment side. This module imports nothing heavy (no torch, no OpenVINO).

**Camera options.** A model trained on :class:`~anomalib_vadproto.VideoFolder` with ``fps`` or ``roi``
records them (:func:`check_camera_options`; ``folder_fps`` with ``fps``) and ``anomalib-vadproto score`` applies
them to new footage. A record that holds them has format version 2, so that an older reader, which would
ignore them and score the uncropped, full-rate footage, refuses it ("upgrade"); a record without them
stays version 1, as before. Version-1 records load unchanged, without camera options.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

METADATA_KEY = "anomalib_vadproto"
"""Key of the JSON record in ONNX ``metadata_props`` and in OpenVINO ``rt_info["framework"]``."""
FORMAT_VERSION = 2
"""The newest format version this reader reads (and writes for a record with camera options)."""
#: The first format version with camera options (``fps``, ``folder_fps``, ``roi``); records without them are version 1.
CAMERA_OPTIONS_VERSION = 2
_CAMERA_KEYS = ("fps", "folder_fps", "roi")
#: What a record without ``folder_fps`` assumes for frame folders (``VideoFolder``'s default).
DEFAULT_FOLDER_FPS = 25.0


def _rate(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < float(value) < 10_000:
        msg = f"{name} must be a positive frame rate (frames per second) or null, got {value!r}."
        raise ValueError(msg)
    return float(value)


def _roi(value: Sequence[int] | None) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    roi = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    good = len(roi) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in roi)
    if not good or min(roi[:2]) < 0 or min(roi[2:]) < 1:
        msg = f"roi must be [x, y, w, h] in the recording's pixels (x, y >= 0; w, h >= 1) or null, got {value!r}."
        raise ValueError(msg)
    return roi  # type: ignore[return-value]


def check_camera_options(options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check and keep the camera options a deployed model must apply: ``fps``, ``roi`` and ``folder_fps``.

    Args:
        options: A datamodule's camera options (``VideoFolder.camera_options()``), or ``None``; other keys
            are ignored.

    Returns:
        ``{"fps": float | None, "roi": [x, y, w, h] | None, "folder_fps": float | None}`` (``folder_fps`` only
        with ``fps``), or ``None`` when neither ``fps`` nor ``roi`` is set: the model then takes footage as it
        comes.

    Raises:
        ValueError: For a rate that is not positive or a ``roi`` that is not four integers.

    """
    if not options:
        return None
    fps, roi = _rate("fps", options.get("fps")), _roi(options.get("roi"))
    if fps is None and roi is None:
        return None
    folder_fps = _rate("folder_fps", options.get("folder_fps")) if fps is not None else None
    return {
        "fps": fps,
        "roi": None if roi is None else list(roi),
        "folder_fps": (folder_fps or DEFAULT_FOLDER_FPS) if fps is not None else None,
    }


def _size(value: Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) < 1:
        msg = f"a size must be (height, width) with positive values, got {value!r}."
        raise ValueError(msg)
    return size  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelMetadata:
    """Facts about an exported video model that the inferencer and the normalisers need.

    Attributes:
        model: Class name of the Lightning model (``"Mnad"``, ...).
        clip_length: Frames per clip ``T``; the model scores the last frame of each clip.
        image_size: ``(height, width)`` the graph's pre-processor resizes frames to.
        input_size: ``(height, width)`` of the frames the graph accepts, or ``None`` when any size
            is accepted (PyTorch).
        cue_weights: Cue name -> fusion weight of the papers' protocol (outputs ``cue_<name>``).
        normal_cues: Cues where higher means normal (PSNR); they enter the fusion as ``1 - g``.
        smoothing: Whether the protocol smooths each video's fused score in time (APN).
        smoothing_taps: Gaussian length of the smoothing.
        smoothing_sigma: Gaussian standard deviation in frames.
        smoothing_mode: Border handling of the smoothing (see ``metrics.protocol.smooth_per_video``).
        image_min: Lower bound of the raw ``pred_score`` seen by anomalib's post-processor on the
            validation set (``None`` when it was never fitted).
        image_max: Upper bound, as above.
        image_threshold: Raw threshold of the post-processor; it maps to 0.5 in the normalised
            ``pred_score`` the graph returns.
        fps: Camera option: the frame rate the model was trained at (``VideoFolder``'s ``fps``): new
            footage is subsampled to it by timestamps. ``None``: every frame.
        folder_fps: Camera option: the frame rate of frame folders, which carry no timestamps (set with
            ``fps`` only; 25 when a record with ``fps`` lacks it).
        roi: Camera option: the region ``(x, y, w, h)`` of the recording the model was trained on, cropped
            from each frame before the model's resize. ``None``: the whole frame.
        version: Format version of this record; by default the lowest that holds it: 1, or
            :data:`CAMERA_OPTIONS_VERSION` with camera options.

    """

    model: str
    clip_length: int
    image_size: tuple[int, int]
    input_size: tuple[int, int] | None = None
    cue_weights: Mapping[str, float] = field(default_factory=dict)
    normal_cues: tuple[str, ...] = ()
    smoothing: bool = False
    smoothing_taps: int = 15
    smoothing_sigma: float = 2.0
    smoothing_mode: str = "nearest"
    image_min: float | None = None
    image_max: float | None = None
    image_threshold: float | None = None
    fps: float | None = None
    folder_fps: float | None = None
    roi: tuple[int, int, int, int] | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        camera = check_camera_options({"fps": self.fps, "roi": self.roi, "folder_fps": self.folder_fps}) or {}
        object.__setattr__(self, "fps", camera.get("fps"))
        object.__setattr__(self, "folder_fps", camera.get("folder_fps"))
        object.__setattr__(self, "roi", None if camera.get("roi") is None else tuple(camera["roi"]))
        needed = CAMERA_OPTIONS_VERSION if camera else 1
        object.__setattr__(self, "version", max(int(self.version or needed), needed))
        if int(self.clip_length) < 1:
            msg = f"clip_length must be at least 1, got {self.clip_length!r}."
            raise ValueError(msg)
        object.__setattr__(self, "clip_length", int(self.clip_length))
        object.__setattr__(self, "image_size", _size(self.image_size))
        object.__setattr__(self, "input_size", _size(self.input_size))
        object.__setattr__(self, "cue_weights", {str(k): float(v) for k, v in dict(self.cue_weights).items()})
        object.__setattr__(self, "normal_cues", tuple(str(c) for c in self.normal_cues))
        unknown = sorted(set(self.normal_cues) - set(self.cue_weights))
        if unknown:
            msg = f"normal_cues {unknown} are not among the weighted cues {sorted(self.cue_weights)}."
            raise ValueError(msg)

    @property
    def camera_options(self) -> dict[str, Any] | None:
        """Camera options to apply to new footage (:func:`check_camera_options`); ``None`` when there are none."""
        return check_camera_options({"fps": self.fps, "roi": self.roi, "folder_fps": self.folder_fps})

    @property
    def cue_outputs(self) -> tuple[str, ...]:
        """Graph output names of the weighted cues (``cue_<name>``), sorted by cue name."""
        return tuple(f"cue_{name}" for name in sorted(self.cue_weights))

    def to_json(self) -> str:
        """Serialise to a compact JSON string (camera options only where set: a record without them reads as before)."""
        record = {key: value for key, value in asdict(self).items() if value is not None or key not in _CAMERA_KEYS}
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        """Parse :meth:`to_json`'s output; unknown keys (from newer versions) are ignored.

        Raises:
            ValueError: If the text is not a JSON object with at least ``model``, ``clip_length`` and
                ``image_size``, or if it was written by a newer, incompatible format version.

        """
        try:
            record: Any = json.loads(text)
        except json.JSONDecodeError as error:
            msg = f"The model's {METADATA_KEY} metadata is not valid JSON ({error})."
            raise ValueError(msg) from error
        if not isinstance(record, dict):
            msg = f"The model's {METADATA_KEY} metadata must be a JSON object, got {type(record).__name__}."
            raise ValueError(msg)
        if int(record.get("version") or 1) > FORMAT_VERSION:
            msg = (
                f"The model's metadata has format version {record['version']}; this anomalib-vadproto reads up to"
                f" {FORMAT_VERSION}. Upgrade anomalib-vadproto."
            )
            raise ValueError(msg)
        known = {f.name for f in fields(cls)}
        missing = sorted({"model", "clip_length", "image_size"} - set(record))
        if missing:
            msg = f"The model's {METADATA_KEY} metadata lacks {missing}."
            raise ValueError(msg)
        return cls(**{key: value for key, value in record.items() if key in known})
