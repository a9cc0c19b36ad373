"""Convolutional building blocks of the MNAD family (MNAD, LGN-Net, DLAN-AC, APN).

The layouts follow MNAD's released code: a four-stage U-Net encoder whose last stage ends in a
raw convolution (no BN, no ReLU, so features can be negative), and a decoder of transposed
convolutions with ``[skip, upsampled]`` concatenation. Channel widths scale with one ``width``
argument: ``width=64`` is the paper's network, smaller widths give the CPU ("lite") profiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 convolution (padding 1, bias) followed by BatchNorm and ReLU."""
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class DoubleConv(nn.Sequential):
    """``Basic(i, o)``: two conv-BN-ReLU layers.

    With ``raw_output=True`` the second convolution is left bare (no BN, no ReLU), as in the last
    encoder stage of MNAD.
    """

    def __init__(self, in_channels: int, out_channels: int, raw_output: bool = False) -> None:
        layers = conv_bn_relu(in_channels, out_channels)
        if raw_output:
            layers.append(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        else:
            layers += conv_bn_relu(out_channels, out_channels)
        super().__init__(*layers)


class UpConv(nn.Sequential):
    """``Up(i, o)``: 3x3 transposed convolution with stride 2 (doubles H and W), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class OutputHead(nn.Sequential):
    """Output head: two 3x3 conv(-BN)-ReLU layers, then a 3x3 convolution to the output channels and ``tanh``.

    ``batch_norm=True`` is MNAD's ``Gen``; ``batch_norm=False`` is MPN's ``ohead`` used by DLAN-AC and
    APN.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, batch_norm: bool = True) -> None:
        if batch_norm:
            layers = [*conv_bn_relu(in_channels, hidden), *conv_bn_relu(hidden, hidden)]
        else:
            layers = [
                nn.Conv2d(in_channels, hidden, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, hidden, 3, padding=1),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers, nn.Conv2d(hidden, out_channels, 3, padding=1), nn.Tanh())


def unet_widths(width: int) -> tuple[int, int, int, int]:
    """Channel widths of the four stages for a base ``width`` (64 gives 64/128/256/512)."""
    if width < 1:
        msg = f"width must be a positive integer, got {width}"
        raise ValueError(msg)
    return width, 2 * width, 4 * width, 8 * width


class UNetEncoder(nn.Module):
    """Four-stage encoder: ``Basic`` x3 with 2x2 max-pooling, then a raw last stage.

    Args:
        in_channels: Input channels (for example 12 for four stacked RGB frames).
        widths: Output channels of the four stages.

    The output has stride 8 and ``widths[3]`` channels; the three skip maps have strides 1, 2 and 4.

    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stage1 = DoubleConv(in_channels, w1)
        self.stage2 = DoubleConv(w1, w2)
        self.stage3 = DoubleConv(w2, w3)
        self.stage4 = DoubleConv(w3, w4, raw_output=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Return the raw feature map and the skips ``(s1, s2, s3)``."""
        s1 = self.stage1(x)
        s2 = self.stage2(self.pool(s1))
        s3 = self.stage3(self.pool(s2))
        return self.stage4(self.pool(s3)), (s1, s2, s3)


class UNetDecoder(nn.Module):
    """Decoder that mirrors :class:`UNetEncoder`.

    Args:
        in_channels: Channels of the decoder input (for MNAD the query and memory read, ``2 * widths[3]``).
        widths: The encoder's stage widths.
        out_channels: Output image channels.
        skips: Concatenate the encoder skips (prediction) or not (reconstruction).
        head_batch_norm: BN in the output head (MNAD) or not (the MPN ``ohead`` of DLAN-AC and APN).

    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        out_channels: int,
        skips: bool = True,
        head_batch_norm: bool = True,
    ) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.skips = skips
        self.block4 = DoubleConv(in_channels, w4)
        if skips:
            self.up3, self.block3 = UpConv(w4, w3), DoubleConv(2 * w3, w3)
            self.up2, self.block2 = UpConv(w3, w2), DoubleConv(2 * w2, w2)
            self.up1 = UpConv(w2, w1)
            self.head = OutputHead(2 * w1, w1, out_channels, batch_norm=head_batch_norm)
        else:
            self.up3, self.block3 = UpConv(w4, w4), DoubleConv(w4, w3)
            self.up2, self.block2 = UpConv(w3, w3), DoubleConv(w3, w2)
            self.up1 = UpConv(w2, w2)
            self.head = OutputHead(w2, w1, out_channels, batch_norm=head_batch_norm)

    def forward(self, x: Tensor, skips: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """Decode ``x``; ``skips`` are required when the decoder was built with ``skips=True``."""
        x = self.block4(x)
        if not self.skips:
            return self.head(self.up1(self.block2(self.up2(self.block3(self.up3(x))))))
        if skips is None:
            msg = "This decoder was built with skips=True and needs the encoder's skip maps."
            raise ValueError(msg)
        s1, s2, s3 = skips
        x = self.block3(torch_cat(s3, self.up3(x)))
        x = self.block2(torch_cat(s2, self.up2(x)))
        return self.head(torch_cat(s1, self.up1(x)))


def torch_cat(skip: Tensor, up: Tensor) -> Tensor:
    """Concatenate ``[skip, upsampled]`` on the channel axis (the order of the reference code)."""
    return torch.cat((skip, up), dim=1)
