"""CPU costs behind the lite profiles: SOM steps per feature map and one training step per model.

* The Adaptive Clusterer (DLAN-AC): seconds per 5000-step feature map for the winner-only loop on
  NumPy views (the CPU default) and on torch tensors, and for the Gaussian neighbourhood, at the lite
  (128 x 16x16) and paper (512 x 32x32) feature sizes.
* One training step (forward, losses, backward, Adam) on grey clips, batch 4, for MNAD-lite, LGN-Net
  at several widths and depths (why the LGN-Net lite profile narrows its recurrent branch) and APN
  at 64 and 128 pixels (why the APN lite profile works at 64x64), and APN's criss-cross attention
  alone at three sizes.

    python -m research.cpu_step_costs
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import commit, record


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

    from anomalib_vadproto import Apn
    from anomalib_vadproto.models.apn import RecurrentCrissCross
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
            clusterer.numpy_loop = numpy_loop
            som[f"{name}_{dim}x{side}x{side}"] = round(
                per_call(lambda c=clusterer, f=features: c.fit_feature_map(f), 3), 4
            )
            print(f"SOM {name} {dim}x{side}x{side}: {som[f'{name}_{dim}x{side}x{side}'] * 1e3:.0f} ms per map")

    def memory_loss(model, clip):  # noqa: ANN001, ANN202 - MNAD / LGN-Net
        losses = model(clip).losses()
        return losses["pred"] + losses["compact"] + losses["separate"]

    def apn_loss(module, clip):  # noqa: ANN001, ANN202
        losses = module.losses(module.model(clip))
        return losses["pixel"] + 1e-4 * losses["ssim"] + losses["feature"] + 1e-4 * losses["diversity"]

    # name -> (class, init arguments, frame side, loss); batch 4 grey clips of 5 frames
    models = {
        "mnad_width16": (MnadModel, {"in_channels": 1, "width": 16}, 128, memory_loss),
        "lgn_net_width8_layers2": (LgnNetModel, {"in_channels": 1, "width": 8, "num_layers": 2}, 128, memory_loss),
        "lgn_net_width8_layers4": (LgnNetModel, {"in_channels": 1, "width": 8, "num_layers": 4}, 128, memory_loss),
        "lgn_net_width16_layers2": (LgnNetModel, {"in_channels": 1, "width": 16, "num_layers": 2}, 128, memory_loss),
        "lgn_net_width16_local8_layers2": (
            LgnNetModel,
            {"in_channels": 1, "width": 16, "local_width": 8, "num_layers": 2},
            128,
            memory_loss,
        ),
        "apn_width16_64px": (Apn, {"width": 16, "image_size": 64, "grayscale": True}, 64, apn_loss),
        "apn_width16_128px": (Apn, {"width": 16, "image_size": 128, "grayscale": True}, 128, apn_loss),
    }
    steps = {}
    for name, (cls, kwargs, side, loss_fn) in models.items():
        model = cls(**kwargs).train()
        clip = torch.rand(4, 5, 1, side, side) * 2 - 1
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

        def step(model=model, optimizer=optimizer, clip=clip, loss_fn=loss_fn) -> None:
            loss = loss_fn(model, clip)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        steps[name] = round(per_call(step, 5, warmup=2), 4)
        print(f"step {name}: {steps[name]:.3f} s")

    # APN's criss-cross attention (two hops, forward + backward) at the first level's size: O(HW(H + W))
    criss_cross = {}
    for side in (32, 64, 128):
        block = RecurrentCrissCross(16)
        x = torch.randn(4, 16, side, side, requires_grad=True)
        criss_cross[f"16x{side}x{side}"] = round(per_call(lambda b=block, x=x: b(x).sum().backward(), 3), 4)
        print(f"criss-cross 16x{side}x{side}: {criss_cross[f'16x{side}x{side}']:.3f} s")
    result = {
        "kind": "speed",
        "model": "apn,dlan_ac,lgn_net,mnad",
        "profile": "cpu_costs",
        "som_seconds_per_map": som,
        "train_step_seconds_batch4_grey": steps,
        "train_step_frame_side": {name: side for name, (_, _, side, _) in models.items()},
        "criss_cross_forward_backward_seconds_batch4": criss_cross,
        "over_mnad_step": {k: round(v / steps["mnad_width16"], 2) for k, v in steps.items()},
    }
    run_settings = {
        "som": {"feature_sizes": ["128x16x16", "512x32x32"], "iterations": 5000},
        "train_step": {
            "batch": 4,
            "clip_frames": 5,
            "optimiser": {"name": "Adam", "lr": 2e-4},
            "models": {name: {"class": cls.__name__, **kwargs} for name, (cls, kwargs, _, _) in models.items()},
        },
        "criss_cross": {"channels": 16, "batch": 4, "sides": [32, 64, 128]},
    }
    path = record(
        "speed_cpu_step_costs", result, module=__spec__.name, argv=argv, settings=run_settings, started_on=started_on
    )
    print(path)
    return path


if __name__ == "__main__":
    main()
