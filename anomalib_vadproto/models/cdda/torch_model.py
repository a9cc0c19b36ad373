"""PyTorch model of CDDA (Chang et al., ECCV 2020): a spatial and a motion autoencoder with deep k-means.

The paper gives no layer-level architecture; the layers (:mod:`.layers`) follow the first author's STD
code, adapted to the ECCV formulation (the model README lists every choice):

* the **spatial AE** reconstructs the last frame of the clip (the LIF, ``x_a``);
* the **motion AE** reads the other ``T − 1`` frames ``x_clips`` stacked on the channel axis and
  predicts their RGB differences to the LIF, ``x_diff = x_clips − x_a`` (no optical flow), with
  variance attention after every encoder stage (the STD code's form of paper eqs. 7-9) and U-Net skips;
* both encoders end in a projection convolution whose output is L1-normalised along channels
  (``z_a``, ``z_m``, stride 8); **deep k-means** (:mod:`.clustering`) clusters the L2-normalised
  locations of ``z_m`` and ``z_a`` with separate centre sets (``clustering="separate"``, the paper) or
  of their concatenation (``"joint"``, the STD code).

Frames arrive in the plugin's ``[-1, 1]`` range and are mapped to ``[0, 1]`` (the range of the losses
and the score) inside the model. The decoders are linear (no ``tanh``).

The stage (0: autoencoder pre-training, 1: alternating optimisation with initialised centres) is a
buffer, so checkpoints restore it; before the centres are initialised the score uses the
reconstruction error alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data import InferenceBatch
from torch import Tensor, nn

from anomalib_vadproto.components.clip import ClipShapeError, check_at_least, split_clip, stack_frames
from anomalib_vadproto.components.scores import to_unit_range
from anomalib_vadproto.components.torch_model import VideoTorchModel
from anomalib_vadproto.errors import check_choice

from .clustering import DeepKMeans
from .layers import MotionDecoder, MotionEncoder, SpatialDecoder, SpatialEncoder, l1_normalise

PRETRAIN_STAGE, ALTERNATING_STAGE = 0, 1
CLUSTERINGS = ("separate", "joint")
#: Initialisations of the spatial encoder's convolutions (the motion AE and the decoders keep PyTorch's default).
SPATIAL_INITS = ("default", "kaiming")
SCORES = ("product", "pixelwise")
#: What the spatial decoder reads: the L1-normalised code ``z_a`` (as the motion decoder) or the code before
#: the normalisation (the clustering still sees the normalised copy).
SPATIAL_DECODER_INPUTS = ("normalised", "raw")
#: Diagnostic cues: each autoencoder's own error, the two parts of ``E_rec`` (see ``CddaOutput.error_parts``).
ERROR_PARTS = ("motion_error", "appearance_error")
#: Frames must be divisible by this: three stride-2 stages, and the first attention pools by 8 at stride 2.
SIZE_MULTIPLE = 16


@dataclass
class CddaOutput:
    """Outputs of one forward pass, all images on the ``[0, 1]`` scale."""

    appearance: Tensor  # x̄_a: (B, C, H, W) reconstruction of the last frame
    last_frame: Tensor  # x_a: (B, C, H, W)
    differences: Tensor  # x̄_diff: (B, T-1, C, H, W) predicted differences to the last frame
    difference_targets: Tensor  # x_diff = x_clips − x_a: (B, T-1, C, H, W)
    features: dict[str, Tensor]  # clustering name -> L2-normalised features (B, D, h, w)
    pre_projection: tuple[Tensor, Tensor]  # inputs of the spatial and motion projections (for the centre step)
    _residuals: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def residuals(self) -> tuple[Tensor, Tensor]:
        """``(x_diff − x̄_diff, x_a − x̄_a)``: each autoencoder's residual, computed once per forward pass.

        Cached in a field rather than by ``functools.cached_property``, whose lock (Python < 3.12) Dynamo cannot
        enter: the compiled scoring stays one graph.
        """
        if self._residuals is None:
            self._residuals = (self.difference_targets - self.differences, self.last_frame - self.appearance)
        return self._residuals

    def reconstruction_error_map(self) -> Tensor:
        """``mean over frames and channels of (x_clips − x̄_a − x̄_diff)²``: ``(B, 1, H, W)``."""
        motion, appearance = self.residuals
        return (motion + appearance.unsqueeze(1)).square().mean(dim=(1, 2)).unsqueeze(1)

    def error_parts(self) -> dict[str, Tensor]:
        """Return the two autoencoders' own errors, ``(B,)`` each (diagnostics; ``E_rec`` sums their residuals).

        ``"motion_error"``: mean of ``(x_diff − x̄_diff)²``; ``"appearance_error"``: mean of ``(x_a − x̄_a)²``.
        """
        motion, appearance = self.residuals
        return {
            "motion_error": motion.square().flatten(1).mean(dim=1),
            "appearance_error": appearance.square().flatten(1).mean(dim=1),
        }


class CddaModel(VideoTorchModel):
    """CDDA network: spatial AE, motion AE with variance attention, deep k-means.

    Training mode returns :class:`CddaOutput`; :meth:`score` is a pure function of the clip (no test-time
    state to reset).

    Args:
        num_input_frames: Frames the motion AE reads (paper: 4, so clips of 5).
        in_channels: Channels per frame after pre-processing (3 RGB, 1 grey).
        width: Channels of the first convolution (paper/STD: 32; features have ``8 * width`` = 256).
        num_clusters: ``K`` centres per clustering (paper: 32).
        alpha: Soft-assignment sharpness ``α`` on L2-normalised features (STD code: 25).
        clustering: ``"separate"`` (paper: motion and appearance centres) or ``"joint"`` (STD code:
            one clustering of the concatenated, L2-normalised ``[z_a ; z_m]``).
        cluster_distance: ``"squared"`` (paper eq. 10) or ``"euclidean"`` (STD code).
        attention: ``"code"`` (STD variance attention, recommended) or ``"paper"``.
        spatial_init: ``"default"`` (PyTorch's initialisation; the paper names none) or ``"kaiming"``
            (Kaiming-normal weights for the spatial encoder's convolutions only, so more of the
            appearance code's ReLU channels stay alive; see the model README).
        score: ``"product"`` (paper eq. 14: ``1 / (D_m · D_a · E_rec)``) or ``"pixelwise"`` (STD code:
            ``1 / mean(e ⊙ m)`` with the cluster maps upsampled to the frame).
        eps: ``ε`` of the score ``1 / (p + ε)``, a guard against division by zero only. Eq. 14 has no
            ``ε``, and ``p`` is a product of three small numbers (see the model README for its size on Ped2), so
            the default 1e-30 is far below any real ``p`` yet representable in float32 and bfloat16.
        spatial_decoder_input: ``"normalised"`` (the decoder reads ``z_a``, the L1-normalised code that the
            clustering also sees; the code's per-location magnitude is lost) or ``"raw"`` (it reads the code
            before the normalisation, the ReLU output; the clustering sees the same normalised ``z_a``). The
            paper does not say which; see the model README.
        diagnostic_cues: Also return the diagnostic cues of :attr:`diagnostic_cue_names` from :meth:`score`
            (the product's factors, each autoencoder's error, the other score form). They do not enter the
            score; without them (default) the score, the exported graph and the deployed outputs carry the
            cue ``"regularity"`` alone. An attribute of the same name, which can be switched on a built model.

    """

    def __init__(
        self,
        num_input_frames: int = 4,
        in_channels: int = 3,
        width: int = 32,
        num_clusters: int = 32,
        alpha: float = 25.0,
        clustering: str = "separate",
        cluster_distance: str = "squared",
        attention: str = "code",
        spatial_init: str = "default",
        score: str = "product",
        eps: float = 1e-30,
        diagnostic_cues: bool = False,
        spatial_decoder_input: str = "normalised",
    ) -> None:
        super().__init__(num_input_frames, in_channels)
        check_at_least("width", width)
        check_choice("clustering", clustering, CLUSTERINGS)
        check_choice("score", score, SCORES)
        check_choice("spatial_init", spatial_init, SPATIAL_INITS)
        self.spatial_decoder_input = check_choice(
            "spatial_decoder_input", spatial_decoder_input, SPATIAL_DECODER_INPUTS
        )
        self.score_form = score
        self.eps = eps
        self.diagnostic_cues = bool(diagnostic_cues)
        self.spatial_encoder = SpatialEncoder(in_channels, width)
        self.spatial_decoder = SpatialDecoder(in_channels, width)
        self.motion_encoder = MotionEncoder(in_channels * num_input_frames, width, attention)
        self.motion_decoder = MotionDecoder(in_channels * num_input_frames, width)
        dim = 8 * width
        if clustering == "separate":
            names = {"motion": dim, "appearance": dim}
        else:
            names = {"joint": 2 * dim}
        self.clusters = nn.ModuleDict(
            {name: DeepKMeans(num_clusters, d, alpha, cluster_distance) for name, d in names.items()}
        )
        self.register_buffer("stage", torch.tensor(PRETRAIN_STAGE, dtype=torch.long))
        self._stage = PRETRAIN_STAGE  # Python mirror of the buffer (refreshed on load): export sees a constant
        if spatial_init == "kaiming":  # last, so every other module draws the same weights as with "default"
            self.spatial_encoder.kaiming_init()

    stage: Tensor

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super()._load_from_state_dict(*args, **kwargs)
        self._stage = int(self.stage)

    # ------------------------------------------------------------------ parameters and stages
    @property
    def alternating(self) -> bool:
        """Whether the centres are initialised (stage 3 of the paper: alternating optimisation)."""
        return self._stage == ALTERNATING_STAGE

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of both autoencoders (everything but the centres)."""
        modules = (self.spatial_encoder, self.spatial_decoder, self.motion_encoder, self.motion_decoder)
        return [p for module in modules for p in module.parameters()]

    def centre_parameters(self) -> list[nn.Parameter]:
        """Return the learnable centres of every clustering."""
        return [clusters.centres for clusters in self.clusters.values()]

    def projection_parameters(self) -> list[nn.Parameter]:
        """Return the last convolution of each encoder (the STD code's centre step also moves them)."""
        return [*self.spatial_encoder.projection.parameters(), *self.motion_encoder.projection.parameters()]

    def initialise_centres(self, centres: dict[str, Tensor]) -> None:
        """Set every clustering's centres (the k-means result) and enter the alternating stage.

        Raises:
            ValueError: If the clusterings named do not match, or on bad shapes or values.

        """
        if set(centres) != set(self.clusters):
            msg = f"Centres given for {sorted(centres)}, the model clusters {sorted(self.clusters)}."
            raise ValueError(msg)
        for name, value in centres.items():
            self.clusters[name].initialise(value)
        self.stage.fill_(ALTERNATING_STAGE)
        self._stage = ALTERNATING_STAGE

    # ------------------------------------------------------------------ forward
    def cluster_features(self, z_appearance: Tensor, z_motion: Tensor) -> dict[str, Tensor]:
        """L2-normalised clustering inputs, one ``(B, D, h, w)`` map per clustering, in FP32 (also from bf16 codes)."""
        z_appearance, z_motion = z_appearance.float(), z_motion.float()
        if "joint" in self.clusters:
            return {"joint": F.normalize(torch.cat((z_appearance, z_motion), dim=1), dim=1)}
        return {"motion": F.normalize(z_motion, dim=1), "appearance": F.normalize(z_appearance, dim=1)}

    def features_from_projection_inputs(self, pre_appearance: Tensor, pre_motion: Tensor) -> dict[str, Tensor]:
        """Recompute the clustering features from cached projection inputs (the centre step)."""
        return self.cluster_features(
            self.spatial_encoder.project(pre_appearance), self.motion_encoder.project(pre_motion)
        )

    def distance_maps(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Soft-assigned distance (eq. 10) at every location, per clustering: ``(B, h, w)``."""
        return {name: self.clusters[name].distance_map(value) for name, value in features.items()}

    def _forward(self, clip: Tensor) -> CddaOutput:
        """Run both autoencoders and the clustering features on the ``[0, 1]`` clip (training and scoring).

        Raises:
            ClipShapeError: (a ``ValueError``) for a clip of the wrong shape, or frames whose sides are not
                multiples of :data:`SIZE_MULTIPLE`.

        """
        clip = self.check_clip(clip)
        height, width = clip.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            msg = (
                f"CDDA needs frames whose height and width are multiples of {SIZE_MULTIPLE} (three stride-2"
                f" stages and pooled attention), got {height}x{width}; set image_size to e.g. 128x128 or 256x256."
            )
            raise ClipShapeError(msg)
        inputs, last = split_clip(to_unit_range(clip), self.num_inputs)  # [0, 1]
        code_a, pre_a = self.spatial_encoder.encode(last)
        z_a = l1_normalise(code_a)
        appearance = self.spatial_decoder(code_a if self.spatial_decoder_input == "raw" else z_a)
        z_m, pre_m, skips = self.motion_encoder(stack_frames(inputs))
        differences = self.motion_decoder(z_m, skips).reshape(inputs.shape)
        return CddaOutput(
            appearance=appearance,
            last_frame=last,
            differences=differences,
            difference_targets=inputs - last.unsqueeze(1),
            features=self.cluster_features(z_a, z_m),
            pre_projection=(pre_a, pre_m),
        )

    def _score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips by CDDA's inverse product (eq. 14), a pure function of the clip (compiled with ``compile``).

        ``p = E_rec · Π D`` (``"product"``: ``E_rec`` the mean squared error of the recombined clip
        ``x̄_a + x̄_diff`` against ``x_clips``, ``D`` the mean soft-assigned distance of each clustering) or
        ``p = mean_{h,w}(e ⊙ Π m)`` (``"pixelwise"``: ``e`` the per-pixel error, ``m`` the per-location
        distance maps upsampled to the frame). Before the centres are initialised, ``p = E_rec``.

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.

        Returns:
            ``InferenceBatch(pred_score=log(p + ε), anomaly_map=(B, 1, H, W) whose mean is p)`` and the
            cues, each ``(B,)``: ``"regularity"`` ``1 / (p + ε)``, the score (high means normal;
            min-max normalised per video, eq. 15), and with :attr:`diagnostic_cues` the diagnostics of
            :attr:`diagnostic_cue_names`: the factors of the product, anomalous when high
            (``"reconstruction"`` ``E_rec`` and ``"<clustering>_distance"`` the mean soft-assigned distance,
            zeros before the centres exist), the two autoencoders' own errors (``"motion_error"``,
            ``"appearance_error"``, whose residuals ``E_rec`` sums), and the other score form's regularity
            (``"regularity_pixelwise"`` or ``"regularity_product"``), logged for comparison.

        """
        out = self._forward(clip)
        error = out.reconstruction_error_map()  # (B, 1, H, W)
        reconstruction = error.mean(dim=(1, 2, 3))
        # The other form's map only feeds its diagnostic cue: without the diagnostics it is not computed.
        maps = dict.fromkeys(SCORES if self.diagnostic_cues else (self.score_form,), error)
        if self.alternating:
            distance_maps = self.distance_maps(out.features)
            distances = {name: m.mean(dim=(1, 2)) for name, m in distance_maps.items()}
            if "product" in maps:
                factor = torch.stack(list(distances.values())).prod(dim=0)
                maps["product"] = error * factor.reshape(-1, 1, 1, 1)
            if "pixelwise" in maps:
                for m in distance_maps.values():
                    up = F.interpolate(m.unsqueeze(1), size=error.shape[-2:], mode="nearest")
                    maps["pixelwise"] = maps["pixelwise"] * up
        else:
            distances = dict.fromkeys(self.clusters, torch.zeros_like(reconstruction))
        anomaly_map = maps[self.score_form]
        product = anomaly_map.mean(dim=(1, 2, 3))
        batch = InferenceBatch(pred_score=torch.log(product + self.eps), anomaly_map=anomaly_map)
        cues = {"regularity": 1.0 / (product + self.eps)}
        if self.diagnostic_cues:
            other = maps[self.other_score_form].mean(dim=(1, 2, 3))
            cues.update(
                {
                    "reconstruction": reconstruction,
                    **{f"{name}_distance": value for name, value in distances.items()},
                    **out.error_parts(),
                    self.variant_cue: 1.0 / (other + self.eps),
                }
            )
        return batch, cues

    @property
    def other_score_form(self) -> str:
        """The score form not in use (``"pixelwise"`` or ``"product"``)."""
        return next(form for form in SCORES if form != self.score_form)

    @property
    def variant_cue(self) -> str:
        """Cue name of the other score form's regularity (high means normal, like ``"regularity"``)."""
        return f"regularity_{self.other_score_form}"

    @property
    def score_factors(self) -> tuple[str, ...]:
        """Cue names of the product's factors: ``"reconstruction"`` and one distance per clustering."""
        return ("reconstruction", *(f"{name}_distance" for name in self.clusters))

    @property
    def diagnostic_cue_names(self) -> tuple[str, ...]:
        """Cues :meth:`score` adds to ``"regularity"`` with :attr:`diagnostic_cues` (weight 0 in the protocol)."""
        return (*self.score_factors, *ERROR_PARTS, self.variant_cue)

    @property
    def cue_names(self) -> tuple[str, ...]:
        """Every cue :meth:`score` returns now: ``"regularity"``, then the diagnostics if they are on."""
        return ("regularity", *(self.diagnostic_cue_names if self.diagnostic_cues else ()))
