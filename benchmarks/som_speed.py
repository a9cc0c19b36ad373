"""Cost of DLAN-AC's Adaptive Clusterer per feature map: the host NumPy loop and, with CUDA, the Triton kernel.

A map is ``k = 5000`` SOM steps over ``L = 25`` neurons (5x5) plus the read-out of its winners (``z``), at the
paper size (``C = 512``, a 32x32 map of ``N = 1024`` vectors: 256x256 frames, the encoder downsamples by 8) and
the lite size (``C = 128``, 16x16 = 256 vectors), for the Gaussian neighbourhood (the default) and the paper's
truncated one (winner-only at ``δ = 0.5``). Features are unit-norm vectors around 16 random centres; the cost
does not depend on their values. Wall and process CPU time are both recorded (a busy machine inflates the wall
time), with the load average.

* ``host``: ``backend="host"`` on CPU tensors (NumPy loop), one map per call, after one warm-up map.
* ``triton`` (CUDA only): ``backend="auto"`` on CUDA tensors, ``--batch`` maps per launch as in training; the first
  launch (compilation) is timed apart. The kernel's weights and ``z`` are compared with the host loop's on the same
  maps (``max_weight_difference``, ``same_z``).

Also estimates the SOM time of the paper profile's AC stage on Ped2 (24,860 maps: 2486 per epoch x 10 epochs).

    python -m benchmarks.som_speed
    python -m benchmarks.som_speed --sizes paper --maps 16 --batch 8 --num-warps 8,16   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmarks.common import commit, record

SIZES = {"paper": (512, 32), "lite": (128, 16)}  # feature dim C, map side (N = side²)
PED2_PAPER_MAPS = 2486 * 10


def feature_maps(num_maps: int, dim: int, side: int, seed: int = 0):  # noqa: ANN201
    """``(B, C, side, side)`` unit-norm feature maps around 16 random centres."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(16, dim, generator=g), dim=1)
    labels = torch.randint(0, 16, (num_maps, side * side), generator=g)
    noise = 0.5 / dim**0.5 * torch.randn(num_maps, side * side, dim, generator=g)  # norm ≈ 0.5 around each centre
    vectors = F.normalize(centres[labels] + noise, dim=2)
    return vectors.transpose(1, 2).reshape(num_maps, dim, side, side)


def time_host(neighbourhood: str, maps, iterations: int) -> tuple[float, float, object]:  # noqa: ANN001
    from anomalib_vadproto.models.dlan_ac import AdaptiveClusterer

    som = AdaptiveClusterer(
        feature_dim=maps.shape[1], num_iterations=iterations, neighbourhood=neighbourhood, backend="host"
    )
    som.fit_batch(maps[:1])  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    som.fit_batch(maps[1:])
    timed = len(maps) - 1
    return (time.perf_counter() - start) / timed, (time.process_time() - cpu) / timed, som


def time_triton(neighbourhood: str, maps, iterations: int, batch: int, num_warps: int | None) -> dict:  # noqa: ANN001
    import torch

    from anomalib_vadproto.models.dlan_ac import AdaptiveClusterer

    options = {"feature_dim": maps.shape[1], "num_iterations": iterations, "neighbourhood": neighbourhood}
    som = AdaptiveClusterer(**options).cuda()
    som.triton_num_warps = num_warps
    if not som.uses_triton():
        return {"skipped": "triton is not importable"}
    device_maps = maps.cuda()
    start = time.perf_counter()
    som.fit_batch(device_maps[:1])  # compiles the kernel
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    timed = device_maps[1:]
    start = time.perf_counter()
    for chunk in timed.split(batch):
        som.fit_batch(chunk)
    torch.cuda.synchronize()
    per_map = (time.perf_counter() - start) / len(timed)
    # Agreement with the host loop on the same maps from the same initial weights.
    host = AdaptiveClusterer(**options, backend="host")
    gpu = AdaptiveClusterer(**options).cuda()
    gpu.triton_num_warps = num_warps
    check = maps[: min(batch, len(maps))]
    host_z = host.fit_batch(check)
    gpu_z = gpu.fit_batch(check.cuda())
    return {
        "first_launch_seconds": round(first, 3),
        "ms_per_map": round(1e3 * per_map, 2),
        "maps_per_launch": batch,
        "num_warps": num_warps or "default",
        "max_weight_difference": float((gpu.weights.cpu() - host.weights).abs().max()),
        "same_z": host_z == gpu_z,
        "checked_maps": len(check),
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", default="paper,lite", help="comma-separated: paper (512 x 32x32), lite (128 x 16x16)"
    )
    parser.add_argument("--maps", type=int, default=4, help="maps timed per setting (after one warm-up map)")
    parser.add_argument("--iterations", type=int, default=5000, help="SOM steps k per map (paper: 5000)")
    parser.add_argument("--batch", type=int, default=8, help="maps per kernel launch on CUDA (paper batch: 8)")
    parser.add_argument(
        "--num-warps", default="", help="CUDA: comma-separated warp counts to time (default: heuristic)"
    )
    args = parser.parse_args(argv)
    started_on = commit()
    import torch

    has_cuda = torch.cuda.is_available()
    warp_counts = [int(w) for w in args.num_warps.split(",") if w.strip()] or [None]
    results = {}
    sizes = [name.strip() for name in args.sizes.split(",") if name.strip()]
    for size in sizes:
        dim, side = SIZES[size]
        maps = feature_maps(args.maps + 1, dim, side)
        for neighbourhood in ("gaussian", "truncated"):
            seconds, cpu_seconds, som = time_host(neighbourhood, maps, args.iterations)
            entry = {
                "feature_dim": dim,
                "vectors_per_map": side * side,
                "host_ms_per_map": round(1e3 * seconds, 1),
                "host_cpu_ms_per_map": round(1e3 * cpu_seconds, 1),
                "host_mean_z": round(som.mean_z, 2),
            }
            if size == "paper":
                entry["host_ped2_paper_ac_minutes"] = round(seconds * PED2_PAPER_MAPS / 60, 1)
            print(
                f"{size} {neighbourhood}: host {1e3 * seconds:.1f} ms per map wall, {1e3 * cpu_seconds:.1f} ms CPU "
                f"(mean z {som.mean_z:.2f})"
            )
            for warps in warp_counts if has_cuda else ():
                key = "triton" if warps is None else f"triton_{warps}_warps"
                entry[key] = time_triton(neighbourhood, maps, args.iterations, args.batch, warps)
                if "ms_per_map" in entry[key] and size == "paper":
                    entry[key]["ped2_paper_ac_minutes"] = round(entry[key]["ms_per_map"] * PED2_PAPER_MAPS / 6e4, 1)
                print(f"{size} {neighbourhood}: {key} {entry[key]}")
            results[f"{size}_{neighbourhood}"] = entry
    result = {
        "kind": "speed",
        "model": "dlan_ac",
        "profile": "som",
        "som_iterations": args.iterations,
        "num_neurons": 25,
        "maps_timed": args.maps,
        "cuda": torch.cuda.get_device_name(0) if has_cuda else None,
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine inflates wall times
        "ms_per_map": results,
        "note": "host: NumPy loop + read-out of z per map; triton: one launch per batch of maps, then the read-out",
    }
    run_settings = {
        "som": {"num_iterations": args.iterations, "num_neurons": 25, "neighbourhoods": ["gaussian", "truncated"]},
        "sizes": {size: SIZES[size] for size in sizes},
        "maps_per_launch": args.batch,
        "num_warps": warp_counts,
    }
    path = record("speed_som", result, module=__spec__.name, argv=argv, settings=run_settings, started_on=started_on)
    print(path)
    return path


if __name__ == "__main__":
    main()
