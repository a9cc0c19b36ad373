"""The contract of the five torch models (:class:`VideoTorchModel`): geometry, the two modes, score, test-time state."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
import torch
from anomalib.data import InferenceBatch

from anomalib_vadproto.components.torch_model import VideoTorchModel
from anomalib_vadproto.models.apn.torch_model import ApnModel
from anomalib_vadproto.models.cdda.torch_model import CddaModel
from anomalib_vadproto.models.dlan_ac.torch_model import DlanAcModel
from anomalib_vadproto.models.lgn_net.torch_model import LgnNetModel
from anomalib_vadproto.models.mnad.torch_model import MnadModel

# Tiny grey networks; gamma = 1 lets every test clip update the memory models' test-time items.
BUILDERS: dict[str, Callable[[], VideoTorchModel]] = {
    "mnad": lambda: MnadModel(in_channels=1, width=4, gamma=1.0),
    "mnad_reconstruction": lambda: MnadModel(task="reconstruction", in_channels=1, width=4, gamma=1.0),
    "dlan_ac": lambda: DlanAcModel(in_channels=1, width=4, num_clusters=4, som_iterations=10),
    "lgn_net": lambda: LgnNetModel(in_channels=1, width=4, gamma=1.0),
    "loc_net": lambda: LgnNetModel(variant="loc", in_channels=1, width=4),
    "apn": lambda: ApnModel(in_channels=1, width=4),
    "cdda": lambda: CddaModel(in_channels=1, width=4, num_clusters=4),
}
#: Models whose scoring updates test-time state (the memory's gated update) unless read-only.
STATEFUL = {"mnad", "mnad_reconstruction", "lgn_net"}
#: Cues each model's score returns by default (its protocol's cues).
CUES = {
    "mnad": {"psnr", "feature_distance"},
    "mnad_reconstruction": {"psnr", "feature_distance"},
    "dlan_ac": {"psnr"},
    "lgn_net": {"psnr", "feature_distance"},
    "loc_net": {"psnr"},
    "apn": {"psnr", "psnr_feature"},
    "cdda": {"regularity"},
}
# state_dict keys of the tiny networks above (count, sha256 of the keys joined by newlines), as checkpoints
# written before the base class hold them: a change here means old checkpoints no longer load.
STATE_DICT_KEYS = {
    "mnad": (131, "f0d5fa7ebdd6c9e0"),
    "dlan_ac": (134, "94e0b3dbecf41c08"),
    "lgn_net": (193, "5df6e10a59894c42"),
    "apn": (52, "0af0380867ab002c"),
    "cdda": (63, "9dc6360a6b53c785"),
}


def build(name: str) -> VideoTorchModel:
    torch.manual_seed(0)
    return BUILDERS[name]()


def clip(model: VideoTorchModel, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, model.clip_length, model.in_channels, 32, 32, generator=generator) * 2 - 1


@pytest.mark.parametrize("name", BUILDERS)
def test_every_model_states_its_clip_geometry_and_starts_writable(name):
    model = build(name)
    assert isinstance(model, VideoTorchModel)
    expected_length = 1 if name == "mnad_reconstruction" else 5
    assert model.clip_length == expected_length and model.num_inputs == (1 if expected_length == 1 else 4)
    assert model.in_channels == 1
    assert model.read_only is False  # APN included: the export sets it on every model
    assert model.compile_options is None


@pytest.mark.parametrize("name", BUILDERS)
def test_score_returns_an_inference_batch_and_a_dict_of_per_clip_cues(name):
    model = build(name).eval()
    x = clip(model)
    with torch.no_grad():
        batch, cues = model.score(x)
        model.reset_test_state()
        forwarded = model(x)
    assert isinstance(batch, InferenceBatch) and isinstance(forwarded, InferenceBatch)
    assert batch.pred_score.shape == (2,) and batch.anomaly_map.shape == (2, 1, 32, 32)
    assert isinstance(cues, dict) and set(cues) == CUES[name]
    assert all(isinstance(value, torch.Tensor) and value.shape == (2,) for value in cues.values())
    torch.testing.assert_close(forwarded.pred_score, batch.pred_score)  # eval-mode forward: score's batch


@pytest.mark.parametrize("name", BUILDERS)
def test_training_forward_returns_the_training_outputs(name):
    model = build(name).train()
    out = model(clip(model))
    assert not isinstance(out, InferenceBatch)
    assert out.prediction.shape == (2, 1, 32, 32) if name != "cdda" else out.appearance.shape == (2, 1, 32, 32)


def scored(model: VideoTorchModel, x: torch.Tensor) -> torch.Tensor:
    """The score and every cue of ``x``, stacked: what a test-time update could change."""
    batch, cues = model.score(x)
    return torch.stack([batch.pred_score, *cues.values()])


@pytest.mark.parametrize("name", BUILDERS)
def test_reset_test_state_restores_the_scores_of_a_fresh_evaluation(name):
    model = build(name).eval()
    trained = {key: value.clone() for key, value in model.state_dict().items()}
    first, others = clip(model, seed=1), [clip(model, seed=seed) for seed in (2, 3)]
    with torch.no_grad():
        model.reset_test_state()
        fresh = scored(model, first)
        for other in others:
            model.score(other)
        drifted = scored(model, first)
        model.reset_test_state()
        restored = scored(model, first)
    assert torch.equal(restored, fresh)
    # the test-time updates are real where the model has them (else the reset would prove nothing)
    assert torch.equal(drifted, fresh) is (name not in STATEFUL)
    # scoring and resetting never touch the trained weights and buffers
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in trained.items())


@pytest.mark.parametrize("name", BUILDERS)
def test_read_only_scoring_is_a_pure_function_of_the_clip(name):
    model = build(name).eval()
    model.read_only = True
    first, other = clip(model, seed=1), clip(model, seed=2)
    with torch.no_grad():
        before = scored(model, first)
        model.score(other)
        after = scored(model, first)
    assert torch.equal(before, after)


@pytest.mark.parametrize("name", STATE_DICT_KEYS)
def test_state_dict_keys_are_those_of_existing_checkpoints(name):
    keys = list(build(name).state_dict())
    count, digest = STATE_DICT_KEYS[name]
    assert (len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]) == (count, digest), keys


def test_the_base_class_leaves_the_hooks_to_the_subclass():
    class Bare(VideoTorchModel):
        pass

    bare = Bare(num_inputs=2, in_channels=3)
    assert (bare.clip_length, bare.num_inputs, bare.in_channels, bare.read_only) == (3, 2, 3, False)
    assert list(bare.state_dict()) == []  # no parameter or buffer of its own
    bare.reset_test_state()  # no test-time state: a no-op
    with pytest.raises(NotImplementedError):
        bare.train()(torch.zeros(1, 3, 3, 8, 8))
    with pytest.raises(NotImplementedError):
        bare.eval().score(torch.zeros(1, 3, 3, 8, 8))
    with pytest.raises(ValueError, match="num_input_frames must be at least 1, got 0"):
        Bare(num_inputs=0, in_channels=3)
