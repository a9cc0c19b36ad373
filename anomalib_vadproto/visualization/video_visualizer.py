"""Visualizer for video anomaly-detection batches.

anomalib's default :class:`~anomalib.visualization.ImageVisualizer` iterates the test/predict batch
and hands each item to :func:`~anomalib.visualization.image.item_visualizer.visualize_image_item`.
For a :class:`~anomalib.data.VideoBatch` every item holds a whole clip ``(T, C, H, W)``, which
``torchvision``'s ``to_pil_image`` rejects ("pic should be 2/3 dimensional"). This module provides
:class:`VideoVisualizer`, which turns every clip of a video batch into an
:class:`~anomalib.data.ImageItem` for its *target frame* (the last frame of the clip, the one that
is scored), renders it with the parent's item visualisation and writes it as a PNG to
``<output_dir>/<video name>/<frame:05d>.png``. At the end of a test run it also plots, per test video,
the papers'-protocol anomaly score against the ground truth (``<output_dir>/score_curves/<video>.png``,
from the model's ``protocol_result``; ``score_curves=False`` turns it off).

Score curves cost one PNG per video and are on by default. Per-frame images cost about 0.6 s per frame at
640x360 (16 minutes for 1,329 frames of CUHK Avenue), so they are off by default and written only when
asked: ``frame_images="anomalous"`` (frames the model flags or the ground truth marks) or ``"all"``, thinned
with ``save_every`` and capped with ``max_frame_images_per_video``. From anomalib's CLI::

    --model.visualizer VideoVisualizer --model.visualizer.init_args.frame_images anomalous

Plain image batches (4-D ``image``, no ``video_path``) are handed to
:class:`~anomalib.visualization.ImageVisualizer` unchanged.

Example:
    >>> from anomalib_vadproto.visualization import VideoVisualizer
    >>> visualizer = VideoVisualizer(frame_images="all", save_every=5)  # one PNG every 5 frames of each video
    >>> # model = Mnad(visualizer=visualizer); engine.test(model, datamodule)

"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data import ImageBatch, ImageItem, NumpyImageBatch, NumpyImageItem
from anomalib.visualization import ImageVisualizer

if TYPE_CHECKING:
    from anomalib.data import VideoBatch, VideoItem
    from anomalib.models import AnomalibModule
    from lightning.pytorch import Trainer
    from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["FRAME_IMAGES", "VideoVisualizer", "video_item_to_image_item"]

#: Which target frames :class:`VideoVisualizer` writes as PNGs (``frame_images``).
FRAME_IMAGES = ("none", "anomalous", "all")

#: File extensions stripped from ``video_path`` to get the per-video output folder name.
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv"})


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """Return ``tensor`` detached, on the CPU and stripped of any ``tv_tensors`` subclass.

    Args:
        tensor (torch.Tensor): Any tensor (possibly a ``torchvision.tv_tensors`` subclass).

    Returns:
        torch.Tensor: A plain CPU tensor sharing no autograd history.

    """
    return tensor.detach().cpu().as_subclass(torch.Tensor)


def _last_2d(tensor: torch.Tensor) -> torch.Tensor:
    """Reduce a map to 2-D by repeatedly taking the last entry of the leading dimension.

    ``(1, h, w)`` becomes ``(h, w)``; a per-frame ``(T, h, w)`` map becomes the target-frame map.

    Args:
        tensor (torch.Tensor): Tensor with at least two dimensions.

    Returns:
        torch.Tensor: The trailing ``(h, w)`` slice.

    """
    while tensor.ndim > 2:
        tensor = tensor[-1]
    return tensor


def _to_unit_range(image: torch.Tensor) -> torch.Tensor:
    """Convert an image tensor to float values in ``[0, 1]``.

    ``uint8`` images are divided by 255. Float images already in ``[0, 1]`` are kept; images in
    ``[-1, 1]`` (a ``Normalize(0.5, 0.5)`` pre-processor) are mapped back with ``(x + 1) / 2``;
    anything else (e.g. ImageNet-normalised, or 0-255 floats) is min-max scaled.

    Args:
        image (torch.Tensor): Image tensor of any dtype.

    Returns:
        torch.Tensor: ``float32`` tensor with values in ``[0, 1]``.

    """
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    image = image.float()
    if image.numel() == 0:
        return image
    low, high = float(image.min()), float(image.max())
    eps = 1e-3
    if low >= -eps and high <= 1.0 + eps:
        return image.clamp(0.0, 1.0)
    if low >= -1.0 - eps and high <= 1.0 + eps:
        return ((image + 1.0) / 2.0).clamp(0.0, 1.0)
    if low >= -eps and high <= 255.0 + eps:
        return (image / 255.0).clamp(0.0, 1.0)
    return (image - low) / max(high - low, 1e-12)


def _to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Make a ``(C, H, W)`` image three-channel (grayscale pre-processors give ``C == 1``).

    Args:
        image (torch.Tensor): ``(1, H, W)`` or ``(3, H, W)`` image.

    Returns:
        torch.Tensor: ``(3, H, W)`` image.

    """
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.contiguous()


def _resize_map(tensor: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize a 2-D map to ``size`` if its shape differs.

    Args:
        tensor (torch.Tensor): ``(h, w)`` map.
        size (tuple[int, int]): Target ``(H, W)``.
        mode (str): ``"bilinear"`` for continuous maps, ``"nearest"`` for masks.

    Returns:
        torch.Tensor: ``(H, W)`` map with the input's dtype (booleans stay boolean).

    """
    if tuple(tensor.shape) == tuple(size):
        return tensor
    is_bool = tensor.dtype == torch.bool
    resized = tensor.float()[None, None]
    if mode == "bilinear":
        resized = F.interpolate(resized, size=size, mode="bilinear", align_corners=False)
    else:
        resized = F.interpolate(resized, size=size, mode="nearest")
    resized = resized[0, 0]
    return resized > 0.5 if is_bool else resized


def _scalar(value: Any, index: int | None) -> torch.Tensor | None:  # noqa: ANN401
    """Pick one item's scalar (score or label) out of a batch field.

    Args:
        value (Any): Batch field (``(B,)`` or ``(B, ...)`` tensor), item field, or ``None``.
        index (int | None): Item index within the batch, or ``None`` for an item field.

    Returns:
        torch.Tensor | None: A 0-d tensor (the last entry if the field holds several values per
        item, e.g. per-frame scores), or ``None``.

    """
    if value is None:
        return None
    tensor = torch.as_tensor(value)
    if index is not None and tensor.ndim > 0:
        tensor = tensor[index]
    return _plain(tensor.reshape(-1)[-1])


def _field(data: Any, name: str, index: int | None) -> torch.Tensor | None:  # noqa: ANN401
    """Read one item's tensor field from a batch (``index`` given) or an item (``index=None``).

    Args:
        data (Any): A ``VideoBatch`` / ``VideoItem`` (or any object with the same attributes).
        name (str): Field name.
        index (int | None): Item index within the batch, or ``None`` for an item.

    Returns:
        torch.Tensor | None: The item's tensor (plain, on CPU), or ``None`` if unset.

    """
    value = getattr(data, name, None)
    if value is None:
        return None
    tensor = torch.as_tensor(value)
    if index is not None:
        tensor = tensor[index]
    return _plain(tensor)


def _video_name(video_path: str | None, fallback: str) -> str:
    """Return the per-video output folder name.

    Args:
        video_path (str | None): Path of the video folder (``.../Test003``) or video file
            (``.../01_0014.avi``).
        fallback (str): Name used when the path is unknown.

    Returns:
        str: The folder name, with a known video-file extension removed.

    """
    if not video_path:
        return fallback
    path = Path(str(video_path).rstrip("/\\"))
    name = path.stem if path.suffix.lower() in VIDEO_EXTENSIONS else path.name
    return name or fallback


def _is_anomalous(data: Any, index: int) -> bool:  # noqa: ANN401
    """Tell whether clip ``index`` of a batch is predicted (``pred_label``) or labelled (``gt_label``) anomalous.

    Args:
        data (Any): A video batch.
        index (int): Clip index within the batch.

    Returns:
        bool: ``True`` if either label of the clip's target frame is set.

    """
    labels = (_scalar(getattr(data, name, None), index) for name in ("pred_label", "gt_label"))
    return any(label is not None and bool(label) for label in labels)


def video_item_to_image_item(data: VideoBatch | VideoItem, index: int | None = None) -> ImageItem:
    """Build the :class:`~anomalib.data.ImageItem` of a clip's target frame.

    The image is ``original_image[-1]`` (the target frame at full resolution) as a ``(3, H0, W0)``
    float image in ``[0, 1]``; when ``original_image`` is missing, the last frame of ``image``
    (the pre-processed clip) is used, de-normalised to ``[0, 1]`` and made three-channel. Masks and
    the anomaly map are reduced to the target frame and resized to the image size (nearest for
    masks, bilinear for the map). The anomaly map is clamped to ``[0, 1]``, the range anomalib's
    post-processor produces and the item visualiser expects.

    Args:
        data (VideoBatch | VideoItem): A video batch (then ``index`` selects the clip) or a single
            video item (``index=None``).
        index (int | None, optional): Clip index within ``data`` when it is a batch.
            Defaults to ``None``.

    Returns:
        ImageItem: The target-frame item with ``image``, ``gt_mask``, ``anomaly_map``,
        ``pred_mask``, ``pred_score``, ``pred_label`` and ``gt_label`` (those that are set).

    Raises:
        ValueError: If neither ``original_image`` nor ``image`` is set.

    """
    original = _field(data, "original_image", index)
    if original is not None:
        frame = original[-1] if original.ndim == 4 else original
    else:
        clip = _field(data, "image", index)
        if clip is None:
            msg = "Video item has neither `original_image` nor `image`; nothing to visualise."
            raise ValueError(msg)
        frame = clip[-1] if clip.ndim == 4 else clip
    frame = _to_rgb(_to_unit_range(frame))
    size = (int(frame.shape[-2]), int(frame.shape[-1]))

    fields: dict[str, Any] = {"image": frame}
    anomaly_map = _field(data, "anomaly_map", index)
    if anomaly_map is not None:
        anomaly_map = _resize_map(_last_2d(anomaly_map).float(), size, mode="bilinear")
        fields["anomaly_map"] = anomaly_map.clamp(0.0, 1.0)
    for name in ("gt_mask", "pred_mask"):
        mask = _field(data, name, index)
        if mask is not None:
            fields[name] = _resize_map(_last_2d(mask).bool(), size, mode="nearest")
    for name in ("pred_score", "pred_label", "gt_label"):
        value = _scalar(getattr(data, name, None), index)
        if value is not None:
            fields[name] = value.bool() if name != "pred_score" else value.float()
    return ImageItem(**fields)


class VideoVisualizer(ImageVisualizer):
    """Image visualizer that also handles video (clip) batches.

    With ``frame_images`` other than ``"none"``, for every selected clip of a test/predict
    :class:`~anomalib.data.VideoBatch` the target frame is turned into an
    :class:`~anomalib.data.ImageItem` (see :func:`video_item_to_image_item`), rendered with the parent's
    item visualisation (same ``fields``, overlays, sizes, colours and text) and saved as
    ``<output_dir>/<video name>/<frame:05d>.png``, where ``<video name>`` is the last component of
    ``video_path`` (without a video-file extension) and ``<frame>`` the target-frame index from
    ``frames``. As in :class:`~anomalib.visualization.ImageVisualizer`, ``output_dir`` defaults to
    ``<trainer.default_root_dir>/images``. Batches with a 4-D ``image`` and no ``video_path`` are
    delegated to :class:`~anomalib.visualization.ImageVisualizer`.

    When a test run ends (``on_test_end``, after the model's ``on_test_epoch_end`` has computed the
    papers' protocol), the per-video fused anomaly scores of the model's ``protocol_result`` (see
    :class:`~anomalib_vadproto.metrics.protocol.ProtocolResult`) are drawn against the ground-truth
    anomalous frames, one PNG per test video, with :func:`~anomalib_vadproto.visualization.plot_protocol_result`
    into ``<output_dir>/score_curves/<video>.png``. Models without a protocol result (or a run that
    produced none) get no curves.

    Args:
        fields (list[str] | None, optional): Fields to show side by side. Defaults to
            ``["image", "gt_mask"]``.
        overlay_fields (list[tuple[str, list[str]]] | None, optional): ``(base, [overlays])``
            panels. Defaults to ``[("image", ["anomaly_map"]), ("image", ["pred_mask"])]``.
        field_size (tuple[int, int], optional): ``(width, height)`` of each panel.
            Defaults to ``(256, 256)``.
        fields_config (dict[str, dict[str, Any]] | None, optional): Per-field options merged with
            anomalib's defaults. Defaults to ``None``.
        overlay_fields_config (dict[str, dict[str, Any]] | None, optional): Per-overlay options
            merged with anomalib's defaults. Defaults to ``None``.
        text_config (dict[str, Any] | None, optional): Panel-title options merged with anomalib's
            defaults. Defaults to ``None``.
        output_dir (str | Path | None, optional): Root folder of the PNGs. Defaults to ``None``
            (``<trainer.default_root_dir>/images``, set on the first batch).
        save_every (int, optional): Write only frames whose index is a multiple of ``save_every``
            (``frame % save_every == 0``), to bound disk use on long videos. Applies to video
            batches only. Defaults to ``1`` (every selected frame).
        score_curves (bool, optional): Write the per-video score curves at the end of a test run.
            Defaults to ``True``.
        frame_images (str, optional): Which target frames of video batches to write as PNGs:
            ``"none"``, ``"anomalous"`` (``pred_label`` or ``gt_label`` set: detections, false alarms and
            misses) or ``"all"``. Defaults to ``"none"`` (rendering costs about 0.6 s per 640x360 frame).
        max_frame_images_per_video (int | None, optional): Write at most this many PNGs per video and
            run (the first selected frames). Defaults to ``None`` (no cap).

    Raises:
        ValueError: If ``save_every`` or ``max_frame_images_per_video`` is smaller than 1, or
            ``frame_images`` is not one of :data:`FRAME_IMAGES`.

    Example:
        >>> visualizer = VideoVisualizer(field_size=(240, 160), frame_images="anomalous", save_every=10)
        >>> visualizer.frame_images, visualizer.save_every
        ('anomalous', 10)

    """

    def __init__(
        self,
        fields: list[str] | None = None,
        overlay_fields: list[tuple[str, list[str]]] | None = None,
        field_size: tuple[int, int] = (256, 256),
        fields_config: dict[str, dict[str, Any]] | None = None,
        overlay_fields_config: dict[str, dict[str, Any]] | None = None,
        text_config: dict[str, Any] | None = None,
        output_dir: str | Path | None = None,
        save_every: int = 1,
        score_curves: bool = True,
        frame_images: Literal["none", "anomalous", "all"] = "none",
        max_frame_images_per_video: int | None = None,
    ) -> None:
        super().__init__(
            fields=fields,
            overlay_fields=overlay_fields,
            field_size=field_size,
            fields_config=fields_config,
            overlay_fields_config=overlay_fields_config,
            text_config=text_config,
            output_dir=output_dir,
        )
        if int(save_every) < 1:
            msg = f"save_every must be >= 1, got {save_every}."
            raise ValueError(msg)
        if frame_images not in FRAME_IMAGES:
            msg = f"frame_images must be one of {', '.join(FRAME_IMAGES)}; got {frame_images!r}."
            raise ValueError(msg)
        if max_frame_images_per_video is not None and int(max_frame_images_per_video) < 1:
            msg = f"max_frame_images_per_video must be >= 1 or None, got {max_frame_images_per_video}."
            raise ValueError(msg)
        self.save_every = int(save_every)
        self.score_curves = bool(score_curves)
        self.frame_images = frame_images
        self.max_frame_images_per_video = (
            None if max_frame_images_per_video is None else int(max_frame_images_per_video)
        )
        self._result_before_test: Any = None
        self._images_per_video: Counter[str] = Counter()
        self._said_frames_off = False

    @staticmethod
    def is_video_batch(batch: Any) -> bool:  # noqa: ANN401
        """Tell whether ``batch`` must go through the video path.

        Args:
            batch (Any): A batch (or item) dataclass.

        Returns:
            bool: ``False`` for anomalib image batches/items and for objects with a 4-D ``image``
            and no ``video_path`` attribute; ``True`` otherwise (video batches, including those
            whose ``image`` holds a single frame per clip).

        """
        if isinstance(batch, ImageBatch | NumpyImageBatch | ImageItem | NumpyImageItem):
            return False
        if hasattr(batch, "video_path"):
            return True
        image = getattr(batch, "image", None)
        return image is not None and getattr(image, "ndim", 0) == 5

    def visualize(
        self,
        predictions: Any,  # noqa: ANN401
    ) -> Image.Image | list[Image.Image | None] | None:
        """Visualize image or video predictions.

        Video batches and items are converted to target-frame :class:`~anomalib.data.ImageItem`
        objects first; everything else goes to :meth:`ImageVisualizer.visualize`.

        Args:
            predictions (Any): ``ImageItem``, ``NumpyImageItem``, ``ImageBatch``,
                ``NumpyImageBatch``, ``VideoItem`` or ``VideoBatch`` (torch).

        Returns:
            Image.Image | list[Image.Image | None] | None: One image for an item or a one-item
            batch, a list for larger batches (as the parent does).

        """
        if not self.is_video_batch(predictions):
            return super().visualize(predictions)
        from anomalib.data import VideoItem

        if isinstance(predictions, VideoItem):
            return super().visualize(video_item_to_image_item(predictions))
        images = [
            ImageVisualizer.visualize(self, video_item_to_image_item(predictions, index))
            for index in range(len(predictions))
        ]
        return images[0] if len(images) == 1 else images

    def _output_root(self, trainer: Trainer) -> Path:
        """Return (and remember) the PNG root folder, as :class:`ImageVisualizer` does.

        Args:
            trainer (Trainer): Trainer (only ``default_root_dir`` is read).

        Returns:
            Path: ``output_dir``, defaulting to ``<trainer.default_root_dir>/images``.

        """
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir) / "images"
            logger.info("Writing video visualisations under %s", self.output_dir)
        return Path(self.output_dir)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: AnomalibModule,
        outputs: VideoBatch | ImageBatch,
        batch: VideoBatch | ImageBatch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the selected target frames of the batch as PNGs (see ``frame_images``).

        Args:
            trainer (Trainer): Trainer; ``default_root_dir`` sets the default output folder.
            pl_module (AnomalibModule): The model (unused).
            outputs (VideoBatch | ImageBatch): Step output; anomalib updates ``batch`` in place and
                returns it, so this is normally ``batch``. It is preferred when it is a batch with
                an anomaly map, in case a model returned a new instance.
            batch (VideoBatch | ImageBatch): The post-processed batch.
            batch_idx (int): Batch index (used only to name clips without a ``video_path``).
            dataloader_idx (int, optional): Dataloader index. Defaults to ``0``.

        """
        if not self.is_video_batch(batch):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
            return
        if not getattr(trainer, "is_global_zero", True):  # DDP: every rank scores every clip; rank 0 writes
            return

        if self.frame_images == "none":
            if not self._said_frames_off:
                self._said_frames_off = True
                logger.info(
                    "Per-frame images are off (score curves are written at the end of a test run); to write them"
                    " pass --model.visualizer VideoVisualizer --model.visualizer.init_args.frame_images"
                    " anomalous|all"
                )
            return

        data = outputs if self.is_video_batch(outputs) and getattr(outputs, "anomaly_map", None) is not None else batch
        root = self._output_root(trainer)
        frames = getattr(data, "frames", None)
        if frames is None:
            frames = getattr(data, "target_frame", None)
        video_paths = getattr(data, "video_path", None)
        size = len(data)

        for index in range(size):
            if frames is not None:
                frame = int(torch.as_tensor(frames)[index].reshape(-1)[-1])
            else:
                frame = batch_idx * size + index
            if frame % self.save_every:
                continue
            if self.frame_images == "anomalous" and not _is_anomalous(data, index):
                continue
            video_path = video_paths[index] if video_paths is not None else None
            video = _video_name(video_path, fallback=f"video_{dataloader_idx}")
            cap = self.max_frame_images_per_video
            if cap is not None and self._images_per_video[video] >= cap:
                continue
            image = super().visualize(video_item_to_image_item(data, index))
            if image is None:
                logger.debug("Nothing to visualise for %s frame %d", video, frame)
                continue
            path = root / video / f"{frame:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            self._images_per_video[video] += 1
            logger.debug("Saved %s", path)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: AnomalibModule,
        outputs: VideoBatch | ImageBatch,
        batch: VideoBatch | ImageBatch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the prediction visualisations exactly like :meth:`on_test_batch_end`.

        Args:
            trainer (Trainer): Trainer; ``default_root_dir`` sets the default output folder.
            pl_module (AnomalibModule): The model (unused).
            outputs (VideoBatch | ImageBatch): Step output (normally ``batch`` itself).
            batch (VideoBatch | ImageBatch): The post-processed batch.
            batch_idx (int): Batch index.
            dataloader_idx (int, optional): Dataloader index. Defaults to ``0``.

        """
        self.on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_start(self, trainer: Trainer, pl_module: AnomalibModule) -> None:
        """Remember the model's protocol result from before this run (so a stale one is never plotted).

        Args:
            trainer (Trainer): Trainer (unused).
            pl_module (AnomalibModule): The model.

        """
        del trainer
        self._result_before_test = getattr(pl_module, "protocol_result", None)
        self._start_run()

    def on_predict_start(self, trainer: Trainer, pl_module: AnomalibModule) -> None:
        """Restart the per-video image counts (``max_frame_images_per_video`` applies per run).

        Args:
            trainer (Trainer): Trainer (unused).
            pl_module (AnomalibModule): The model (unused).

        """
        del trainer, pl_module
        self._start_run()

    def _start_run(self) -> None:
        self._images_per_video.clear()
        self._said_frames_off = False

    def on_test_end(self, trainer: Trainer, pl_module: AnomalibModule) -> None:
        """Write one score-curve PNG per test video to ``<output_dir>/score_curves``.

        Runs after the model's ``on_test_epoch_end`` (Lightning calls callbacks' ``on_test_epoch_end``
        before the model's, so that hook would not see this run's result yet).

        Args:
            trainer (Trainer): Trainer; ``default_root_dir`` sets the default output folder.
            pl_module (AnomalibModule): The model; its ``protocol_result`` is plotted if this run set it.

        """
        result = getattr(pl_module, "protocol_result", None)
        if not self.score_curves or result is None or result is self._result_before_test:
            return
        if not getattr(trainer, "is_global_zero", True):  # the same curves on every rank under DDP: written once
            return
        from anomalib_vadproto.visualization.curves import plot_protocol_result

        plot_protocol_result(result, self._output_root(trainer) / "score_curves")
