"""Where an exported model spends its time in OpenVINO, per operation type, and what the clip resize costs.

For every model (lite profile by default, the weights of its last ``ped2_accuracy.py`` run, random
weights without one) the FP32 export of the whole pipeline (pre-processing, model, post-processing)
runs on raw Ped2-size clips (240x360 RGB) at batch 1, compiled for that shape, with OpenVINO's
per-layer counters on. The results file lists the time of each operation type (``Reorder`` is
OpenVINO converting tensors between its planar and channels-blocked layouts) and the slowest layers.

It also compares two exports of the same weights, timed interleaved without counters:

* ``clip_view``: the package's pre-processor (``VideoPreProcessor``), which resizes a clip
  ``(N, T, C, H, W)`` as one image of ``T * C`` channels;
* ``per_frame``: anomalib's stock ``PreProcessor`` with the same transform, which resizes it as
  ``N * T`` images of ``C`` channels.

Both give the same pixels; the ratio is what the clip view saves. A third timing runs the clip-view
export on its dynamic-batch graph (``OpenVINOClipModel(static_batches=0)``) against the static-shape
graph that ``OpenVINOClipModel`` compiles by default.

    python -m research.openvino_profile                   # all five models
    python -m research.openvino_profile --models apn --calls 100
"""

from __future__ import annotations

import argparse
import collections
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import MODELS, REPO, commit, init_args_of, model_settings, parse_models, record
from benchmarks.speed import PED2_SIZE, interleaved_median_seconds, latest_checkpoint, load_model

logger = logging.getLogger("openvino_profile")


def layer_profile(xml: Path, clip: Any, calls: int, top: int) -> dict[str, Any]:  # noqa: ANN401
    """Per-operation-type and per-layer milliseconds of one inference, averaged over ``calls`` calls."""
    from anomalib_vadproto.deploy import openvino_core

    core = openvino_core()
    model = core.read_model(xml)
    model.reshape({model.input(0).get_any_name(): list(clip.shape)})  # static shapes, as OpenVINOClipModel runs it
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True})
    request = compiled.create_infer_request()
    for _ in range(5):
        request.infer(clip)
    by_type: collections.Counter[str] = collections.Counter()
    by_layer: collections.Counter[tuple[str, str]] = collections.Counter()
    walls = []
    for _ in range(calls):
        start = time.perf_counter()
        request.infer(clip)
        walls.append(time.perf_counter() - start)
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1e3 / calls
            by_type[info.node_type] += ms
            by_layer[(info.node_name, info.node_type)] += ms
    total = sum(by_type.values())
    return {
        "wall_ms_with_counters": round(statistics.median(walls) * 1e3, 3),
        "layers_ms": round(total, 3),
        "by_type_ms": {name: round(ms, 3) for name, ms in by_type.most_common()},
        "by_type_share": {name: round(ms / total, 3) for name, ms in by_type.most_common()},
        "slowest_layers_ms": [
            {"layer": name, "type": kind, "ms": round(ms, 3)} for (name, kind), ms in by_layer.most_common(top)
        ],
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated snake names")
    parser.add_argument("--profile", default="lite", choices=["lite", "paper"])
    parser.add_argument("--calls", type=int, default=50, help="profiled inferences per model")
    parser.add_argument("--seconds", type=float, default=6.0, help="timing time of the clip-view A/B")
    parser.add_argument("--top", type=int, default=12, help="slowest layers to record")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "runs", help="where the checkpoints are")
    args = parser.parse_args(argv)
    started_on = commit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch
    from anomalib.pre_processing import PreProcessor

    from anomalib_vadproto.deploy import OpenVINOClipModel

    models = parse_models(args.models)
    per_model: dict[str, Any] = {}
    settings_of: dict[str, Any] = {}
    for name in models:
        checkpoint = latest_checkpoint(name, args.profile, args.work_dir)
        module = load_model(name, args.profile, checkpoint)
        settings_of[name] = {**model_settings(name, args.profile), "model_init_args": init_args_of(module)}
        stock = copy.deepcopy(module)
        stock.pre_processor = PreProcessor(transform=copy.deepcopy(module.pre_processor.transform))
        clip = torch.rand(1, module.clip_length, 3, *PED2_SIZE, generator=torch.Generator().manual_seed(0))
        array = clip.numpy()
        with tempfile.TemporaryDirectory() as tmp:
            irs = {
                variant: m.to_openvino(Path(tmp) / variant, input_size=PED2_SIZE)
                for variant, m in (("clip_view", module), ("per_frame", stock))
            }
            entry: dict[str, Any] = {
                "checkpoint": str(checkpoint.relative_to(REPO)) if checkpoint else None,
                "image_size": list(module.image_size),
                "transform": [type(t).__name__ for t in module.pre_processor.transform.transforms],
            }
            for variant, xml in irs.items():
                entry[f"profile_{variant}"] = layer_profile(xml, array, args.calls, args.top)
            compiled = {variant: OpenVINOClipModel(xml) for variant, xml in irs.items()}
            compiled["clip_view_dynamic"] = OpenVINOClipModel(irs["clip_view"], static_batches=0)
            outputs = {variant: model(array) for variant, model in compiled.items()}
            entry["max_abs_cue_difference"] = max(
                float(abs(outputs["clip_view"][key] - outputs[other][key]).max())
                for key in outputs["clip_view"]
                for other in ("per_frame", "clip_view_dynamic")
                if key.startswith("cue_")
            )
            seconds = interleaved_median_seconds(
                {variant: (lambda m=model, a=array: m(a)) for variant, model in compiled.items()}, args.seconds
            )
        entry["wall_ms"] = {variant: round(value * 1e3, 3) for variant, value in seconds.items()}
        entry["clip_view_speed_up"] = round(seconds["per_frame"] / seconds["clip_view"], 3)
        entry["static_shape_speed_up"] = round(seconds["clip_view_dynamic"] / seconds["clip_view"], 3)
        shares = entry["profile_clip_view"]["by_type_share"]
        logger.info(
            "%s: clip view %.2f ms, per frame %.2f ms (%.2fx), dynamic batch %.2f ms (%.2fx); top types %s",
            name,
            entry["wall_ms"]["clip_view"],
            entry["wall_ms"]["per_frame"],
            entry["clip_view_speed_up"],
            entry["wall_ms"]["clip_view_dynamic"],
            entry["static_shape_speed_up"],
            dict(list(shares.items())[:4]),
        )
        per_model[name] = entry
    result = {
        "kind": "openvino_profile",
        "model": ",".join(models),
        "profile": args.profile,
        "input_frame_size": list(PED2_SIZE),
        "batch": 1,
        "openvino_precision": "f32",
        "models": per_model,
    }
    run_settings = {
        "models": settings_of,
        "openvino": {"precision": "f32", "device": "CPU", "static_shapes": True},
        "calls": args.calls,
        "seconds": args.seconds,
    }
    return record(
        f"openvino_profile_{args.profile}",
        result,
        module=__spec__.name,
        argv=argv,
        settings=run_settings,
        started_on=started_on,
    )


if __name__ == "__main__":
    main()
