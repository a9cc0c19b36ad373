"""How many channels of CDDA's spatial (appearance) code stay alive during AE pre-training.

The spatial encoder ends in conv → ReLU → L1 normalisation per location (the STD code's layout). A channel whose
ReLU input turns negative everywhere gets no gradient again: it is dead for good. This trains CDDA's
two autoencoders from scratch on UCSD Ped2's training clips with the pre-training loss ``L_a + L_m``
(Adam, batch 4, 128x128 grey, the lite profile's data pipeline), one run per setting, and every
``--every`` steps records, on 16 fixed training clips, the spatial code's channels that
are positive at one location at least ("active"), the fraction of (channel, location) pairs that are
positive, the motion code's active channels (it has no ReLU, so all of them unless exactly 0), and the
mean losses of the last ``--every`` steps. Settings: the lite width at the lite and the paper learning
rate, the paper width at the paper rate, and the lite setting with ``spatial_init: kaiming``.
Writes a results file.

    python -m research.cdda_code_collapse                          # 200 steps, all settings
    python -m research.cdda_code_collapse --steps 1000 --settings lite_width8_lr5e-4,lite_width8_lr5e-4_kaiming
    python -m research.cdda_code_collapse --steps 600 --settings lite_width8_lr5e-4
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import yaml

from benchmarks.common import commit, config_path, ensure_ped2, model_settings, record

logger = logging.getLogger("cdda_code_collapse")

SETTINGS = {
    "lite_width8_lr5e-4": {"width": 8, "lr": 5e-4},
    "lite_width8_lr1e-4": {"width": 8, "lr": 1e-4},
    "paper_width32_lr1e-4": {"width": 32, "lr": 1e-4},
    "lite_width8_lr5e-4_kaiming": {"width": 8, "lr": 5e-4, "spatial_init": "kaiming"},
}


def code_activity(model, probe) -> dict[str, float]:  # noqa: ANN001
    """Active channels of both codes and the spatial code's positive fraction on the probe clips."""
    import torch

    from anomalib_vadproto.components.clip import split_clip, stack_frames
    from anomalib_vadproto.components.scores import to_unit_range

    net = model.model
    with torch.no_grad():
        inputs, last = split_clip(to_unit_range(model.pre_processor(probe)), net.num_inputs)
        spatial, _ = net.spatial_encoder(last)  # L1 normalisation keeps the ReLU's zeros at zero
        motion, _, _ = net.motion_encoder(stack_frames(inputs))
    return {
        "spatial_active_channels": int((spatial > 0).flatten(2).any(dim=2).any(dim=0).sum()),
        "spatial_positive_fraction": round(float((spatial > 0).float().mean()), 4),
        "motion_active_channels": int((motion != 0).flatten(2).any(dim=2).any(dim=0).sum()),
        "channels": int(spatial.shape[1]),
    }


def run_setting(init_args: dict, setting: dict, root: Path, steps: int, every: int, seed: int) -> dict:
    """Pre-train one setting's autoencoders for ``steps`` steps; the activity and losses every ``every`` steps."""
    import torch

    from anomalib_vadproto import Cdda
    from benchmarks.speed import ped2_datamodule

    torch.manual_seed(seed)
    init = setting.get("spatial_init", "default")
    model = Cdda(**{**init_args, "width": setting["width"], "spatial_init": init, "seed": seed})
    model.model.train()
    datamodule = ped2_datamodule(model, root, 4, 32)
    dataset = datamodule.train_data
    indices = torch.linspace(0, len(dataset) - 1, 16).round().long().tolist()
    probe = torch.stack([dataset[i].image for i in indices])  # 16 fixed, evenly spaced training clips
    optimiser = torch.optim.Adam(model.model.autoencoder_parameters(), lr=setting["lr"], betas=(0.9, 0.999))
    trace = [{"step": 0, **code_activity(model, probe)}]
    losses: list[tuple[float, float]] = []
    start = time.perf_counter()
    while len(losses) < steps:
        for batch in datamodule.train_dataloader():
            out = model.model(model.pre_processor(batch.image))
            parts = model.reconstruction_losses(out)
            optimiser.zero_grad()
            (parts["appearance"] + parts["motion"]).backward()
            optimiser.step()
            losses.append((parts["appearance"].item(), parts["motion"].item()))
            if len(losses) % every == 0 or len(losses) == steps:
                recent = losses[-every:]
                trace.append({
                    "step": len(losses),
                    **code_activity(model, probe),
                    "loss_appearance": sum(a for a, _ in recent) / len(recent),
                    "loss_motion": sum(m for _, m in recent) / len(recent),
                })  # fmt: skip
                logger.info("%s", trace[-1])
            if len(losses) == steps:
                break
    return {**setting, "seconds": round(time.perf_counter() - start, 1), "trace": trace}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="pre-training steps (batch 4) per setting")
    parser.add_argument("--every", type=int, default=50, help="record the activity every this many steps")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {list(SETTINGS)}")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args(argv)
    names = [name for name in args.settings.split(",") if name]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started_on = commit()
    init_args = yaml.safe_load(config_path("cdda", "lite").read_text())["model"]["init_args"]
    root = args.data_root or ensure_ped2()
    results = {name: run_setting(init_args, SETTINGS[name], root, args.steps, args.every, args.seed) for name in names}
    result = {
        "model": "cdda",
        "image_size": init_args["image_size"],
        "grayscale": init_args["grayscale"],
        "train_batch_size": 4,
        "seed": args.seed,
        "settings": results,
    }
    run_settings = {
        "models": {"cdda": model_settings("cdda", "lite")},
        "settings": {name: SETTINGS[name] for name in names},  # each overrides width and lr (and spatial_init)
        "optimiser": {"name": "Adam", "betas": [0.9, 0.999], "loss": "L_a + L_m"},
        "steps": args.steps,
        "every": args.every,
    }
    return record(
        "cdda_code_collapse", result, module=__spec__.name, argv=argv, settings=run_settings, started_on=started_on
    )


if __name__ == "__main__":
    main()
