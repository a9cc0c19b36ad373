"""Cost of loading UCSD Ped2 training clips: anomalib's reader against ``LocalUCSDped(cache_frames=True)``.

Times batches of 4 stride-1 clips of 5 frames from the training split, as the lite runs load them:
anomalib's ``UCSDped`` with 2 worker processes (every frame decoded once per clip it belongs to), the
frame cache with no workers (each video decoded once, then clips cut from memory), and the frame cache
with 2 workers (every video decoded at setup in the main process, the workers sharing the frames; the
setup time is recorded) and, for comparison, with 2 workers filling caches of their own as before
(``frame_cache_2_workers_unshared``: each worker decodes what it reads, again every epoch), for a first
and a second pass over the same batches.

    python -m benchmarks.data_loading
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from benchmarks.common import commit, ensure_ped2, record

#: The loaders timed: their ``LocalUCSDped`` options (``_unshared``: workers fill caches of their own).
VARIANTS = {
    "anomalib_reader_2_workers": {"num_workers": 2, "cache_frames": False},
    "frame_cache_0_workers": {"num_workers": 0, "cache_frames": True},
    "frame_cache_2_workers": {"num_workers": 2, "cache_frames": True},
    "frame_cache_2_workers_unshared": {"num_workers": 2, "cache_frames": True},
}


def seconds_per_batch(datamodule, batches: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in itertools.islice(datamodule.train_dataloader(), batches):
        pass
    return (time.perf_counter() - start) / batches


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=150)
    args = parser.parse_args(argv)
    started_on = commit()
    import torch

    from anomalib_vadproto import LocalUCSDped
    from anomalib_vadproto.data import datamodules

    root = ensure_ped2()
    common = {"root": root, "category": "UCSDped2", "clip_length_in_frames": 5, "frames_between_clips": 1,
              "train_batch_size": 4, "seed": 0}  # fmt: skip
    results = {}
    for name, kwargs in VARIANTS.items():
        torch.manual_seed(0)
        datamodule = LocalUCSDped(**common, **kwargs)
        fill = datamodules.fill_caches_for_workers
        if name.endswith("_unshared"):
            datamodules.fill_caches_for_workers = lambda _: None
        start = time.perf_counter()
        try:
            datamodule.setup()
        finally:
            datamodules.fill_caches_for_workers = fill
        setup = time.perf_counter() - start
        first = seconds_per_batch(datamodule, args.batches)
        second = seconds_per_batch(datamodule, args.batches)
        results[name] = {
            "setup_seconds": round(setup, 1),
            "first_pass": round(first, 4),
            "second_pass": round(second, 4),
        }
        print(f"{name}: setup {setup:.1f} s, {1e3 * first:.0f} ms per batch (1st pass), {1e3 * second:.0f} ms (2nd)")
    result = {
        "kind": "speed",
        "model": "data",
        "profile": "ped2_train_clips",
        "batches": args.batches,
        "batch": "4 clips x 5 frames, 240x360 RGB float",
        "seconds_per_batch": results,
    }
    run_settings = {
        "data": {"class": LocalUCSDped.__name__, **{k: v for k, v in common.items() if k != "root"}},
        "variants": VARIANTS,
    }
    path = record(
        "speed_data_loading_ped2", result, module=__spec__.name, argv=argv, settings=run_settings, started_on=started_on
    )
    print(path)
    return path


if __name__ == "__main__":
    main()
