"""The contract of the plugin's five torch models (MNAD, DLAN-AC, LGN-Net, APN, CDDA), written once.

A torch model reads pre-processed clips ``(B, T, C, H, W)`` in ``[-1, 1]`` and has two modes:

* **training** (``model.train()``): ``model(clip)`` returns whatever the Lightning model's losses need
  (:meth:`VideoTorchModel._forward`, a dataclass or named tuple of each model's own);
* **evaluation** (``model.eval()``): ``model(clip)`` returns anomalib's ``InferenceBatch`` and
  :meth:`VideoTorchModel.score` returns it together with the raw per-clip cues.

Who relies on what:

* the Lightning mixin (:class:`~anomalib_vadproto.components.lightning.VideoModelMixin`) scores every
  validation, test and predict batch with :meth:`~VideoTorchModel.score`, feeds the cues to the papers'
  protocol, and calls :meth:`~VideoTorchModel.reset_test_state` at the start of each of those epochs;
* the export (:class:`~anomalib_vadproto.components.export.VideoExportMixin`) traces
  :meth:`~VideoTorchModel.score` with :attr:`~VideoTorchModel.read_only` set, so the ONNX/OpenVINO graph
  is a pure function of the clip, and writes every cue as a graph output ``cue_<name>``;
* :mod:`anomalib_vadproto.deploy` runs the exported graph, or the Lightning model inside its
  ``read_only_eval()``, and fuses the ``cue_<name>`` outputs with the weights of the exported metadata;
* :func:`~anomalib_vadproto.components.fast.maybe_compiled` compiles :meth:`~VideoTorchModel._score` when the
  Lightning model's ``compile`` option set :attr:`~VideoTorchModel.compile_options`, never while
  :attr:`~VideoTorchModel.read_only`.

The base class registers no parameter or buffer and draws no random number, so the subclasses' weights,
their ``state_dict`` keys and their exported graphs are those they would have without it.
"""

from __future__ import annotations

from typing import Any

from anomalib.data import InferenceBatch
from torch import Tensor, nn

from anomalib_vadproto.components.clip import check_at_least, validate_clip
from anomalib_vadproto.components.fast import CompileOptions, maybe_compiled


class VideoTorchModel(nn.Module):
    """Base of the plugin's torch models: clip geometry, the two modes, scoring, test-time state.

    A subclass builds its layers after ``super().__init__(...)`` and implements :meth:`_forward` (the
    training outputs) and either :meth:`_score` (a pure scoring function, compiled on request) or
    :meth:`score` itself (models whose scoring updates state, such as a test-time memory).

    Args:
        num_inputs: Frames the network reads from each clip (its ``num_input_frames``; at least 1).
        in_channels: Channels per frame after pre-processing (3 RGB, 1 grey).
        clip_length: Frames per clip, target included. ``None``: ``num_inputs + 1``, the last frame being
            the one predicted or reconstructed; a reconstruction model that reads its target passes
            ``num_inputs``.

    Raises:
        ValueError: If ``num_inputs`` is smaller than 1.

    Attributes:
        clip_length: Frames per clip the model takes (``T``); the datamodule's ``clip_length_in_frames``
            and the exported graph's fixed second input dimension.
        num_inputs: Frames the network reads, the first ``num_inputs`` of the clip.
        in_channels: Channels per frame after pre-processing.
        read_only: While ``True``, :meth:`score` changes no state (no test-time update) and is not
            compiled: it is a pure function of the clip and the weights. The export sets it around the
            tracing (``VideoExportMixin.read_only_eval``), so the exported graph never updates anything and
            exporting leaves the live model as it was; :mod:`anomalib_vadproto.deploy` scores a Lightning
            model inside the same context, so its scores match the exported graph's. Models without
            test-time state score the same either way.
        compile_options: How :meth:`_score` (and the Lightning model's step functions) are compiled, set by
            ``VideoModelMixin.setup_fast_training``; ``None`` runs them eagerly.

    """

    clip_length: int
    num_inputs: int
    in_channels: int
    read_only: bool
    compile_options: CompileOptions | None = None

    def __init__(self, num_inputs: int, in_channels: int, clip_length: int | None = None) -> None:
        super().__init__()
        check_at_least("num_input_frames", num_inputs)
        self.num_inputs = num_inputs
        self.clip_length = num_inputs + 1 if clip_length is None else clip_length
        self.in_channels = in_channels
        self.read_only = False

    # ------------------------------------------------------------------ the two modes
    def forward(self, clip: Tensor) -> Any:  # noqa: ANN401
        """Training mode: :meth:`_forward` (outputs for the losses). Evaluation: :meth:`score`'s ``InferenceBatch``.

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.

        Returns:
            The model's training outputs, or an ``InferenceBatch``.

        """
        if self.training:
            return self._forward(clip)
        return self.score(clip)[0]

    def _forward(self, clip: Tensor) -> Any:  # noqa: ANN401
        """Return what the Lightning model's losses need for ``clip`` (training mode).

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.

        Returns:
            The model's own training outputs (predicted frame, target, features, ...).

        """
        raise NotImplementedError

    def score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips: the anomaly score and map of each clip, and the raw cues of the papers' protocol.

        By default :meth:`_score`, compiled when :attr:`compile_options` ask for it (never while
        :attr:`read_only`). Unless :attr:`read_only`, a model may update its test-time state here (MNAD's
        and LGN-Net's gated memory update); :meth:`reset_test_state` undoes those updates.

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.

        Returns:
            ``(batch, cues)``. ``batch`` is an ``InferenceBatch`` with ``pred_score`` ``(B,)`` (higher means
            more anomalous) and ``anomaly_map`` ``(B, 1, H, W)``. ``cues`` maps each cue name to a ``(B,)``
            tensor: the per-clip values that the Lightning model's protocol (``setup_protocol``) normalises
            per video and fuses, exactly the cues it has weights for; the export writes each as the graph
            output ``cue_<name>``.

        """
        return maybe_compiled(self, type(self)._score, clip.device)(self, clip)

    def _score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips as a pure function of the clip (no state change): the body of the default :meth:`score`.

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.

        Returns:
            As :meth:`score`.

        """
        raise NotImplementedError

    def reset_test_state(self) -> None:
        """Restart the test-time state from the trained model: called at the start of every evaluation epoch.

        After it, scoring behaves as right after training or loading a checkpoint: updates made by earlier
        :meth:`score` calls (a test-time copy of the memory items) are dropped. It never changes the trained
        weights or buffers (the ``state_dict``). Models without test-time state keep this no-op.
        """

    # ------------------------------------------------------------------ helpers of the subclasses
    def check_clip(self, clip: Tensor) -> Tensor:
        """Validate ``clip`` against :attr:`clip_length` and :attr:`in_channels` (see :func:`validate_clip`).

        The finite check reads the clip on the host: it is skipped in training on an accelerator, so a
        training step never waits for the device.

        Args:
            clip: The model input.

        Returns:
            The clip as a 5-D tensor.

        """
        check_finite = not self.training or clip.device.type == "cpu"
        return validate_clip(clip, self.clip_length, self.in_channels, check_finite=check_finite)
