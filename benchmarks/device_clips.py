"""Training batches per second with the frame cache against ``device_clips`` (GPU-resident training clips).

Times the training batches of ``LocalUCSDped`` as Lightning hands them to the model: the train
dataloader's batches passed through the datamodule's ``transfer_batch_to_device`` hook to the device.
``frame_cache`` is today's path (``cache_frames=True``, no workers: every clip cut and converted in
Python, then collated and, on a GPU, copied to the device); ``device_clips`` loads clip indices and
builds each batch on the device from one ``uint8`` tensor of the training frames. Each variant runs
``--epochs`` epochs (at most ``--batches`` batches each) under the same seed; the first epoch includes
decoding the videos (into the cache, or into the device tensor and its copy to the device), later
epochs are the steady state. Besides wall-clock batches per second, the process CPU time per batch
is recorded: on a shared machine it is far less disturbed by other processes than wall-clock time.

Data: UCSD Ped2 when ``datasets/ucsd/UCSDped2`` exists (or ``--root``/``--category``), else a synthetic
dataset written to a temporary folder (``--videos`` training videos of ``--frames`` frames of
``--height`` x ``--width``).

    python -m benchmarks.device_clips                                  # CPU, or the GPU when there is one
    python -m benchmarks.device_clips --videos 4 --frames 60 --batches 100 --device cpu
    python -m benchmarks.device_clips --resize 256 256                 # with the model's Resize, as in training
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, commit, record, shown_path

VARIANTS = {"frame_cache": {"cache_frames": True}, "device_clips": {"device_clips": True}}


def time_variant(kwargs: dict, args: argparse.Namespace, device) -> dict:  # noqa: ANN001
    """Set up one datamodule and time ``args.epochs`` epochs of its training batches on ``device``."""
    import torch
    from torchvision.transforms.v2 import Resize

    from anomalib_vadproto import LocalUCSDped

    augmentations = {"train_augmentations": Resize(tuple(args.resize), antialias=False)} if args.resize else {}
    datamodule = LocalUCSDped(
        root=args.root, category=args.category, clip_length_in_frames=args.clip_length, frames_between_clips=1,
        train_batch_size=args.batch_size, num_workers=0, seed=0, **augmentations, **kwargs,
    )  # fmt: skip
    start = time.perf_counter()
    datamodule.setup()
    setup = time.perf_counter() - start
    torch.manual_seed(0)
    epochs, batches = [], 0
    for _ in range(args.epochs):
        start, cpu_start, count = time.perf_counter(), time.process_time(), 0
        for batch in datamodule.train_dataloader():
            moved = datamodule.transfer_batch_to_device(batch, device, 0)
            count += 1
            if count == args.batches:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        epochs.append({
            "batches": count,
            "seconds": round(seconds, 3),
            "batches_per_second": round(count / seconds, 1),
            "cpu_ms_per_batch": round(1e3 * cpu / count, 2),
        })  # fmt: skip
        batches = count
    return {
        "setup_seconds": round(setup, 2),
        "epochs": epochs,
        "steady_batches_per_second": max(epoch["batches_per_second"] for epoch in epochs[1:] or epochs),
        "steady_cpu_ms_per_batch": min(epoch["cpu_ms_per_batch"] for epoch in epochs[1:] or epochs),
        "batches_per_epoch": batches,
        "image_shape": list(moved.image.shape),
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="UCSDped-layout root (default: Ped2 or synthetic)")
    parser.add_argument("--category", default="UCSDped2")
    parser.add_argument("--videos", type=int, default=4, help="synthetic training videos")
    parser.add_argument("--frames", type=int, default=60, help="frames per synthetic video")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=360)
    parser.add_argument("--clip-length", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=500, help="at most this many batches per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resize", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    started_on = commit()
    import torch

    from anomalib_vadproto.data import make_synthetic_ucsd

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ped2 = REPO / "datasets" / "ucsd"
    with tempfile.TemporaryDirectory() as tmp:
        if args.root is None and (ped2 / args.category).is_dir():
            args.root, data = ped2, args.category
        elif args.root is None:
            args.root, args.category = Path(tmp), "synthetic"
            make_synthetic_ucsd(args.root, category="synthetic", n_train=args.videos, n_test=1, n_frames=args.frames,
                                height=args.height, width=args.width, seed=0)  # fmt: skip
            data = f"synthetic {args.videos} train videos x {args.frames} frames of {args.height}x{args.width}"
        else:
            data = shown_path(args.root / args.category)
        results = {}
        for name, kwargs in VARIANTS.items():
            results[name] = time_variant(kwargs, args, device)
            rates = ", ".join(f"{epoch['batches_per_second']}" for epoch in results[name]["epochs"])
            cpu = ", ".join(f"{epoch['cpu_ms_per_batch']}" for epoch in results[name]["epochs"])
            print(f"{name}: setup {results[name]['setup_seconds']} s, batches/s: {rates}; CPU ms per batch: {cpu}")
    speedup = results["device_clips"]["steady_batches_per_second"] / results["frame_cache"]["steady_batches_per_second"]
    cpu_ratio = results["frame_cache"]["steady_cpu_ms_per_batch"] / results["device_clips"]["steady_cpu_ms_per_batch"]
    print(f"device_clips / frame_cache (steady state): {speedup:.1f}x batches/s, {cpu_ratio:.1f}x less CPU per batch")
    resized = f", resized to {args.resize}" if args.resize else ""
    batch = f"{args.batch_size} clips x {args.clip_length} frames{resized}"
    result = {
        "kind": "speed",
        "model": "data",
        "profile": "device_clips_train_batches",
        "data": data,
        "training_device": str(device),
        "batch": batch,
        "results": results,
        "steady_speedup": round(speedup, 2),
        "steady_cpu_ratio": round(cpu_ratio, 2),
    }
    run_settings = {
        "data": {
            "class": "LocalUCSDped",
            "category": args.category,
            "clip_length_in_frames": args.clip_length,
            "frames_between_clips": 1,
            "train_batch_size": args.batch_size,
            "num_workers": 0,
            "seed": 0,
            "train_augmentations": f"Resize({tuple(args.resize)}, antialias=False)" if args.resize else None,
        },
        "variants": VARIANTS,
        "epochs": args.epochs,
        "max_batches_per_epoch": args.batches,
    }
    path = record(
        "speed_device_clips", result, module=__spec__.name, argv=argv, settings=run_settings, started_on=started_on
    )
    print(path)
    return path


if __name__ == "__main__":
    main()
