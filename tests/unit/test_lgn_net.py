"""Unit tests of LGN-Net: parameter counts, the memory-only gradient path, variants, test-time memory."""

from __future__ import annotations

import pytest
import torch

from anomalib_vadproto import LgnNet
from anomalib_vadproto.components.clip import ClipShapeError
from anomalib_vadproto.components.losses import intensity_loss
from anomalib_vadproto.models.lgn_net import LgnNetModel


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def clip(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 5, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny(variant: str = "lgn", **kwargs) -> LgnNetModel:
    torch.manual_seed(0)
    return LgnNetModel(variant=variant, in_channels=1, width=4, **kwargs)


def test_paper_network_matches_the_reference_parameter_counts():
    model = LgnNetModel()
    assert count(model.encoder) == 4_694_400 - 1_024  # E_glo without the reference's unused BN(512)
    assert count(model.global_decoder) + count(model.head) == 7_860_867
    assert count(model.frame_encoder) == 260_928
    assert count(model.recurrent) == 4 * 2_392_064
    assert count(model.local_decoder) == 369_216
    assert count(model) == 22_752_643
    assert model.memory.items.shape == (10, 512) and not model.memory.items.requires_grad


def test_local_width_narrows_only_the_local_branch():
    narrow = LgnNetModel(in_channels=1, width=8, local_width=4, num_layers=2)
    same = LgnNetModel(in_channels=1, width=8, num_layers=2)
    assert count(narrow.encoder) == count(same.encoder)
    assert count(narrow.global_decoder) == count(same.global_decoder)
    assert narrow.recurrent.output_channels == 2 * 8 < same.recurrent.output_channels == 2 * 16  # F_loc = [H ; M]
    assert narrow.head[0].in_channels == 4 + 8  # fused [F'_glo ; F'_loc]
    out = narrow.train()(clip(size=32))
    assert out.prediction.shape == (2, 1, 32, 32)
    assert LgnNet(width=8, local_width=4, num_layers=1, image_size=32, grayscale=True).hparams.local_width == 4
    with pytest.raises(ValueError, match="width"):
        LgnNetModel(width=8, local_width=0)


def test_frame_loss_never_reaches_the_prototype_encoder():
    """The decoder sees only the detached-weight read of buffer items."""
    model = tiny()
    out = model(clip())
    intensity_loss(out.prediction, out.target).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.recurrent.parameters())
    model.zero_grad()
    out = model(clip())
    out.losses()["compact"].backward()  # ... only the feature losses train E_glo
    assert any(p.grad is not None and p.grad.any() for p in model.encoder.parameters())


def test_glo_net_decodes_queries_so_the_frame_loss_reaches_its_encoder():
    model = tiny("glo")
    out = model(clip())
    intensity_loss(out.prediction, out.target).backward()
    assert any(p.grad is not None and p.grad.any() for p in model.encoder.parameters())
    assert not hasattr(model, "recurrent")


@pytest.mark.parametrize(
    ("variant", "cell", "cues"),
    [
        ("lgn", "st_lstm", {"psnr", "feature_distance"}),
        ("lgn_st", "conv_lstm", {"psnr", "feature_distance"}),
        ("loc", "conv_lstm", {"psnr"}),
        ("glo", None, {"psnr", "feature_distance"}),
    ],
)
def test_variants(variant, cell, cues):
    model = tiny(variant).eval()
    assert (model.recurrent.cell_type if model.has_local else None) == cell
    with torch.no_grad():
        batch, got = model.score(clip())
    assert set(got) == cues
    assert batch.anomaly_map.shape == (2, 1, 32, 32)
    torch.testing.assert_close(batch.pred_score, -got["psnr"])


def test_loc_net_trains_on_the_frame_loss_alone():
    model = LgnNet(variant="loc", image_size=32, grayscale=True, width=4)
    assert not model.model.has_memory and model.protocol.cue_weights == {"psnr": 1.0}
    out = model.model(clip())
    assert out.queries is None and out.prediction.shape == (2, 1, 32, 32)


def test_test_time_memory_is_gated_and_read_only_export_leaves_it():
    model = tiny(gamma=1.0).eval()  # every clip passes the gate
    trained = model.memory.items.clone()
    with torch.no_grad():
        model.score(clip())
    evolved = model.memory.current_items(test_time=True).clone()
    assert not torch.equal(evolved, trained) and torch.equal(model.memory.items, trained)
    model.read_only = True
    with torch.no_grad():
        model.score(clip(seed=1))
    assert torch.equal(model.memory.current_items(test_time=True), evolved)
    model.read_only = False
    model.reset_test_state()
    assert torch.equal(model.memory.current_items(test_time=True), trained)


def test_training_step_updates_the_memory():
    model = LgnNet(image_size=32, grayscale=True, width=4, seed=0)
    before = model.model.memory.items.clone()

    class Batch:
        image = clip()

    loss = model.training_step(Batch(), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert not torch.equal(model.model.memory.items, before)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (torch.rand(2, 1, 32, 32), ClipShapeError),
        (torch.rand(2, 4, 1, 32, 32), ClipShapeError),
        (torch.rand(2, 5, 3, 32, 32), ClipShapeError),
        (torch.full((2, 5, 1, 32, 32), float("nan")), ValueError),
    ],
)
def test_bad_clips_fail_clearly(bad, error):
    with pytest.raises(error):
        tiny()(bad)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="variant"):
        LgnNetModel(variant="lgn_net")
    with pytest.raises(ValueError, match="score_weight"):
        LgnNet(score_weight=1.5)


def test_frame_encoder_normalises_each_time_step_as_the_official_code():
    """``per_frame``: one encoder call per input frame in training (batch statistics of that frame's batch)."""
    per_frame, pooled = tiny(frame_norm="per_frame"), tiny(frame_norm="pooled")
    pooled.load_state_dict(per_frame.state_dict())
    inputs = clip(b=3)[:, :4]
    per_frame.train(), pooled.train()
    expected = torch.stack([tiny_copy_encode(per_frame, inputs[:, step]) for step in range(4)], dim=1)
    bn = per_frame.frame_encoder[1]
    start = bn.running_mean.clone()
    got = per_frame.encode_frames(inputs)
    torch.testing.assert_close(got, expected)
    assert int(bn.num_batches_tracked) == 4  # one running-statistics update per frame
    # the running mean follows four momentum steps of the per-frame batch means
    first = per_frame.frame_encoder[0]
    running = start
    for step in range(4):
        mean = first(inputs[:, step]).mean(dim=(0, 2, 3))
        running = (1 - bn.momentum) * running + bn.momentum * mean
    torch.testing.assert_close(bn.running_mean, running.detach())
    pooled_out = pooled.encode_frames(inputs)
    assert int(pooled.frame_encoder[1].num_batches_tracked) == 1
    assert not torch.allclose(pooled_out, got)  # statistics over 4B frames differ from each frame's B
    # evaluation uses the running statistics: both forms compute the same thing
    per_frame.eval(), pooled.eval()
    pooled.load_state_dict(per_frame.state_dict())
    torch.testing.assert_close(per_frame.encode_frames(inputs), pooled.encode_frames(inputs))


def tiny_copy_encode(model: LgnNetModel, frames: torch.Tensor) -> torch.Tensor:
    """The frame encoder of a copy of ``model`` (its statistics untouched) on one time step, in training mode."""
    import copy

    encoder = copy.deepcopy(model.frame_encoder).train()
    return encoder(frames)


def test_frame_norm_is_checked():
    with pytest.raises(ValueError, match="frame_norm"):
        tiny(frame_norm="per_clip")
