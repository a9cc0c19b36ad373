"""``research.cdda_code_collapse`` counts dead channels of CDDA's spatial code correctly."""

from __future__ import annotations

import torch

from anomalib_vadproto import Cdda
from research import cdda_code_collapse as collapse


def test_code_activity_counts_channels_that_are_never_positive() -> None:
    torch.manual_seed(0)
    model = Cdda(image_size=(32, 32), grayscale=True, width=4, num_clusters=4).eval()
    probe = torch.rand(3, 5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    alive = collapse.code_activity(model, probe)
    assert alive["channels"] == 32 and alive["motion_active_channels"] == 32
    assert 0.0 < alive["spatial_positive_fraction"] < 1.0
    with torch.no_grad():
        model.model.spatial_encoder.projection.weight[5:] = 0.0  # ReLU(0) = 0: 27 channels dead
    dead = collapse.code_activity(model, probe)
    assert dead["spatial_active_channels"] == min(alive["spatial_active_channels"], 5) == 5
    assert dead["spatial_positive_fraction"] < alive["spatial_positive_fraction"]
    assert dead["motion_active_channels"] == 32  # the motion code is untouched
