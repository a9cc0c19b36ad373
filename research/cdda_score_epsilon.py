"""How small CDDA's score product is on UCSD Ped2, and what the ``ε`` of ``1 / (p + ε)`` does to eq. 15.

CDDA scores a clip by ``s = 1 / (D_m · D_a · E_rec)`` (eq. 14) and min-max normalises ``s`` per test video
(eq. 15). The paper has no ``ε``; an implementation adds one against division by zero. Per-video min-max
of ``1 / p`` does not depend on the scale of ``p``, but ``1 / (p + ε)`` does once ``ε`` is not far below
``p``: it caps the most normal frames' ``s`` and so changes every other frame's normalised score.

This evaluates trained checkpoints of ``ped2_accuracy.py`` on Ped2's test set once, keeps every frame's
``p`` (both score forms: the paper's product and the STD code's pixel-wise product) and reports

- the distribution of ``p`` (quantiles over all scored frames, and each video's smallest ``p``);
- the protocol micro and macro AUC of each form for each ``--eps`` (``0`` is eq. 14 exactly).

Test data are only evaluated: nothing is trained or chosen here.

    python -m benchmarks.ped2_accuracy --model cdda --profile lite   # and --seed 43 --tag seed43, ...
    python -m research.cdda_score_epsilon                            # the newest cdda lite checkpoint
    python -m research.cdda_score_epsilon --checkpoints A.ckpt B.ckpt C.ckpt --eps 0 1e-30 1e-12
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

logger = logging.getLogger("cdda_score_epsilon")

DEFAULT_EPS = (0.0, 1e-30, 1e-12)  # eq. 14 exactly, the current default, the default before 2e0297a
QUANTILES = (0.0, 0.01, 0.5, 0.99, 1.0)


def collect(module, datamodule) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Every scored frame's video, label and ``p`` of both score forms (float64)."""
    import torch

    net = module.model
    if not net.alternating:
        msg = "the checkpoint was saved before the centres existed; use a fully trained checkpoint."
        raise SystemExit(msg)
    saved_eps, net.eps = net.eps, 0.0  # regularity = 1 / p exactly
    saved_diagnostics, net.diagnostic_cues = net.diagnostic_cues, True  # the other form's regularity is one
    videos: list[str] = []
    labels: list[int] = []
    forms: dict[str, list[float]] = {net.score_form: [], net.other_score_form: []}
    try:
        with torch.no_grad():
            for batch in datamodule.test_dataloader():
                _, cues = net.score(module.pre_processor(batch.image))
                forms[net.score_form].extend((1.0 / cues["regularity"].double()).tolist())
                forms[net.other_score_form].extend((1.0 / cues[net.variant_cue].double()).tolist())
                videos.extend(Path(path).name for path in batch.video_path)
                labels.extend(int(label) for label in batch.gt_label)
    finally:
        net.eps, net.diagnostic_cues = saved_eps, saved_diagnostics
    names, video_index = np.unique(np.array(videos), return_inverse=True)  # names sorted
    return {
        "video_index": video_index,
        "video_names": names,
        "labels": np.array(labels),
        **{form: np.array(values, dtype=np.float64) for form, values in forms.items()},
    }


def protocol_with_eps(p: np.ndarray, labels: np.ndarray, video_index: np.ndarray, eps: float) -> tuple[float, float]:
    """Protocol micro and macro AUC (percent) of ``1 − minmax_per_video(1 / (p + ε))``, eqs. 14-15."""
    from anomalib_vadproto.metrics.protocol import minmax_per_video, protocol_auc

    regularity = 1.0 / (p + eps)
    micro, macro = protocol_auc(labels, 1.0 - minmax_per_video(regularity, video_index), video_index)
    return round(100 * micro, 2), round(100 * macro, 2)


def summarise(data: dict[str, np.ndarray], eps_values: list[float]) -> dict[str, Any]:
    """The ``p`` quantiles, each video's smallest ``p`` and the AUC for every ``ε``, per score form."""
    out: dict[str, Any] = {}
    for form in ("product", "pixelwise"):
        p = data[form]
        if not np.isfinite(p).all() or (p <= 0).any():
            msg = f"{form}: {int((~np.isfinite(p) | (p <= 0)).sum())} frames have a non-positive or non-finite p."
            raise SystemExit(msg)
        smallest = {
            str(name): float(f"{p[data['video_index'] == i].min():.4g}") for i, name in enumerate(data["video_names"])
        }
        aucs = {f"{eps:g}": protocol_with_eps(p, data["labels"], data["video_index"], eps) for eps in eps_values}
        out[form] = {
            "p_quantiles": {f"q{round(100 * q)}": float(f"{np.quantile(p, q):.4g}") for q in QUANTILES},
            "smallest_p_per_video": smallest,
            "protocol_auc": {eps: {"micro": micro, "macro": macro} for eps, (micro, macro) in aucs.items()},
        }
        logger.info("%s: %s", form, out[form]["protocol_auc"])
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=None, help="CDDA checkpoints (default: newest)")
    parser.add_argument("--profile", default="lite", help="the profile whose config and checkpoints to use")
    parser.add_argument("--eps", type=float, nargs="+", default=list(DEFAULT_EPS), help="the ε values to compare")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "runs", help="where the checkpoints are")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if any(eps < 0 for eps in args.eps):
        parser.error("--eps values must be >= 0")
    started_on = commit()
    checkpoints = checkpoints_or_latest(args.checkpoints, "cdda", args.profile, args.work_dir)
    root = ensure_ped2()
    runs = []
    checkpoint_args = {}  # each checkpoint's model init args
    for checkpoint in checkpoints:
        module = load_model("cdda", args.profile, checkpoint)
        checkpoint_args[shown_path(checkpoint)] = init_args_of(module)
        datamodule = ped2_datamodule(module, root, train_batch=4, eval_batch=8)
        start = time.perf_counter()
        data = collect(module, datamodule)
        runs.append({
            "checkpoint": shown_path(checkpoint),
            "seed": module.hparams.get("seed"),
            "score_form": module.model.score_form,
            "scored_frames": len(data["labels"]),
            "seconds": round(time.perf_counter() - start, 1),
            **summarise(data, args.eps),
        })  # fmt: skip
    result = {
        "kind": "cdda_score_epsilon",
        "model": "cdda",
        "profile": args.profile,
        "eps": args.eps,
        "runs": runs,
    }
    run_settings = {
        "models": {"cdda": {**model_settings("cdda", args.profile), "checkpoints": checkpoint_args}},
        "eps": args.eps,
        "eval_batch_size": 8,
    }
    return record(
        f"cdda_score_epsilon_{args.profile}",
        result,
        module=__spec__.name,
        argv=argv,
        settings=run_settings,
        started_on=started_on,
    )


if __name__ == "__main__":
    main()
