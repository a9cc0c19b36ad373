"""Channels-last weights on CPU: a layout change only, the same scores, and an opt-out."""

import pytest
import torch
from anomalib.models import get_model

MODELS = ("mnad", "dlan_ac", "lgn_net", "apn", "cdda")


def conv_weights(model) -> list[torch.Tensor]:  # noqa: ANN001
    return [p for p in model.model.parameters() if p.dim() == 4]


@pytest.mark.parametrize("snake", MODELS)
def test_channels_last_changes_the_layout_not_the_scores(snake):
    model = get_model(snake, width=4, image_size=32, seed=0)
    clip = torch.rand(2, model.clip_length, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with model.read_only_eval(), torch.no_grad():
        reference = model.predict_clip(clip)
    parameters = list(model.model.parameters())
    assert all(w.is_contiguous() for w in conv_weights(model))

    model.use_preferred_memory_format()

    weights = conv_weights(model)
    assert weights, "every model has convolutions"
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert any(not w.is_contiguous() for w in weights), "3x3 kernels change layout (1x1 ones are both)"
    assert all(a is b for a, b in zip(parameters, model.model.parameters(), strict=True)), "optimisers keep theirs"
    with model.read_only_eval(), torch.no_grad():
        outputs = model.predict_clip(clip)
    assert set(outputs) == set(reference)
    for name, value in reference.items():
        torch.testing.assert_close(outputs[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_channels_last_can_be_switched_off():
    model = get_model("mnad", width=4, image_size=32, seed=0)
    model.channels_last_on_cpu = False
    model.use_preferred_memory_format()
    assert all(w.is_contiguous() for w in conv_weights(model))
