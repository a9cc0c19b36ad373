"""Inference and training speed of the five models on a GPU; writes ``benchmarks/results/speed_gpu_*.json``.

For every model (paper profile by default: the architecture the papers train on a GPU; random weights,
since the speed of these networks does not depend on their values):

* **inference**: clips per second (one clip scores one frame) through the read-only ``predict_clip``
  pipeline (pre-processing, network, post-processing) on raw Ped2-size clips (240x360 RGB frames,
  resized by the pipeline), at batch 1 and a larger batch, for

  - ``eager_fp32``: PyTorch eager, stock NCHW layout (cuDNN's convolutions may use TF32, PyTorch's
    default; the record says which);
  - ``eager_bf16`` / ``eager_fp16``: eager under ``torch.autocast``;
  - ``eager_bf16_channels_last``: bf16 autocast with channels-last weights (tensor-core layout);
  - ``compile_fp32`` / ``compile_bf16``: ``torch.compile`` of the pipeline (static shapes), compiled
    once per batch size; the compile time and the number of graphs Dynamo compiled (0 would mean the
  timing is eager) are recorded beside the speed.

  Every variant's ``pred_score`` and cues are compared with ``eager_fp32`` on the same clips
  (largest relative difference), so a fast variant that scores differently shows.
* **training**: clips per second of the main stage's optimisation step through anomalib's ``Engine``
  (forward, losses, backward, optimiser, state updates; the GPU is synchronised around every step,
  data loading excluded) at the paper batch, in fp32 and ``bf16-mixed`` precision. The data is a
  synthetic UCSD-layout dataset at Ped2's frame size (the step's cost does not depend on the pixels).
  A first stage (DLAN-AC's clusterer epochs, CDDA's autoencoder pre-training) is shortened to one
  untimed epoch; its length does not change the cost of a main-stage step. With ``--train-fast`` every
  precision is timed a second time with the models' fast step (``compile: true``, ``channels_last: true``;
  Adam is fused on a GPU either way), as ``<precision>+fast``; the first steps, which compile, are not
  timed.

Each finished model is written to the results file at once, so a run cut short keeps what it measured.
A wall-clock budget (``--budget-minutes``) skips the remaining ``torch.compile`` variants (the slow part)
when it runs out.

    python -m benchmarks.gpu_speed                                     # all five, paper profile
    python -m benchmarks.gpu_speed --models cdda --quick               # smoke run
    python -m benchmarks.gpu_speed --no-compile --batches 1 --train-fast   # the fast training step beside eager
    python -m benchmarks.gpu_speed --device cpu --profile lite --quick --no-compile   # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import MODELS, commit, first_stage_argument, model_settings, parse_models, record, settings
from benchmarks.ped2_accuracy import PAPER_BATCH, model_config
from benchmarks.speed import give_finite_bounds, ped2_datamodule, synchronize, training_speed

logger = logging.getLogger("gpu_speed")
PED2_SIZE = (240, 360)


def median_clips_per_second(fn, batch: int, device: str, seconds: float, min_calls: int = 5) -> float:  # noqa: ANN001
    """Batch over the median wall time of ``fn()``: two warm-up calls, then ``seconds`` (``min_calls`` at least)."""
    for _ in range(2):
        fn()
    synchronize(device)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return round(batch / statistics.median(times), 2)


def one_first_stage_epoch(name: str, profile: str) -> dict[str, int]:
    """Overrides that shorten the profile's first training stage, if it has one, to a single epoch."""
    init_args, _ = settings(model_config(name, profile).read_text())
    argument = first_stage_argument(name)
    return {argument: 1} if argument and argument in (init_args or {}) else {}


def build_model(name: str, profile: str, device: str, **overrides: Any):  # noqa: ANN401, ANN201
    """The profile's model (random weights) on ``device``, with finite post-processing bounds."""
    from anomalib.models.components import AnomalibModule

    module = AnomalibModule.from_config(
        model_config(name, profile), **{f"model.init_args.{key}": value for key, value in overrides.items()}
    )
    module.visualizer = None
    give_finite_bounds(module)
    return module.to(device).eval()


def largest_relative_difference(outputs: dict[str, Any], reference: dict[str, Any]) -> float:
    """Largest ``|a - b| / (|b| + 1e-6)`` over ``pred_score`` and the cues (NaN anywhere gives ``inf``)."""
    import torch

    worst = 0.0
    for key, ref in reference.items():
        if key != "pred_score" and not key.startswith("cue_"):
            continue
        value = outputs[key].float()
        ref = ref.float()
        if not torch.isfinite(value).all():
            return float("inf")
        worst = max(worst, float(((value - ref).abs() / (ref.abs() + 1e-6)).max()))
    return worst


def time_variant(fn, clips, context, reference: dict, device: str, seconds: float) -> tuple:  # noqa: ANN001
    """``(clips/s, largest relative difference from reference, seconds of the first call)`` of ``fn(clips)``.

    The first call (a compiled function's compile) is timed alone. A failure gives ``(None, repr(error), None)``.
    """

    def call() -> dict[str, Any]:
        with context():
            return fn(clips)

    try:
        start = time.perf_counter()
        outputs = call()
        synchronize(device)
        first = time.perf_counter() - start
        difference = largest_relative_difference(outputs, reference)
        return median_clips_per_second(call, len(clips), device, seconds), difference, first
    except Exception as error:  # noqa: BLE001 - one variant failing must not lose the others
        logger.warning("%r failed: %r", fn, error)
        return None, repr(error), None


def inference_speed(
    module,  # noqa: ANN001
    batches: list[int],
    device: str,
    seconds: float,
    compile_until: float | None = None,
) -> dict[str, Any]:
    """Clips per second of each variant at each batch size, with each variant's difference from eager fp32.

    Without ``compile_until`` the eager variants are timed; with it, the ``torch.compile`` ones, each
    compiled only while ``time.perf_counter()`` is before it.
    """
    import torch
    from torch._dynamo.utils import counters

    autocast = {
        "fp32": contextlib.nullcontext,
        "bf16": lambda: torch.autocast(device.split(":")[0], dtype=torch.bfloat16),
        "fp16": lambda: torch.autocast(device.split(":")[0], dtype=torch.float16),
    }
    variants = {}
    nhwc_read_only = contextlib.nullcontext
    if compile_until is None:
        nhwc = copy.deepcopy(module)
        nhwc_read_only = nhwc.read_only_eval
        nhwc.model.to(memory_format=torch.channels_last)
        variants = {
            "eager_fp32": (module.predict_clip, "fp32"),
            "eager_bf16": (module.predict_clip, "bf16"),
            "eager_fp16": (module.predict_clip, "fp16"),
            "eager_bf16_channels_last": (nhwc.predict_clip, "bf16"),
        }
    results: dict[str, Any] = {}
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        clips = torch.rand(batch, module.clip_length, 3, *PED2_SIZE, generator=generator).to(device)
        row: dict[str, Any] = {}
        difference: dict[str, float | str] = {}
        compile_seconds: dict[str, float] = {}
        graphs: dict[str, int] = {}
        with module.read_only_eval(), nhwc_read_only(), torch.inference_mode():
            reference = module.predict_clip(clips)
            for name, (fn, precision) in variants.items():
                row[name], difference[name], _ = time_variant(
                    fn, clips, autocast[precision], reference, device, seconds
                )
            for precision in ("fp32", "bf16") if compile_until is not None else ():
                name = f"compile_{precision}"
                if time.perf_counter() > compile_until:
                    row[name] = None
                    logger.warning("%s skipped: the time budget is spent", name)
                    continue
                # Dynamo caches per code object: ``predict_clip`` of every model and precision would share one
                # cache and, past its recompile limit, silently run eager. Each compile starts afresh and is
                # timed before the next one.
                torch._dynamo.reset()  # noqa: SLF001
                counters.clear()
                compiled = torch.compile(module.predict_clip, dynamic=False)
                row[name], difference[name], first = time_variant(
                    compiled, clips, autocast[precision], reference, device, seconds
                )
                if first is not None:
                    compile_seconds[name] = round(first, 1)
                graphs[name] = counters["stats"]["unique_graphs"]  # 0: Dynamo compiled nothing, the timing is eager
        results[f"batch{batch}"] = row
        results[f"batch{batch}_largest_relative_difference"] = difference
        if compile_seconds:
            results[f"batch{batch}_compile_seconds"] = compile_seconds
        if graphs:
            results[f"batch{batch}_compiled_graphs"] = graphs
        logger.info("batch %d, clips/s: %s", batch, row)
    if device.startswith("cuda") and compile_until is None:
        results["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return results


def synthetic_datamodule(root: Path, module, batch: int):  # noqa: ANN001, ANN201
    """A synthetic UCSD-layout dataset at Ped2's frame size, read as the accuracy benchmark reads Ped2."""
    from anomalib_vadproto.data import make_synthetic_ucsd

    make_synthetic_ucsd(root, category="synthetic", n_train=2, n_test=1, n_frames=80, height=240, width=360)
    return ped2_datamodule(module, root, train_batch=batch, eval_batch=batch, category="synthetic")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated snake names")
    parser.add_argument("--profile", default="paper", choices=["lite", "paper"])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--batches", default="1,32", help="inference batch sizes")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing time per measurement")
    parser.add_argument("--train-steps", type=int, default=30, help="training steps per precision (0: skip)")
    parser.add_argument("--train-precisions", default="32,bf16-mixed", help="Lightning precisions to train in")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument(
        "--train-fast", action="store_true", help="also time training with compile: true and channels_last: true"
    )
    parser.add_argument("--budget-minutes", type=float, default=7.0, help="compile nothing more after this")
    parser.add_argument("--commit", default=None, help="record this commit (for copies of the tree without git)")
    parser.add_argument("--quick", action="store_true", help="smoke run: short timings, 8 training steps")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    started_on = args.commit or commit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA device: run on a GPU machine, or pass --device cpu for a smoke run.")
    models = parse_models(args.models)
    batches = [int(b) for b in args.batches.split(",")]
    seconds = 0.3 if args.quick else args.seconds
    steps = 8 if args.quick else args.train_steps
    compile_until = None if args.no_compile else started + 60 * args.budget_minutes
    result: dict[str, Any] = {
        "kind": "speed_gpu",
        "model": ",".join(models),
        "profile": args.profile,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "input_frame_size": list(PED2_SIZE),
        "batches": batches,
        "weights": "random (the profile's architecture)",
        "training_data": "synthetic UCSD layout, 240x360 frames",
        "quick": args.quick,
        "models": {},
    }
    train_fast = {"compile": True, "channels_last": True}
    run_settings = {
        "models": {name: model_settings(name, args.profile) for name in models},
        "train_batch_size": {name: PAPER_BATCH.get(name, 4) if args.profile == "paper" else 4 for name in models},
        "train_precisions": args.train_precisions.split(","),
        "train_overrides": {name: one_first_stage_epoch(name, args.profile) for name in models},  # untimed stage
        "train_fast_options": train_fast if args.train_fast else None,
    }
    path: Path | None = None

    def save() -> None:
        nonlocal path
        result["elapsed_seconds"] = round(time.perf_counter() - started, 1)
        if path is not None:
            path.unlink()
        stem = f"speed_gpu_{args.profile}" + ("_quick" if args.quick else "")
        path = record(stem, result, module=__spec__.name, argv=argv, settings=run_settings, started_on=started_on)

    with tempfile.TemporaryDirectory() as data_root:
        for name in models:  # eager inference and training first: the compile phase is the one a budget cuts
            entry: dict[str, Any] = {"config": model_config(name, args.profile).name}
            result["models"][name] = entry
            try:
                module = build_model(name, args.profile, args.device)
                entry["image_size"] = list(module.image_size)
                entry["parameters"] = sum(p.numel() for p in module.model.parameters())
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                entry["inference_clips_per_second"] = inference_speed(module, batches, args.device, seconds)
                del module
            except Exception as error:  # noqa: BLE001 - record it, measure the next model
                logger.exception("%s inference failed", name)
                entry["inference_error"] = repr(error)
            if steps > 0:
                batch = PAPER_BATCH.get(name, 4) if args.profile == "paper" else 4
                entry["training"] = {}
                precisions = args.train_precisions.split(",")
                variants = [(precision, precision, {}) for precision in precisions]
                if args.train_fast:
                    variants += [(f"{precision}+fast", precision, train_fast) for precision in precisions]
                for key, precision, options in variants:
                    try:
                        # one first-stage epoch, untimed (see the module docstring)
                        first_stage = one_first_stage_epoch(name, args.profile)
                        fresh = build_model(name, args.profile, "cpu", **first_stage, **options)
                        datamodule = synthetic_datamodule(Path(data_root), fresh, batch)
                        entry["training"][key] = training_speed(fresh, datamodule, steps, args.device, precision)
                    except Exception as error:  # noqa: BLE001
                        logger.exception("%s training (%s) failed", name, key)
                        entry["training"][key] = {"error": repr(error)}
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            logger.info("%s: %s", name, entry)
            save()
    if compile_until is not None:
        for name in models:
            try:
                module = build_model(name, args.profile, args.device)
                compiled = inference_speed(module, batches, args.device, seconds, compile_until)
                speeds = result["models"][name].setdefault("inference_clips_per_second", {})
                for key, value in compiled.items():
                    speeds.setdefault(key, {}).update(value)
                del module
            except Exception as error:  # noqa: BLE001
                logger.exception("%s compile failed", name)
                result["models"][name]["compile_error"] = repr(error)
            save()
    return path  # record() logged each save


if __name__ == "__main__":
    main()
