"""``--trainer.precision bf16-mixed``: every model trains in bf16 and still scores in FP32."""

import numpy as np
import pytest
import torch
from anomalib.engine import Engine
from anomalib.models import get_model

from tests.conftest import clip_datamodule

pytestmark = pytest.mark.slow

# Staged models run their first stage for one epoch, then one epoch of the main stage.
MODELS = {
    "mnad": {},
    "dlan_ac": {"ac_epochs": 1, "som_iterations": 100},
    "lgn_net": {},
    "apn": {},
    "cdda": {"ae_epochs": 1, "num_clusters": 4, "kmeans_samples": 500},
}


@pytest.mark.parametrize("snake", list(MODELS))
def test_bf16_mixed_trains_in_bf16_and_scores_in_fp32(snake, synthetic_root, tmp_path):
    extra = MODELS[snake]
    model = get_model(snake, width=4, image_size=32, grayscale=True, seed=0, **extra)
    datamodule = clip_datamodule(synthetic_root)
    first_conv = next(m for m in model.model.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[tuple[bool, torch.dtype]] = []
    first_conv.register_forward_hook(lambda module, args, out: seen.append((model.training, out.dtype)))

    stages = int(extra.get("ac_epochs", 0)) + int(extra.get("ae_epochs", 0))
    engine = Engine(
        max_epochs=stages + 1,
        precision="bf16-mixed",
        limit_train_batches=3,
        default_root_dir=tmp_path / "bf16",
        logger=False,
        enable_progress_bar=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}, "training ran under autocast"
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters()), "FP32 master weights"
    memory = getattr(model.model, "memory", None)  # MNAD, LGN-Net
    if memory is not None:  # the memory is state: updated in FP32, unit-norm
        items = memory.items
        assert items.dtype == torch.float32
        torch.testing.assert_close(items.norm(dim=1), torch.ones(items.shape[0]))

    seen.clear()
    engine.test(model=model, datamodule=datamodule)
    assert seen and {dtype for _, dtype in seen} == {torch.float32}, "scoring ignores the trainer's autocast"
    mixed = model.protocol_result.all_scores
    Engine(logger=False, default_root_dir=tmp_path / "fp32", enable_progress_bar=False).test(
        model=model, datamodule=datamodule
    )
    np.testing.assert_array_equal(mixed, model.protocol_result.all_scores)
    assert np.isfinite(mixed).all()
