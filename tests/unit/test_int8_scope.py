"""INT8_PTQ: which layers stay in FP32 (the ones nearest to the outputs)."""

from __future__ import annotations

import openvino as ov
import pytest
import torch
from torch import nn

from anomalib_vadproto.components.export import output_layers


class TwoHeads(nn.Module):
    """conv1 -> conv2 -> conv3 -> prediction, and conv2's map -> matmul with a bank -> distance."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 1, 3, padding=1)
        self.register_buffer("bank", torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        prediction = torch.tanh(self.conv3(features))
        error = (prediction - x).square().mean(dim=(1, 2, 3))
        scores = features.flatten(2).transpose(1, 2) @ self.bank  # (N, HW, 3)
        return error, scores.amax(dim=(1, 2))


@pytest.fixture(scope="module")
def graph() -> ov.Model:
    with torch.no_grad():
        return ov.convert_model(TwoHeads().eval(), example_input=torch.rand(1, 1, 8, 8))


def kinds(model: ov.Model, names: list[str]) -> list[str]:
    by_name = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    return [by_name[name] for name in names]


def test_depth_one_keeps_the_layer_next_to_each_output(graph):
    names = output_layers(graph, 1)
    # The prediction path ends in conv3, the distance path in the matrix product: one each.
    assert sorted(kinds(graph, names)) == ["Convolution", "MatMul"]


def test_depth_two_reaches_one_layer_further_on_each_path(graph):
    names = output_layers(graph, 2)
    # conv3 -> conv2 on the prediction path, matmul -> conv2 on the distance path: conv2 once.
    assert sorted(kinds(graph, names)) == ["Convolution", "Convolution", "MatMul"]
    assert set(output_layers(graph, 1)) < set(names)


def test_large_depth_keeps_every_layer_and_zero_keeps_none(graph):
    every = [
        op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_type_name() in ("Convolution", "MatMul")
    ]
    assert sorted(output_layers(graph, 10)) == sorted(every)
    assert len(every) == 4
    assert output_layers(graph, 0) == []


def test_negative_depth_is_refused(graph):
    with pytest.raises(ValueError, match="int8_fp32_depth must be >= 0"):
        output_layers(graph, -1)


def test_int8_export_of_a_never_validated_model_is_refused_clearly():
    # An untrained model's post-processor normalises with NaN statistics; OpenVINO's INT8 transformations
    # would fail deep inside compile_model ("Attribute 'min' must be less or equal than 'max'").
    from anomalib_vadproto import Mnad

    model = Mnad(image_size=(32, 32), grayscale=True, width=4)
    with pytest.raises(ValueError, match=r"INT8_PTQ needs a trained Mnad: .*normalisation statistics"):
        model._post_training_quantization_ov(model=None, datamodule=object())
    with pytest.raises(ValueError, match="needs a datamodule"):
        model._post_training_quantization_ov(model=None, datamodule=None)
