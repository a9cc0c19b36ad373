"""PyTorch model of CDDA (Chang et al., ECCV 2020): a spatial and a motion autoencoder with deep k-means.

The paper gives no layer-level architecture; the layers follow the first author's STD code, adapted
to the ECCV formulation (the model README lists every choice):

* the **spatial AE** reconstructs the last frame of the clip (the LIF, ``x_a``);
* the **motion AE** reads the other ``T − 1`` frames ``x_clips`` stacked on the channel axis and
  predicts their RGB differences to the LIF, ``x_diff = x_clips − x_a`` (no optical flow), with
  variance attention after every encoder stage (the STD code's form of paper eqs. 7-9) and U-Net skips;
* both encoders end in a projection convolution whose output is L1-normalised along channels
  (``z_a``, ``z_m``, stride 8); **deep k-means** (:mod:`.clustering`) clusters the L2-normalised
  locations of ``z_m`` and ``z_a`` with separate centre sets (``clustering="separate"``, the paper) or
  of their concatenation (``"joint"``, the STD code).

Frames arrive in the plugin's ``[-1, 1]`` range and are mapped to ``[0, 1]`` (the range of the losses
and the score) inside :meth:`CddaModel.forward`. The decoders are linear (no ``tanh``).

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

from anomalib_vadproto.components.clip import (
    ClipShapeError,
    check_at_least,
    check_choice,
    split_clip,
    stack_frames,
    validate_clip,
)
from anomalib_vadproto.components.fast import maybe_compiled
from anomalib_vadproto.components.scores import to_unit_range

from .clustering import DeepKMeans

PRETRAIN_STAGE, ALTERNATING_STAGE = 0, 1
CLUSTERINGS = ("separate", "joint")
ATTENTIONS = ("code", "paper")
#: Initialisations of the spatial encoder's convolutions (the motion AE and the decoders keep PyTorch's default).
SPATIAL_INITS = ("default", "kaiming")
SCORES = ("product", "pixelwise")
#: Diagnostic cues: each autoencoder's own error, the two parts of ``E_rec`` (see ``CddaOutput.error_parts``).
ERROR_PARTS = ("motion_error", "appearance_error")
#: Frames must be divisible by this: three stride-2 stages, and the first attention pools by 8 at stride 2.
SIZE_MULTIPLE = 16


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution without bias (every convolution of the STD code)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def l1_normalise(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Divide every location of ``(B, C, h, w)`` by the L1 norm of its channel vector."""
    return x / x.abs().sum(dim=1, keepdim=True).clamp_min(eps)


class ResidualDown(nn.Module):
    """``RB↓(i→o)``: conv3x3/2 → LeakyReLU → conv3x3, plus a conv3x3/2 shortcut; sum → LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride=2)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut = conv3x3(in_channels, out_channels, stride=2)
        self.act = nn.LeakyReLU()

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.act(self.conv2(self.act(self.conv1(x))) + self.shortcut(x))


class ResidualUp(nn.Module):
    """``RB↑(i→o)``: PixelShuffle(2) (``i → i/4``) then the residual block with conv3x3 (``i/4 → o``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels % 4:
            msg = f"PixelShuffle(2) needs input channels divisible by 4, got {in_channels}"
            raise ValueError(msg)
        self.shuffle = nn.PixelShuffle(2)
        self.conv1 = conv3x3(in_channels // 4, out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut = conv3x3(in_channels // 4, out_channels)
        self.act = nn.LeakyReLU()

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        x = self.shuffle(x)
        return self.act(self.conv2(self.act(self.conv1(x))) + self.shortcut(x))


class VarianceAttention(nn.Module):
    """Variance attention of the motion encoder (paper eqs. 7-9).

    ``form="code"`` (STD code, recommended): ``f`` = 1x1 conv, average-pooled by ``pool``;
    ``v = Σ_d (f_d − mean_d f)²``; ``a`` = softmax of ``v`` over the pooled positions, upsampled by
    ``pool`` (nearest); output ``x · exp(a)``.
    ``form="paper"``: ``v = mean_d |f_d − mean_d f|`` at full resolution; ``a`` = L2-normalised softmax
    over positions; output ``x · (1 + a)`` (the paper does not say how ``a`` is applied).

    Args:
        channels: Channels of ``x`` (and of the 1x1 convolution ``W_g``).
        pool: Pooling kernel and stride of the code form (8, 4, 2 at the three stages).
        form: ``"code"`` or ``"paper"``.

    """

    def __init__(self, channels: int, pool: int, form: str = "code") -> None:
        super().__init__()
        if form not in ATTENTIONS:
            msg = f"attention must be one of {ATTENTIONS}, got {form!r}"
            raise ValueError(msg)
        self.transform = nn.Conv2d(channels, channels, 1, bias=False)
        self.pool = pool
        self.form = form

    def attention(self, x: Tensor) -> Tensor:
        """Return the attention map ``a`` at the resolution of ``x``, ``(B, 1, H, W)``."""
        f = self.transform(x)
        if self.form == "code":
            f = F.avg_pool2d(f, self.pool)
            v = (f - f.mean(dim=1, keepdim=True)).square().sum(dim=1)
        else:
            v = (f - f.mean(dim=1, keepdim=True)).abs().mean(dim=1)
        b, h, w = v.shape
        a = torch.softmax(v.reshape(b, h * w), dim=1)
        if self.form == "paper":
            a = F.normalize(a, dim=1)
        a = a.reshape(b, 1, h, w)
        if self.form == "code":
            a = F.interpolate(a, size=x.shape[-2:], mode="nearest")
        return a

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        a = self.attention(x)
        return x * torch.exp(a) if self.form == "code" else x * (1.0 + a)


class SpatialEncoder(nn.Module):
    """conv3x3 + ReLU, then ``BN → RB↓`` three times, then the projection (conv3x3 + ReLU + L1 norm)."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv3x3(in_channels, w), nn.ReLU())
        self.body = nn.Sequential(
            nn.BatchNorm2d(w), ResidualDown(w, 2 * w),
            nn.BatchNorm2d(2 * w), ResidualDown(2 * w, 4 * w),
            nn.BatchNorm2d(4 * w), ResidualDown(4 * w, 8 * w),
        )  # fmt: skip
        self.projection = conv3x3(8 * w, 8 * w)

    def kaiming_init(self) -> None:
        """Kaiming-normal weights (fan-in, LeakyReLU slope 0.01, i.e. a gain of about sqrt(2)) for every convolution.

        PyTorch's default is uniform with a standard deviation 2.45x smaller; with it, at the lite
        profile's rate, most of the projection's ReLU channels die in the first 100 Adam steps
        (``benchmarks/cdda_code_collapse.py``).
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.01, nonlinearity="leaky_relu")

    def project(self, pre: Tensor) -> Tensor:
        """``z_a`` from the projection's input: conv, ReLU, L1-normalise (non-negative)."""
        return l1_normalise(F.relu(self.projection(pre)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(z_a, projection input)``."""
        pre = self.body(self.stem(x))
        return self.project(pre), pre


class SpatialDecoder(nn.Module):
    """``RB↑(8w→8w) → RB↑(8w→4w) → RB↑(4w→2w) → conv3x3(2w→C)``, linear output, no skips."""

    def __init__(self, out_channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(ResidualUp(8 * w, 8 * w), ResidualUp(8 * w, 4 * w), ResidualUp(4 * w, 2 * w))
        self.head = conv3x3(2 * w, out_channels)

    def forward(self, z: Tensor) -> Tensor:  # noqa: D102
        return self.head(self.body(z))


class MotionEncoder(nn.Module):
    """conv3x3 + ReLU, then ``RB↓ → VA`` three times (pools 8, 4, 2), then the projection (conv3x3 + L1 norm)."""

    def __init__(self, in_channels: int, width: int, attention: str = "code") -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv3x3(in_channels, w), nn.ReLU())
        self.down1, self.att1 = ResidualDown(w, 2 * w), VarianceAttention(2 * w, 8, attention)
        self.down2, self.att2 = ResidualDown(2 * w, 4 * w), VarianceAttention(4 * w, 4, attention)
        self.down3, self.att3 = ResidualDown(4 * w, 8 * w), VarianceAttention(8 * w, 2, attention)
        self.projection = conv3x3(8 * w, 8 * w)

    def project(self, pre: Tensor) -> Tensor:
        """``z_m`` from the projection's input: conv, L1-normalise."""
        return l1_normalise(self.projection(pre))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Return ``(z_m, projection input, skips (m1, m2))``."""
        m1 = self.att1(self.down1(self.stem(x)))
        m2 = self.att2(self.down2(m1))
        pre = self.att3(self.down3(m2))
        return self.project(pre), pre, (m1, m2)


class MotionDecoder(nn.Module):
    """``RB↑(8w→4w)``, ``[·, m2] → RB↑(8w→2w)``, ``[·, m1] → RB↑(4w→2w)``, ``conv3x3(2w→C_out)``, linear."""

    def __init__(self, out_channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.up1 = ResidualUp(8 * w, 4 * w)
        self.up2 = ResidualUp(8 * w, 2 * w)
        self.up3 = ResidualUp(4 * w, 2 * w)
        self.head = conv3x3(2 * w, out_channels)

    def forward(self, z: Tensor, skips: tuple[Tensor, Tensor]) -> Tensor:  # noqa: D102
        m1, m2 = skips
        x = self.up2(torch.cat((self.up1(z), m2), dim=1))
        return self.head(self.up3(torch.cat((x, m1), dim=1)))


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


class CddaModel(nn.Module):
    """CDDA network: spatial AE, motion AE with variance attention, deep k-means.

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
    ) -> None:
        super().__init__()
        check_at_least("num_input_frames", num_input_frames)
        check_at_least("width", width)
        check_choice("clustering", clustering, CLUSTERINGS)
        check_choice("score", score, SCORES)
        check_choice("spatial_init", spatial_init, SPATIAL_INITS)
        self.num_inputs = num_input_frames
        self.clip_length = num_input_frames + 1
        self.in_channels = in_channels
        self.score_form = score
        self.eps = eps
        self.read_only = False  # no test-time state; kept for the export mixin's contract
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

    def reset_test_state(self) -> None:
        """CDDA has no test-time state: the score is a pure function of the clip."""

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
        # The finite check reads the clip on the host: skipped in training on an accelerator (no sync per step).
        clip = validate_clip(
            clip, self.clip_length, self.in_channels, check_finite=not self.training or clip.device.type == "cpu"
        )
        height, width = clip.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            msg = (
                f"CDDA needs frames whose height and width are multiples of {SIZE_MULTIPLE} (three stride-2"
                f" stages and pooled attention), got {height}x{width}; set image_size to e.g. 128x128 or 256x256."
            )
            raise ClipShapeError(msg)
        inputs, last = split_clip(to_unit_range(clip), self.num_inputs)  # [0, 1]
        z_a, pre_a = self.spatial_encoder(last)
        appearance = self.spatial_decoder(z_a)
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

    def forward(self, clip: Tensor) -> CddaOutput | InferenceBatch:
        """Training: the outputs for the losses. Evaluation: an ``InferenceBatch`` (see :meth:`score`)."""
        if not self.training:
            return self.score(clip)[0]
        return self._forward(clip)

    def score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips by CDDA's inverse product (eq. 14), a pure function of the clip.

        ``p = E_rec · Π D`` (``"product"``: ``E_rec`` the mean squared error of the recombined clip
        ``x̄_a + x̄_diff`` against ``x_clips``, ``D`` the mean soft-assigned distance of each clustering) or
        ``p = mean_{h,w}(e ⊙ Π m)`` (``"pixelwise"``: ``e`` the per-pixel error, ``m`` the per-location
        distance maps upsampled to the frame). Before the centres are initialised, ``p = E_rec``.

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.

        Returns:
            ``InferenceBatch(pred_score=log(p + ε), anomaly_map=(B, 1, H, W) whose mean is p)`` and the
            cues, each ``(B,)``: ``"regularity"`` ``1 / (p + ε)``, the score (high means normal;
            min-max normalised per video, eq. 15), and the diagnostics of :attr:`diagnostic_cues`: the
            factors of the product, anomalous when high (``"reconstruction"`` ``E_rec`` and
            ``"<clustering>_distance"`` the mean soft-assigned distance, zeros before the centres exist),
            the two autoencoders' own errors (``"motion_error"``, ``"appearance_error"``, whose residuals
            ``E_rec`` sums), and the other score form's regularity (``"regularity_pixelwise"`` or
            ``"regularity_product"``), logged for comparison.

        """
        return maybe_compiled(self, type(self)._score, clip.device)(self, clip)

    def _score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score clips: the body of :meth:`score`, a pure function of the clip (compiled with ``compile``)."""
        out = self._forward(clip)
        error = out.reconstruction_error_map()  # (B, 1, H, W)
        reconstruction = error.mean(dim=(1, 2, 3))
        maps = {"product": error, "pixelwise": error}
        if self.alternating:
            distance_maps = self.distance_maps(out.features)
            distances = {name: m.mean(dim=(1, 2)) for name, m in distance_maps.items()}
            factor = torch.stack(list(distances.values())).prod(dim=0)
            maps["product"] = error * factor.reshape(-1, 1, 1, 1)
            for m in distance_maps.values():
                up = F.interpolate(m.unsqueeze(1), size=error.shape[-2:], mode="nearest")
                maps["pixelwise"] = maps["pixelwise"] * up
        else:
            distances = dict.fromkeys(self.clusters, torch.zeros_like(reconstruction))
        anomaly_map = maps[self.score_form]
        product = anomaly_map.mean(dim=(1, 2, 3))
        other = maps[self.other_score_form].mean(dim=(1, 2, 3))
        batch = InferenceBatch(pred_score=torch.log(product + self.eps), anomaly_map=anomaly_map)
        return batch, {
            "regularity": 1.0 / (product + self.eps),
            "reconstruction": reconstruction,
            **{f"{name}_distance": value for name, value in distances.items()},
            **out.error_parts(),
            self.variant_cue: 1.0 / (other + self.eps),
        }

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
    def diagnostic_cues(self) -> tuple[str, ...]:
        """Cues :meth:`score` returns beside ``"regularity"`` (weight 0 in the protocol)."""
        return (*self.score_factors, *ERROR_PARTS, self.variant_cue)
