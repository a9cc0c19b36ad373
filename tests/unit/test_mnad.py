"""MNAD: architecture, memory semantics in training and evaluation, lightning wiring."""

import pytest
import torch

from anomalib_vadproto import Mnad
from anomalib_vadproto.components.memory import memory_update
from anomalib_vadproto.models.mnad.torch_model import MnadModel


def clip(b=2, t=5, c=1, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, c, h, w, generator=g) * 2 - 1


def test_paper_network_has_the_reference_parameter_count():
    model = MnadModel()  # prediction, width 64, RGB
    assert sum(p.numel() for p in model.encoder.parameters()) == 4_693_376
    assert sum(p.numel() for p in model.decoder.parameters()) == 10_957_443
    assert sum(p.numel() for p in model.parameters()) == 15_650_819
    assert model.memory.items.shape == (10, 512)


def test_reconstruction_variant_has_no_skips_and_one_frame_clips():
    model = MnadModel(task="reconstruction", width=4, in_channels=1)
    assert model.clip_length == 1 and not model.decoder.skips
    model.eval()
    batch, cues = model.score(torch.rand(2, 1, 16, 16) * 2 - 1)  # 4-D single frames are accepted
    assert batch.anomaly_map.shape == (2, 1, 16, 16) and cues["psnr"].shape == (2,)


def test_training_forward_gives_loss_inputs_and_no_gradient_to_memory():
    torch.manual_seed(0)
    model = MnadModel(width=4, in_channels=1)
    out = model(clip())
    assert out.prediction.shape == (2, 1, 32, 32)
    assert out.queries.shape == (2 * 4 * 4, 32)
    assert torch.allclose(out.queries.norm(dim=1), torch.ones(32))
    assert torch.all(out.nearest != out.second)
    out.prediction.square().mean().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert not model.memory.items.requires_grad


def test_eval_score_cues_and_pred_score():
    model = MnadModel(width=4, in_channels=1, test_time_update=False).eval()
    with torch.no_grad():
        batch, cues = model.score(clip())
    assert set(cues) == {"psnr", "feature_distance"}
    assert torch.allclose(batch.pred_score, -cues["psnr"])
    assert torch.all(cues["feature_distance"] >= 0)
    assert batch.anomaly_map.shape == (2, 1, 32, 32)


def test_gated_test_time_update_follows_gamma_and_read_only():
    torch.manual_seed(0)
    x = clip()
    never = MnadModel(width=4, in_channels=1, gamma=0.0).eval()
    trained = never.memory.items.clone()
    with torch.no_grad():
        never.score(x)
    assert torch.equal(never.memory.current_items(True), trained)  # no clip is below gamma = 0

    always = MnadModel(width=4, in_channels=1, gamma=1e9).eval()
    always.load_state_dict(never.state_dict())
    with torch.no_grad():
        always.score(x)
        after_first = always.memory.current_items(True).clone()
        # expected: sequential update with each clip's queries, read with the batch-start items
        feats, _ = always.encoder(x[:, :4].reshape(2, 4, 32, 32))
        q = torch.nn.functional.normalize(feats, dim=1).permute(0, 2, 3, 1).reshape(2, -1, 32)
        expected = memory_update(memory_update(trained, q[0]), q[1])
    assert torch.allclose(after_first, expected, atol=1e-6)
    assert torch.equal(always.memory.items, trained)  # the trained items never change at test time
    with torch.no_grad():
        always.score(x)
    assert not torch.allclose(always.memory.current_items(True), after_first)  # persists and keeps evolving

    always.reset_test_state()
    always.read_only = True
    with torch.no_grad():
        always.score(x)
    assert torch.equal(always.memory.current_items(True), trained)


def test_lightning_training_step_updates_the_trained_memory():
    model = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0)

    class Batch:
        image = clip()

    before = model.model.memory.items.clone()
    loss = model.training_step(Batch(), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert not torch.equal(model.model.memory.items, before)
    assert torch.allclose(model.model.memory.items.norm(dim=1), torch.ones(10))


def test_hyperparameter_defaults_follow_the_task():
    pred = Mnad(width=4, image_size=32)
    recon = Mnad(task="reconstruction", width=4, image_size=32)
    assert (pred.lr, pred.lambda_compact, pred.model.gamma) == (2e-4, 0.1, 0.01)
    assert (recon.lr, recon.lambda_compact, recon.model.gamma) == (2e-5, 0.01, 0.015)
    assert pred.protocol.cue_weights == {"feature_distance": pytest.approx(0.4), "psnr": 0.6}
    assert recon.clip_length == 1 and pred.clip_length == 5


def test_invalid_arguments():
    with pytest.raises(ValueError, match="task"):
        Mnad(task="segmentation")
    with pytest.raises(ValueError, match="score_weight"):
        Mnad(score_weight=1.5, width=4)
    with pytest.raises(ValueError, match="image_size"):
        Mnad(image_size=(32, 32, 3), width=4)


def test_seed_makes_initialisation_reproducible():
    a, b = Mnad(width=4, image_size=32, seed=7), Mnad(width=4, image_size=32, seed=7)
    assert torch.equal(a.model.memory.items, b.model.memory.items)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=False))


def test_pre_processor_maps_to_signed_grey():
    model = Mnad(image_size=(16, 24), grayscale=True, width=4)
    out = model.pre_processor(torch.ones(2, 5, 3, 40, 60))
    assert out.shape == (2, 5, 1, 16, 24)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-3)  # 1.0 -> +1 ; 0.0 -> -1 (grey weights sum to 0.9999)
    assert torch.allclose(model.pre_processor(torch.zeros(1, 5, 3, 40, 60)), -torch.ones(1, 5, 1, 16, 24))
