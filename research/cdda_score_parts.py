"""Where CDDA's lite score loses AUC on UCSD Ped2: normalisation, cluster distances, spatial residual.

CDDA scores a frame by ``s = 1 / p`` with ``p = D_m · D_a · E_rec`` (eq. 14) and min-max normalises
``s`` per test video (eq. 15). ``E_rec = mean_i (x_i − x̄_diff,i − x̄_a)²``: the true last frame cancels, so
``E_rec`` measures how far the motion autoencoder's implied frames are from the spatial autoencoder's
reconstruction ``x̄_a``; the spatial autoencoder's residual ``x_a − x̄_a`` enters it everywhere. This
evaluates trained checkpoints on Ped2's test set once (nothing is trained or chosen here) and reports the
protocol AUC (micro and macro) of these quantities, each anomalous when high, in two transforms:

* ``reciprocal``: ``1 − minmax_per_video(1 / q)``, the score's own transform (eqs. 14-15);
* ``direct``: ``minmax_per_video(q)``, the transform a single cue gets in the other models.

Quantities: ``score`` (``p``), ``reconstruction`` (``E_rec``), ``distances`` (``D_m · D_a``),
``score_true_last_frame`` (``p`` with ``x̄_a`` replaced by the true ``x_a``: ``D_m · D_a ·
mean (x_diff − x̄_diff)²``), ``motion_error``, ``appearance_error`` and each distance. The gap then splits
into (micro AUC points):

* ``normalisation``: ``score.direct − score.reciprocal`` (what min-max of a reciprocal costs);
* ``cluster_distances``: ``score.reciprocal − reconstruction.reciprocal`` (what multiplying by ``D_m · D_a`` adds);
* ``spatial_residual``: ``score_true_last_frame.reciprocal − score.reciprocal`` (what the spatial
  autoencoder's residual costs).

A diagnostic only: no setting is chosen from it (test data).

    python -m research.cdda_score_parts                       # the newest cdda lite checkpoint
    python -m research.cdda_score_parts --checkpoints A.ckpt B.ckpt
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO, commit, ensure_ped2, init_args_of, model_settings, record, shown_path
from benchmarks.speed import checkpoints_or_latest, load_model, ped2_datamodule

logger = logging.getLogger("cdda_score_parts")

#: Per-frame values :func:`collect` keeps (the score's cues with CDDA's diagnostic cues on).
COLLECTED = ("reconstruction", "motion_distance", "appearance_distance", "motion_error", "appearance_error")


def collect(module, datamodule) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Every scored test frame's video, label, ``p`` and the parts of ``p`` (float64)."""
    import torch

    net = module.model
    if not net.alternating:
        raise SystemExit("the checkpoint was saved before the centres existed; use a fully trained checkpoint.")
    if net.score_form != "product" or "joint" in net.clusters:
        raise SystemExit("this diagnostic reads the paper's product score with separate clusterings.")
    saved = net.eps, net.diagnostic_cues
    net.eps, net.diagnostic_cues = 0.0, True  # regularity = 1 / p exactly; the parts as cues
    values: dict[str, list[float]] = {name: [] for name in ("p", *COLLECTED)}
    videos: list[str] = []
    labels: list[int] = []
    try:
        with torch.no_grad():
            for batch in datamodule.test_dataloader():
                _, cues = net.score(module.pre_processor(batch.image))
                values["p"].extend((1.0 / cues["regularity"].double()).tolist())
                for name in COLLECTED:
                    values[name].extend(cues[name].double().tolist())
                videos.extend(Path(path).name for path in batch.video_path)
                labels.extend(int(label) for label in batch.gt_label)
    finally:
        net.eps, net.diagnostic_cues = saved
    names, video_index = np.unique(np.array(videos), return_inverse=True)
    return {
        "video_index": video_index,
        "video_names": names,
        "labels": np.array(labels),
        **{name: np.array(column, dtype=np.float64) for name, column in values.items()},
    }


def quantities(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The quantities compared, each anomalous when high."""
    distances = data["motion_distance"] * data["appearance_distance"]
    return {
        "score": data["p"],
        "reconstruction": data["reconstruction"],
        "distances": distances,
        "score_true_last_frame": distances * data["motion_error"],
        "motion_error": data["motion_error"],
        "appearance_error": data["appearance_error"],
        "motion_distance": data["motion_distance"],
        "appearance_distance": data["appearance_distance"],
    }


def summarise(data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Protocol AUCs (percent) of every quantity in both transforms, and the split of the gap."""
    from anomalib_vadproto.metrics.functional import minmax_per_video, protocol_auc

    labels, video_index = data["labels"], data["video_index"]

    def auc(scores: np.ndarray) -> dict[str, float]:
        micro, macro = protocol_auc(labels, scores, video_index)
        return {"micro": round(100 * micro, 2), "macro": round(100 * macro, 2)}

    aucs = {}
    for name, q in quantities(data).items():
        if not np.isfinite(q).all() or (q <= 0).any():
            raise SystemExit(f"{name}: {int((~np.isfinite(q) | (q <= 0)).sum())} frames are not positive and finite.")
        aucs[name] = {
            "reciprocal": auc(1.0 - minmax_per_video(1.0 / q, video_index)),
            "direct": auc(minmax_per_video(q, video_index)),
        }
    micro = {name: {form: value["micro"] for form, value in forms.items()} for name, forms in aucs.items()}
    split = {
        "normalisation": round(micro["score"]["direct"] - micro["score"]["reciprocal"], 2),
        "cluster_distances": round(micro["score"]["reciprocal"] - micro["reconstruction"]["reciprocal"], 2),
        "spatial_residual": round(micro["score_true_last_frame"]["reciprocal"] - micro["score"]["reciprocal"], 2),
    }
    return {"protocol_auc": aucs, "micro_auc_split": split}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=None, help="CDDA checkpoints (default: newest)")
    parser.add_argument("--profile", default="lite", help="the profile whose config and checkpoints to use")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "runs")
    parser.add_argument("--data-root", type=Path, default=None, help="anomalib UCSDped root (default: materialise)")
    parser.add_argument("--eval-batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started_on = commit()
    root = args.data_root or ensure_ped2()
    checkpoints = checkpoints_or_latest(args.checkpoints, "cdda", args.profile, args.work_dir)
    runs, built_with = [], {}
    for checkpoint in checkpoints:
        module = load_model("cdda", args.profile, checkpoint)
        module.eval()
        datamodule = ped2_datamodule(module, root, 4, args.eval_batch_size)
        datamodule.setup("test")
        t0 = time.perf_counter()
        summary = summarise(collect(module, datamodule))
        logger.info("%s: %s", checkpoint.name, summary["micro_auc_split"])
        runs.append({"checkpoint": shown_path(checkpoint), **summary, "seconds": round(time.perf_counter() - t0, 1)})
        built_with[shown_path(checkpoint)] = init_args_of(module)
    settings = {"models": {"cdda": {**model_settings("cdda", args.profile), "checkpoints": built_with}}}
    result = {"kind": "cdda_score_parts", "model": "cdda", "profile": args.profile, "runs": runs}
    path = record(
        f"cdda_score_parts_{args.profile}", result, module="research.cdda_score_parts", argv=argv,
        settings=settings, started_on=started_on,
    )  # fmt: skip
    logger.info("-> %s", path)
    return path


if __name__ == "__main__":
    main()
