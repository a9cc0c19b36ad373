"""CPU costs behind the lite profiles: SOM steps per feature map and one training step per model.

* The Adaptive Clusterer (DLAN-AC): seconds per 5000-step feature map for the winner-only loop on
  NumPy views (the CPU default) and on torch tensors, and for the Gaussian neighbourhood, at the lite
  (128 x 16x16) and paper (512 x 32x32) feature sizes.
* One training step (forward, losses, backward, Adam) at 128x128 grey, batch 4, for MNAD-lite and
  LGN-Net at several widths and depths (why the LGN-Net lite profile is narrower).

    python benchmarks/cpu_step_costs.py
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import commit, write_result  # noqa: E402


def per_call(fn, repeats: int, warmup: int = 1) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> Path:
    started_on = commit()
    import torch
    import torch.nn.functional as F  # noqa: N812

    from anomalib_vadproto.models.dlan_ac import AdaptiveClusterer
    from anomalib_vadproto.models.lgn_net import LgnNetModel
    from anomalib_vadproto.models.mnad.torch_model import MnadModel

    torch.manual_seed(0)
    som = {}
    for dim, side in ((128, 16), (512, 32)):
        features = F.normalize(torch.randn(side * side, dim), dim=1)
        for name, kwargs, numpy_loop in (
            ("winner_only_numpy", {}, True),
            ("winner_only_torch", {}, False),
            ("gaussian_torch", {"neighbourhood": "gaussian"}, True),
        ):
            clusterer = AdaptiveClusterer(feature_dim=dim, **kwargs)
            clusterer.numpy_on_cpu = numpy_loop
            som[f"{name}_{dim}x{side}x{side}"] = round(
                per_call(lambda c=clusterer, f=features: c.fit_feature_map(f), 3), 4
            )
            print(f"SOM {name} {dim}x{side}x{side}: {som[f'{name}_{dim}x{side}x{side}'] * 1e3:.0f} ms per map")

    clip = torch.rand(4, 5, 1, 128, 128) * 2 - 1
    models = {
        "mnad_width16": lambda: MnadModel(in_channels=1, width=16),
        "lgn_net_width8_layers2": lambda: LgnNetModel(in_channels=1, width=8, num_layers=2),
        "lgn_net_width8_layers4": lambda: LgnNetModel(in_channels=1, width=8, num_layers=4),
        "lgn_net_width16_layers2": lambda: LgnNetModel(in_channels=1, width=16, num_layers=2),
    }
    steps = {}
    for name, build in models.items():
        model = build().train()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

        def step(model=model, optimizer=optimizer) -> None:
            losses = model(clip).losses()
            optimizer.zero_grad()
            (losses["pred"] + losses["compact"] + losses["separate"]).backward()
            optimizer.step()

        steps[name] = round(per_call(step, 5, warmup=2), 4)
        print(f"step {name}: {steps[name]:.3f} s")
    record = {
        "kind": "speed",
        "model": "dlan_ac,lgn_net,mnad",
        "profile": "cpu_costs",
        "commit": started_on,
        "command": "python benchmarks/"
        + Path(__file__).name
        + " "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "torch_threads": torch.get_num_threads(),
        "som_seconds_per_map": som,
        "train_step_seconds_batch4_128x128_grey": steps,
        "lgn_over_mnad_step": {k: round(v / steps["mnad_width16"], 2) for k, v in steps.items()},
    }
    path = write_result(record, "speed_cpu_step_costs")
    print(path)
    return path


if __name__ == "__main__":
    main()
