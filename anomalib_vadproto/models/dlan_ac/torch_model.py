"""PyTorch model of DLAN-AC (Yang et al., ECCV 2022): a U-Net predictor with per-sample prototypes.

The official repository never published the network; this follows the reading of the paper that
the model README's Choices describes:

* the MNAD prediction encoder (with BN); its ``(B, D, h, w)`` feature map ``F`` is L2-normalised
  along channels (option ``normalize_features``);
* **stage 1** ("AC pre-clustering"): no prototypes yet, the decoder reads ``[F ; 0]`` and the
  Adaptive Clusterer (:mod:`.som`) is fitted on detached copies of ``F``;
* **stage 2** ("formal training"): DLAN (:mod:`.dlan`) turns ``F`` into ``M`` prototypes, the read
  ``P̂`` is concatenated, and the decoder reads ``[F ; P̂]``;
* the MNAD prediction decoder with U-Net skips and MPN's BN-free output head (``ohead``).

The stage lives in a buffer, so a checkpoint of either stage restores the right forward pass. The
decoder's input width is the same in both stages: the half that sees ``P̂`` receives zeros in
stage 1, so the stage-1 autoencoder carries over to stage 2; the decoder weights on that half are
zeroed at the switch, so stage 2 starts exactly from the stage-1 prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data import InferenceBatch
from torch import Tensor, nn

from anomalib_vadproto.components.blocks import UNetDecoder, UNetEncoder, unet_widths
from anomalib_vadproto.components.clip import split_clip, stack_frames, validate_clip
from anomalib_vadproto.components.scores import error_map, psnr
from anomalib_vadproto.components.torch_model import VideoTorchModel

from .dlan import DynamicLocalAggregation
from .som import AdaptiveClusterer

AC_STAGE, DLAN_STAGE = 0, 1


@dataclass
class DlanAcTrainOutput:
    """What the training step needs for DLAN-AC's losses and the clusterer."""

    prediction: Tensor  # (B, C, H, W) in [-1, 1]
    target: Tensor  # (B, C, H, W)
    features: Tensor  # (B, D, h, w) encoder features (unit-norm when normalize_features)
    prototypes: Tensor | None  # (B, M, D) in stage 2, None in stage 1
    scores: Tensor | None  # (B, N, M) query-prototype scores in stage 2


class DlanAcModel(VideoTorchModel):
    """DLAN-AC network: encoder, Adaptive Clusterer (stage 1), DLAN (stage 2), decoder.

    Training mode returns :class:`DlanAcTrainOutput`; :meth:`score` is a pure function of the clip
    (prototypes are recomputed from each input, so there is no test-time state to reset).

    Args:
        num_input_frames: Past frames stacked as input (paper: 4).
        in_channels: Channels per frame after pre-processing (3 RGB, 1 grey).
        width: Base channel width; 64 is the paper (feature dimension ``D = 8 * width`` = 512).
        num_clusters: ``L``, SOM neurons and NetVLAD clusters (paper: 25 on a 5x5 grid).
        alpha: NetVLAD ``α`` of the initialisation ``W = 2αc``, ``b = −α‖c‖²`` (not in the paper).
        normalize_features: L2-normalise ``F`` along channels (recommended; MNAD and MPN do it).
        som_sigma: Initial SOM neighbourhood radius ``δ`` (paper: 0.5).
        som_learning_rate: Initial SOM learning rate ``η`` (paper: 0.5).
        som_iterations: SOM iterations ``k`` per feature map (paper: 5000).
        som_neighbourhood: ``"gaussian"`` (MiniSom's untruncated form, the released script; default) or
            ``"truncated"`` (paper eq. 2 literally, winner-only at ``δ = 0.5``).
        centre_order: Which clusters are "the first M": ``"wins"`` (most winning SOM neurons first; default)
            or ``"flat"`` (SOM grid order; warns at the switch if a kept neuron never won).
        m_rounding: ``"truncate"`` (code) or ``"round"`` the mean of ``z`` into ``M``.
        som_backend: ``"auto"`` (the fused Triton kernel on CUDA, the host loop otherwise), ``"host"`` or
            ``"triton"`` (:class:`~.som.AdaptiveClusterer`'s ``backend``).
        seed: Seed of the SOM initialisation.

    """

    def __init__(
        self,
        num_input_frames: int = 4,
        in_channels: int = 3,
        width: int = 64,
        num_clusters: int = 25,
        alpha: float = 100.0,
        normalize_features: bool = True,
        som_sigma: float = 0.5,
        som_learning_rate: float = 0.5,
        som_iterations: int = 5000,
        som_neighbourhood: str = "gaussian",
        centre_order: str = "wins",
        m_rounding: str = "truncate",
        som_backend: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(num_input_frames, in_channels)
        self.normalize_features = normalize_features
        widths = unet_widths(width)
        dim = widths[3]
        self.encoder = UNetEncoder(in_channels * num_input_frames, widths)
        self.clusterer = AdaptiveClusterer(
            feature_dim=dim,
            num_neurons=num_clusters,
            sigma=som_sigma,
            learning_rate=som_learning_rate,
            num_iterations=som_iterations,
            neighbourhood=som_neighbourhood,
            centre_order=centre_order,
            m_rounding=m_rounding,
            backend=som_backend,
            seed=seed,
        )
        self.dlan = DynamicLocalAggregation(dim, num_clusters, alpha)
        self.decoder = UNetDecoder(2 * dim, widths, in_channels, skips=True, head_batch_norm=False)
        self.register_buffer("stage", torch.tensor(AC_STAGE, dtype=torch.long))
        self._stage = AC_STAGE  # Python mirror of the buffer (refreshed on load): export sees a constant

    stage: Tensor

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super()._load_from_state_dict(*args, **kwargs)
        self._stage = int(self.stage)

    # ------------------------------------------------------------------ stages
    @property
    def in_dlan_stage(self) -> bool:
        """Whether DLAN is active (stage 2, "formal training")."""
        return self._stage == DLAN_STAGE

    @property
    def num_prototypes(self) -> int:
        """``M``: prototypes per sample in stage 2, the clusterer's current count in stage 1."""
        return self.dlan.m if self.in_dlan_stage else self.clusterer.num_clusters

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """Return the encoder and decoder parameters (the stage-1 optimiser's, as in the released script)."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def start_dlan_stage(self, reinitialise_autoencoder: bool = False) -> int:
        """Switch to stage 2: initialise DLAN from the clusterer's centres and ``M``.

        Args:
            reinitialise_autoencoder: Re-draw the encoder and decoder weights (the released script
                builds a new network for stage 2, so only ``M`` and the centres carry over).

        Returns:
            ``M``.

        Raises:
            RuntimeError: If the clusterer has not seen any feature map (no ``M``).

        """
        if self.clusterer.num_clusters < 1:
            msg = (
                "The Adaptive Clusterer has not seen any feature map, so M is unknown: run at least one"
                " stage-1 (AC) epoch before stage 2."
            )
            raise RuntimeError(msg)
        centres, m = self.clusterer.init_for_netvlad()
        self.dlan.initialise(centres, m)
        if reinitialise_autoencoder:
            for module in (*self.encoder.modules(), *self.decoder.modules()):
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        else:
            # The decoder's weights on the P̂ half never saw a non-zero input in stage 1 (so never moved).
            # Zeroing them makes stage 2 start from the stage-1 prediction; they train from the first step.
            with torch.no_grad():
                self.decoder.block4[0].weight[:, self.dlan.feature_dim :].zero_()
        self.stage.fill_(DLAN_STAGE)
        self._stage = DLAN_STAGE
        return m

    @torch.no_grad()
    def assignment_statistics(self, clip: Tensor) -> dict[str, float | list[float]]:
        """Entropy of the soft assignment of the clips' encoder features and its mass on the kept clusters.

        Stage 2: DLAN's assignment as trained. Stage 1: the assignment DLAN would start from,
        ``softmax_l(−α‖F − c_l‖²)`` over the clusterer's centres (its current ``M``). The encoder runs in eval
        mode (BatchNorm with its running statistics), so the call changes no state.

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clips.

        Returns:
            See :func:`~anomalib_vadproto.models.dlan_ac.dlan.assignment_statistics`.

        """
        clip = validate_clip(clip, self.clip_length, self.in_channels)
        inputs, _ = split_clip(clip, self.num_inputs)
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            features, _ = self.encoder(stack_frames(inputs))
        finally:
            self.encoder.train(was_training)
        if self.normalize_features:
            features = F.normalize(features, dim=1)
        if self.in_dlan_stage:
            return self.dlan.assignment_statistics(features)
        return self.clusterer.assignment_statistics(features, alpha=self.dlan.alpha)

    # ------------------------------------------------------------------ forward
    def _forward(self, clip: Tensor) -> DlanAcTrainOutput:
        """Predict the last frame; in stage 2 through the sample's own prototypes (also the body of the score)."""
        inputs, target = split_clip(self.check_clip(clip), self.num_inputs)
        features, skips = self.encoder(stack_frames(inputs))
        if self.normalize_features:
            features = F.normalize(features, dim=1)
        prototypes = scores = None
        if self.in_dlan_stage:
            prototypes, _ = self.dlan(features)
            b, d, h, w = features.shape
            queries = features.flatten(2).transpose(1, 2)  # (B, N, D)
            read, scores = self.dlan.read(queries, prototypes)
            read = read.transpose(1, 2).reshape(b, d, h, w)
        else:
            read = torch.zeros_like(features)
        prediction = self.decoder(torch.cat((features, read), dim=1), skips)
        return DlanAcTrainOutput(prediction, target, features, prototypes, scores)

    def _score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips by the PSNR of the predicted frame (eq. 16), a pure function of the clip.

        Returns:
            ``InferenceBatch(pred_score=-PSNR, anomaly_map=squared error (B, 1, H, W))`` and the cue
            ``{"psnr": (B,)}``.

        """
        out = self._forward(clip)
        frame_psnr = psnr(out.prediction, out.target)
        batch = InferenceBatch(pred_score=-frame_psnr, anomaly_map=error_map(out.prediction, out.target))
        return batch, {"psnr": frame_psnr}
