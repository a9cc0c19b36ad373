"""Where CDDA's two autoencoders put their error on UCSD Ped2's test frames, against the ground-truth masks.

The lite profile's spatial (appearance) AE error is a weak frame-level cue (micro AUC 77-81) while the
motion AE's error is a strong one (about 95). This measures why, pixel by pixel, on trained checkpoints
of ``ped2_accuracy.py``: for each error map, the per-pixel squared error of the three kinds of pixel

- ``anomaly``: inside the ground-truth anomaly mask of an anomalous frame (the cyclists, carts, skaters);
- ``anomaly_moving``: the ``anomaly`` pixels that are also moving (below), to compare like with like;
- ``moving``: pixels of *normal* frames whose grey level changed by more than ``--moving-threshold`` from
  the previous frame: a proxy for the walking pedestrians, the normal objects the AE must reconstruct
  (mostly their outlines and limbs, where a frame difference is large);
- ``static``: the other pixels of normal frames (background);

and their ratios (``anomaly / moving`` and ``anomaly_moving / moving``: how much worse the AE
reconstructs an anomalous object than a normal moving one). Also per map: the pixel-level AUROC inside
the anomalous frames (anomaly pixels against the rest of the same frames), the share of an anomalous
frame's summed error that lies inside its mask, and how strongly a normal frame's error follows its
number of moving pixels (the crowd).

The maps are ``(x_a − x̄_a)²`` (the spatial AE), ``mean over the 4 frames of (x_diff − x̄_diff)²`` (the
motion AE) and the score's ``E_rec`` map ``mean (x_clips − x̄_a − x̄_diff)²``, all at the model's input
size on ``[0, 1]``; masks are resized by area and kept where at least half a pixel is anomalous. A
figure shows one anomalous frame of each of ``--figure-videos`` with its maps. Test data are only
evaluated: nothing is trained or chosen here.

    python -m benchmarks.ped2_accuracy --model cdda --profile lite   # and --seed 43 --tag seed43, ...
    python -m research.cdda_error_localisation                       # the newest cdda lite checkpoint
    python -m research.cdda_error_localisation --checkpoints A.ckpt B.ckpt C.ckpt
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS, commit, ensure_ped2, init_args_of, model_settings, record, shown_path
from benchmarks.speed import checkpoints_or_latest, load_model, ped2_datamodule

logger = logging.getLogger("cdda_error_localisation")

MAPS = ("appearance", "motion", "reconstruction")
REGIONS = ("anomaly", "anomaly_moving", "moving", "static")
AUROC_PIXELS = 2_000_000  # random pixels of the anomalous frames per map for the pixel AUROC
# videos shown in the figure, one row each: the middle one of the video's anomalous frames
DEFAULT_FIGURE_VIDEOS = ("Test001", "Test006", "Test012")


def error_maps(net, clip) -> dict[str, Any]:  # noqa: ANN001
    """The three ``(B, H, W)`` error maps of one pre-processed clip batch, and the last two input frames."""
    out = net._forward(clip)  # noqa: SLF001 (the residuals, not the score)
    motion, appearance = out.residuals
    return {
        "appearance": appearance.square().mean(dim=1),
        "motion": motion.square().mean(dim=(1, 2)),
        "reconstruction": out.reconstruction_error_map()[:, 0],
        "frame": out.last_frame.mean(dim=1),
        "previous": (out.difference_targets[:, -1] + out.last_frame).mean(dim=1),
    }


def region_masks(maps: dict[str, Any], gt_mask, labels, threshold: float) -> dict[str, Any]:  # noqa: ANN001
    """Boolean ``(B, H, W)`` masks of the anomaly, moving and static pixels (see the module docstring)."""
    import torch.nn.functional as F

    size = maps["frame"].shape[-2:]
    anomalous = labels.bool().reshape(-1, 1, 1)
    area = F.interpolate(gt_mask.float().unsqueeze(1), size=size, mode="area")[:, 0]
    moving = (maps["frame"] - maps["previous"]).abs() > threshold
    normal = ~anomalous.expand_as(moving)
    return {
        "anomaly": (area >= 0.5) & anomalous,
        "anomaly_moving": (area >= 0.5) & anomalous & moving,
        "moving": moving & normal,
        "static": ~moving & normal,
    }


def pixel_auroc(positive, negative, limit: int, generator) -> float:  # noqa: ANN001
    """AUROC of the error on a random subset (at most ``limit`` pixels) of the anomalous frames' pixels."""
    import torch
    from sklearn.metrics import roc_auc_score

    values = torch.cat((positive, negative))
    labels = torch.cat((torch.ones_like(positive), torch.zeros_like(negative)))
    if len(values) > limit:
        keep = torch.randperm(len(values), generator=generator)[:limit]
        values, labels = values[keep], labels[keep]
    return round(100.0 * float(roc_auc_score(labels.numpy(), values.numpy())), 2)


def evaluate(module, datamodule, threshold: float, figure_videos: tuple[str, ...]) -> tuple[dict, list]:  # noqa: ANN001
    """Region statistics of every map over the test set, and the frames kept for the figure."""
    import torch

    net = module.model
    sums = {name: dict.fromkeys(REGIONS, 0.0) for name in MAPS}
    counts = dict.fromkeys(REGIONS, 0)
    positives: dict[str, list] = {name: [] for name in MAPS}
    negatives: dict[str, list] = {name: [] for name in MAPS}
    shares: dict[str, list] = {name: [] for name in MAPS}
    candidates: dict[str, list] = {video: [] for video in figure_videos}
    mask_fraction: list[float] = []
    normal_frames: list[tuple] = []  # (video, moving pixels, frame-mean error of each map)
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            maps = error_maps(net, module.pre_processor(batch.image))
            regions = region_masks(maps, batch.gt_mask, batch.gt_label, threshold)
            for name in REGIONS:
                counts[name] += int(regions[name].sum())
            anomalous_rows = batch.gt_label.bool()
            for name in MAPS:
                value = maps[name]
                for region in REGIONS:
                    sums[name][region] += float(value[regions[region]].sum())
                if anomalous_rows.any():
                    inside = regions["anomaly"][anomalous_rows]
                    frame_values = value[anomalous_rows]
                    positives[name].append(frame_values[inside])
                    negatives[name].append(frame_values[~inside])
                    total = frame_values.flatten(1).sum(dim=1)
                    shares[name].extend((frame_values * inside).flatten(1).sum(dim=1).div(total).tolist())
            mask_fraction.extend(regions["anomaly"][anomalous_rows].float().flatten(1).mean(dim=1).tolist())
            frame_means = {name: maps[name].flatten(1).mean(dim=1) for name in MAPS}
            for row, path in enumerate(batch.video_path):
                video = Path(path).name
                if not bool(batch.gt_label[row]):
                    moving = int(regions["moving"][row].sum())
                    normal_frames.append((video, moving, *(float(frame_means[name][row]) for name in MAPS)))
                if video in candidates and bool(batch.gt_label[row]):
                    candidates[video].append({
                        "index": int(batch.frames[row]),  # the target (last) frame of the clip
                        **{key: maps[key][row].clone() for key in (*MAPS, "frame")},
                        "mask": regions["anomaly"][row].clone(),
                    })  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    stats: dict[str, Any] = {"pixels": counts, "mean_mask_fraction_of_anomalous_frames": _mean(mask_fraction)}
    for name in MAPS:
        mean = {region: sums[name][region] / max(counts[region], 1) for region in REGIONS}
        pos, neg = torch.cat(positives[name]), torch.cat(negatives[name])
        stats[name] = {
            "mean_error": {region: float(f"{value:.4g}") for region, value in mean.items()},
            "anomaly_over_moving": round(mean["anomaly"] / mean["moving"], 3),
            "anomaly_moving_over_moving": round(mean["anomaly_moving"] / mean["moving"], 3),
            "anomaly_over_static": round(mean["anomaly"] / mean["static"], 3),
            "moving_over_static": round(mean["moving"] / mean["static"], 3),
            "pixel_auroc_anomalous_frames": pixel_auroc(pos, neg, AUROC_PIXELS, generator),
            "mask_share_of_frame_error": _mean(shares[name]),
            "normal_frames_correlation_with_moving_pixels": crowd_correlation(normal_frames, MAPS.index(name)),
        }
        logger.info("%s: %s", name, stats[name])
    shown = []
    for video, frames in candidates.items():
        if frames:
            shown.append({"video": video, **frames[len(frames) // 2]})
    return stats, shown


def crowd_correlation(frames: list[tuple], index: int) -> float:
    """Mean over videos of the Pearson correlation, on normal frames, of a map's frame error and the moving pixels.

    Positive when the frame-level error grows with the number of walking pedestrians, a confound that the
    per-video min-max normalisation does not remove. Videos with fewer than 10 normal frames are skipped.
    """
    import numpy as np

    correlations = []
    for video in sorted({frame[0] for frame in frames}):
        rows = np.array([frame[1:] for frame in frames if frame[0] == video], dtype=float)
        if len(rows) >= 10 and rows[:, 0].std() > 0 and rows[:, 1 + index].std() > 0:
            correlations.append(float(np.corrcoef(rows[:, 0], rows[:, 1 + index])[0, 1]))
    return round(float(np.mean(correlations)), 3) if correlations else float("nan")


def _mean(values: list[float]) -> float:
    return round(sum(values) / max(len(values), 1), 4)


def plot(shown: list[dict], title: str, path: Path) -> None:
    """One row per frame: the frame with its mask outlined, then each map on a shared colour scale per row.

    The scale of a row runs from 0 to the 99.9th percentile of its three maps' pixels, so that a few
    saturated pixels do not hide the rest.
    """
    import matplotlib as mpl
    import torch

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(shown), 1 + len(MAPS), figsize=(3.0 * (1 + len(MAPS)), 3.2 * len(shown)))
    axes = axes.reshape(len(shown), -1)
    for row, item in zip(axes, shown, strict=True):
        row[0].imshow(item["frame"].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        row[0].contour(item["mask"].numpy().astype(float), levels=[0.5], colors="red", linewidths=0.8)
        row[0].set_title(f"{item['video']} frame {item['index']}\n(anomaly mask in red)", fontsize="small")
        top = float(torch.quantile(torch.stack([item[name] for name in MAPS]), 0.999))
        for ax, name in zip(row[1:], MAPS, strict=True):
            value = item[name]
            inside = float(value[item["mask"]].mean()) if item["mask"].any() else float("nan")
            ax.imshow(value.numpy(), cmap="inferno", vmin=0.0, vmax=max(top, 1e-12))
            ax.contour(item["mask"].numpy().astype(float), levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_title(f"{name} error\nmean {float(value.mean()):.2g}, in mask {inside:.2g}", fontsize="small")
        for ax in row:
            ax.set_axis_off()
    figure.suptitle(f"{title}; colour scale per row: 0 to the 99.9th percentile", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=None, help="CDDA checkpoints (default: newest)")
    parser.add_argument("--profile", default="lite", help="the profile whose config and checkpoints to use")
    parser.add_argument("--moving-threshold", type=float, default=0.05, help="grey-level change of a moving pixel")
    parser.add_argument("--figure-videos", default=",".join(DEFAULT_FIGURE_VIDEOS), help="videos in the figure")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "runs", help="where the checkpoints are")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started_on = commit()
    checkpoints = checkpoints_or_latest(args.checkpoints, "cdda", args.profile, args.work_dir)
    root = ensure_ped2()
    videos = tuple(name for name in args.figure_videos.split(",") if name)
    runs = []
    checkpoint_args = {}  # each checkpoint's model init args
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for index, checkpoint in enumerate(checkpoints):
        module = load_model("cdda", args.profile, checkpoint)
        checkpoint_args[shown_path(checkpoint)] = init_args_of(module)
        if not module.model.alternating:
            raise SystemExit(f"{checkpoint} was saved before the centres existed; use a fully trained checkpoint.")
        datamodule = ped2_datamodule(module, root, train_batch=4, eval_batch=8)
        start = time.perf_counter()
        stats, shown = evaluate(module, datamodule, args.moving_threshold, videos)
        seed = module.hparams.get("seed")
        size, width = "x".join(str(side) for side in module.image_size), module.hparams.get("width")
        figure = RESULTS / f"cdda_error_maps_{args.profile}_seed{seed}_{stamp}_{index}.png" if shown else None
        if figure is not None:
            plot(shown, f"CDDA {args.profile} ({size}, width {width}), seed {seed}: squared error on [0, 1]", figure)
        runs.append({
            "checkpoint": shown_path(checkpoint),
            "seed": seed,
            "image_size": list(module.image_size),
            "width": width,
            "seconds": round(time.perf_counter() - start, 1),
            **stats,
            "figure": None if figure is None else str(figure.relative_to(REPO)),
        })  # fmt: skip
    result = {
        "kind": "cdda_error_localisation",
        "model": "cdda",
        "profile": args.profile,
        "moving_threshold": args.moving_threshold,
        "runs": runs,
    }
    run_settings = {
        "models": {"cdda": {**model_settings("cdda", args.profile), "checkpoints": checkpoint_args}},
        "moving_threshold": args.moving_threshold,
        "figure_videos": list(videos),
        "eval_batch_size": 8,
    }
    return record(
        f"cdda_error_localisation_{args.profile}",
        result,
        module=__spec__.name,
        argv=argv,
        settings=run_settings,
        started_on=started_on,
    )


if __name__ == "__main__":
    main()
