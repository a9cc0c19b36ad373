"""How many layers next to the outputs INT8 post-training quantisation must keep in FP32, per model.

For each ``int8_fp32_depth`` (the quantisable layers nearest to the outputs, on every path, that stay in
FP32; ``anomalib_vadproto.components.export.output_layers``) the model's lite-run weights are exported
with ``INT8_PTQ`` (calibrated on 300 training clips) and measured three ways:

* **agreement with FP32 on training clips** (no labels, no test data): the Spearman rank correlation
  of every weighted cue (zero-weight diagnostic cues are skipped) between the INT8 and the FP32
  export over evenly spaced Ped2 training clips, and the smallest of them; this is what picks a
  model's depth;
* the **protocol micro AUC change** on the Ped2 test set against PyTorch's read-only scores;
* INT8 **clips per second** at batch 1 (raw 240x360 frames, as ``speed.py``).

    python -m research.int8_scope --model apn --depths 0,1,2,4,8
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, commit, ensure_ped2, init_args_of, model_settings, record
from benchmarks.speed import (
    MODELS,
    PED2_SIZE,
    export_auc,
    latest_checkpoint,
    load_model,
    median_seconds,
    ped2_datamodule,
)

logger = logging.getLogger("int8_scope")
AGREEMENT = 0.99  # the smallest depth whose every cue ranks training clips like FP32 to this Spearman rho


def spearman(a: Any, b: Any) -> float:  # noqa: ANN401
    """Spearman rank correlation of two 1-D arrays (ties broken by order; cues are continuous)."""
    import numpy as np

    ranks_a = np.argsort(np.argsort(a)).astype(np.float64)
    ranks_b = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def training_cues(irs: dict[str, Path], datamodule, clips: int) -> dict[str, dict[str, Any]]:  # noqa: ANN001
    """Every export's raw cues on ``clips`` evenly spaced training clips: ``{export: {cue: array}}``."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Subset

    from anomalib_vadproto.deploy import OpenVINOClipModel

    dataset = datamodule.train_data
    indices = np.linspace(0, len(dataset) - 1, num=min(clips, len(dataset))).round().astype(int).tolist()
    loader = DataLoader(Subset(dataset, indices), batch_size=8, shuffle=False, collate_fn=dataset.collate_fn)
    models = {name: OpenVINOClipModel(path) for name, path in irs.items()}
    cues: dict[str, dict[str, list]] = {name: {} for name in irs}
    with torch.inference_mode():
        for batch in loader:
            array = batch.image.numpy()
            for name, model in models.items():
                for key, value in model(array).items():
                    if key.startswith("cue_"):
                        cues[name].setdefault(key.removeprefix("cue_"), []).append(np.asarray(value, dtype=np.float64))
    return {name: {k: np.concatenate(v) for k, v in by_cue.items()} for name, by_cue in cues.items()}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--profile", default="lite", choices=["lite", "paper"])
    parser.add_argument("--depths", default="0,1,2,4,8", help="comma-separated int8_fp32_depth values")
    parser.add_argument("--train-clips", type=int, default=400, help="training clips for the agreement")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing time per export")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 test batches, 16 training clips")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "runs", help="where the checkpoints are")
    args = parser.parse_args(argv)
    started_on = commit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch
    from anomalib.deploy import CompressionType

    from anomalib_vadproto.components.export import output_layers
    from anomalib_vadproto.deploy import OpenVINOClipModel, openvino_core

    depths = [int(d) for d in args.depths.split(",")]
    checkpoint = latest_checkpoint(args.model, args.profile, args.work_dir)
    if checkpoint is None:
        raise SystemExit(
            f"No {args.model} {args.profile} checkpoint under {args.work_dir}:"
            " run python -m benchmarks.ped2_accuracy first."
        )
    module = load_model(args.model, args.profile, checkpoint)
    datamodule = ped2_datamodule(module, ensure_ped2(), train_batch=4, eval_batch=8)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        irs = {"fp32": module.to_openvino(Path(tmp) / "fp32", input_size=PED2_SIZE)}
        graph = openvino_core().read_model(str(irs["fp32"]))
        total = len(output_layers(graph, 10_000))
        for depth in depths:
            module.int8_fp32_depth = depth
            start = time.perf_counter()
            irs[f"int8_d{depth}"] = module.to_openvino(
                Path(tmp) / f"d{depth}",
                input_size=PED2_SIZE,
                compression_type=CompressionType.INT8_PTQ,
                datamodule=datamodule,
            )
            rows[f"int8_d{depth}"] = {
                "depth": depth,
                "fp32_layers": len(output_layers(graph, depth)),
                "export_seconds": round(time.perf_counter() - start, 1),
            }
        clips = torch.rand(1, module.clip_length, 3, *PED2_SIZE, generator=torch.Generator().manual_seed(0)).numpy()
        speed = {}
        for name, path in irs.items():
            model = OpenVINOClipModel(path)
            speed[name] = round(1.0 / median_seconds(lambda m=model: m(clips), args.seconds), 2)
        cues = training_cues(irs, datamodule, 16 if args.quick else args.train_clips)
        auc = export_auc(module, irs, datamodule, limit=3 if args.quick else None)
    # The cues the score is fused from; zero-weight cues (CDDA's score factors) are diagnostics only.
    weighted = sorted(cue for cue, weight in module.protocol.cue_weights.items() if weight > 0)
    for name, row in rows.items():
        rho = {cue: round(spearman(cues[name][cue], cues["fp32"][cue]), 5) for cue in weighted}
        row.update(
            {
                "spearman_vs_fp32_train": rho,
                "min_spearman": min(rho.values()),
                "clips_per_second_b1": speed[name],
                "micro_change": auc[f"openvino_{name}"]["micro_change"],
                "protocol_auc_micro": auc[f"openvino_{name}"]["protocol_auc_micro"],
                "auc_error": auc[f"openvino_{name}"].get("error"),
            }
        )
        logger.info("%s: %s", name, row)
    agreeing = [row["depth"] for row in rows.values() if row["min_spearman"] >= AGREEMENT]
    result = {
        "kind": "int8_scope",
        "model": args.model,
        "profile": args.profile,
        "checkpoint": str(checkpoint.relative_to(REPO)),
        "quantisable_layers": total,
        "train_clips": min(args.train_clips, len(datamodule.train_data)),
        "agreement_threshold": AGREEMENT,
        "chosen_depth": min(agreeing) if agreeing else None,
        "pytorch_auc_micro": auc["pytorch_eager"]["protocol_auc_micro"],
        "fp32": {"clips_per_second_b1": speed["fp32"], "micro_change": auc["openvino_fp32"]["micro_change"]},
        "depths": rows,
        "openvino_precision": "f32",  # OpenVINOClipModel's inference precision hint for unquantised layers
    }
    result["quick"] = args.quick
    run_settings = {
        "models": {
            args.model: {
                **model_settings(args.model, args.profile),
                "checkpoint": str(checkpoint.relative_to(REPO)),
                "model_init_args": init_args_of(module),
            }
        },
        "depths": depths,
        "calibration": {"compression_type": "INT8_PTQ", "train_batch_size": 4},
        "train_clips": args.train_clips,
        "agreement_threshold": AGREEMENT,
    }
    path = record(
        f"int8_scope_{args.model}_{args.profile}" + ("_quick" if args.quick else ""),
        result,
        module=__spec__.name,
        argv=argv,
        settings=run_settings,
        started_on=started_on,
    )
    logger.info("chosen depth %s -> %s", result["chosen_depth"], path)
    return path


if __name__ == "__main__":
    main()
