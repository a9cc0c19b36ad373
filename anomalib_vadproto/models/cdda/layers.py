"""CDDA's layers: the two autoencoders' encoders and decoders and the motion encoder's variance attention.

The paper gives no layer-level architecture; these follow the first author's STD code (every
convolution 3x3 without bias, residual blocks with LeakyReLU, PixelShuffle upsampling), adapted to
the ECCV formulation. :class:`~anomalib_vadproto.models.cdda.torch_model.CddaModel` assembles them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from anomalib_vadproto.errors import check_choice

#: Forms of the variance attention (:class:`VarianceAttention`).
ATTENTIONS = ("code", "paper")


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
        check_choice("attention", form, ATTENTIONS)
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
        (``python -m research.cdda_code_collapse``).
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.01, nonlinearity="leaky_relu")

    def code(self, pre: Tensor) -> Tensor:
        """Return the appearance code before normalisation: the projection's conv and ReLU (non-negative)."""
        return F.relu(self.projection(pre))

    def project(self, pre: Tensor) -> Tensor:
        """``z_a`` from the projection's input: conv, ReLU, L1-normalise (non-negative)."""
        return l1_normalise(self.code(pre))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(code before normalisation, projection input)``."""
        pre = self.body(self.stem(x))
        return self.code(pre), pre

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(z_a, projection input)``."""
        code, pre = self.encode(x)
        return l1_normalise(code), pre


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
