"""Regenerate the results tables in README.md and the model READMEs from ``benchmarks/results/*.json``.

Never type a number into a table by hand: run this after a benchmark.

    python -m benchmarks.make_table

Only the files directly in ``benchmarks/results/`` are read: superseded files moved to
``benchmarks/results/archive/`` are not. Each table row prints the command its results file recorded, less the
working folder it named (``--work-dir``, a path on that machine).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from benchmarks.common import (
    REPO,
    RESULTS,
    config_path,
    configured_as_now,
    configured_epochs,
    first_stage_argument,
    settings,
    smoothing_mode_of,
)

# Published Ped2 frame-level micro AUC (each paper's own number).
# APN: 96.5 single-scale, 98.2 with the paper's "multi-scale testing" (absent from its code); both smoothed.
PAPER_PED2 = {"mnad": 97.0, "dlan_ac": 97.6, "lgn_net": 97.1, "apn": "96.5 smoothed (98.2 multi-scale)", "cdda": 96.5}
NAMES = {"mnad": "MNAD", "dlan_ac": "DLAN-AC", "lgn_net": "LGN-Net", "apn": "APN", "cdda": "CDDA"}


#: Options that only name where a run kept its working files; a table does not show them (their values
#: are paths on the machine that ran it, and the results do not depend on them).
LOCAL_OPTIONS = ("--work-dir",)


def shown_command(command: str) -> str:
    """Return a results file's command without its :data:`LOCAL_OPTIONS` (``--work-dir X`` or ``--work-dir=X``).

    Example:
        >>> shown_command("python -m benchmarks.speed --models cdda --work-dir /tmp/runs --auc")
        'python -m benchmarks.speed --models cdda --auc'

    """
    for option in LOCAL_OPTIONS:
        command = re.sub(rf"\s{re.escape(option)}(?:=|\s+)\S+", "", command)
    return command


def latest_accuracy() -> list[dict]:
    """The newest accuracy record per (model, profile, tag) on Ped2 of the profile as configured now.

    A run with another number of epochs than the config's, or made when the config's settings differed
    from today's (an earlier or discarded profile: the settings the results file stores, or for older
    files the config at its commit in git), stays in the model README's history, not in the generated
    tables. So does a trial that overrode model arguments (``ped2_accuracy --set``).
    """
    latest: dict[tuple, dict] = {}
    for path in sorted(RESULTS.glob("accuracy_*.json")):
        record = json.loads(path.read_text())
        if record.get("dataset") != "ucsd_ped2" or record.get("model_overrides"):
            continue
        epochs = configured_epochs(record["model"], record["profile"])
        if epochs is not None and record.get("epochs") != epochs:
            continue
        if configured_as_now(record) is False:
            continue
        record["file"] = path.relative_to(REPO).as_posix()
        prefix = path.stem.rsplit("_", 1)[0]
        record["tag"] = prefix.removeprefix(f"accuracy_{record['model']}_{record['profile']}_ped2").lstrip("_")
        latest[(record["model"], record["profile"], prefix)] = record
    order = list(PAPER_PED2)
    return sorted(latest.values(), key=lambda r: (order.index(r["model"]) if r["model"] in order else 99, r["profile"]))


def profile_label(record: dict) -> str:
    """The profile, with the tag of a tagged run (``ped2_accuracy.py --tag``, e.g. a repeat with another seed).

    Runs trained under mixed precision (``--precision bf16-mixed`` or the config's) say so.
    """
    label = f"{record['profile']} ({record['tag']})" if record.get("tag") else record["profile"]
    precision = record.get("precision", "32-true")
    return label if precision in ("32", "32-true") else f"{label}, {precision}"


def cue_aucs(record: dict) -> str:
    """Micro AUC of each cue alone (``cue_protocol_auc``; runs before it was recorded show a dash)."""
    cues = record.get("cue_protocol_auc")
    if not cues or len(cues) < 2:
        return "–"
    return ", ".join(f"{name} {value['micro']:.1f}" for name, value in sorted(cues.items()))


def smoothed(record: dict) -> str:
    """APN's micro AUC with the code's temporal smoothing (the other models are not smoothed).

    Runs from before the smoothing's border mode was settable smoothed with edge padding, not the code's
    held borders; their figure is marked so.
    """
    value = record.get("protocol_auc_smoothed_micro")
    if value is None:
        return "–"
    return f"{value:.1f}" if smoothing_mode_of(record) == "hold" else f"{value:.1f} (edge-padded)"


def accuracy_table(records: list[dict]) -> str:
    lines = [
        "| model | profile | epochs | paper AUC | protocol AUC micro | macro | micro, smoothed | each cue alone"
        " | pooled AUROC | train | test | device | command | results file |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        lines.append(
            f"| {NAMES.get(r['model'], r['model'])} | {profile_label(r)} | {r['epochs']}"
            f" | {PAPER_PED2.get(r['model'], '–')}"
            f" | **{r['protocol_auc_micro']:.2f}** | {r['protocol_auc_macro']:.1f}"
            f" | {smoothed(r)} | {cue_aucs(r)} | {r['pooled_auroc']:.1f}"
            f" | {r['train_seconds'] / 60:.1f} min | {r['test_seconds'] / 60:.1f} min | {r['device']}"
            f" | `{shown_command(r['command'])}` | `{r['file']}` |"
        )
    return "\n".join(lines)


def stages_table(records: list[dict]) -> str:
    """DLAN-AC's two stages: M found (next to the paper's), stage times and the SOM's share of stage 1."""
    lines = [
        "| profile | M found | paper M | mean winners per map | AC stage | DLAN stage | SOM | SOM share of AC stage"
        " | results file |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        share = r.get("som_share_of_ac_stage")
        lines.append(
            f"| {r['profile']} | **{r['num_prototypes_m']}** | {r.get('paper', {}).get('num_prototypes_m', '–')}"
            f" | {r['ac_mean_winners']:.2f} | {r['ac_seconds'] / 60:.1f} min | {r['dlan_seconds'] / 60:.1f} min"
            f" | {r['som_seconds'] / 60:.1f} min | {'–' if share is None else f'{100 * share:.0f} %'} | `{r['file']}` |"
        )
    return "\n".join(lines)


def som_m_table() -> str | None:
    """DLAN-AC's M under each SOM neighbourhood, from the newest ``som_m_*.json`` (None if there is none)."""
    files = sorted(RESULTS.glob("som_m_dlan_ac_*.json"))
    if not files:
        return None
    r = json.loads(files[-1].read_text())
    lines = [
        f"Refit on {r['maps']} Ped2 training maps ({'x'.join(map(str, r['feature_shape']))}) of `{r['checkpoint']}`"
        f" (M learnt in training: {r['m_learnt_in_training']}; paper: {r['paper_m']}),"
        f" from `{files[-1].relative_to(REPO).as_posix()}`:",
        "",
        "| SOM setting | M | mean winners per map | time per map |",
        "| --- | --- | --- | --- |",
    ]
    for name, v in r["settings"].items():
        lines.append(f"| {name} | **{v['m']}** | {v['mean_winners']:.2f} | {1000 * v['seconds_per_map']:.0f} ms |")
    return "\n".join(lines)


def change_text(row: dict) -> str:
    """An export's micro AUC change in points, or why it has none (non-finite cues)."""
    return "non-finite" if row.get("micro_change") is None else f"{row['micro_change']:+.2f}"


def latest_speed(profile: str = "lite") -> list[tuple[str, dict, dict, str]]:
    """Per model, the newest full (not ``--quick``) ``speed.py`` entry of a profile: (model, entry, record, file).

    A run may cover some models only (``--models``); each row of the table cites the file it comes from.
    A run without ``--auc`` (or without a checkpoint) measures no AUC change; such an entry takes the AUC
    change of the newest run that measured one, with that run's file in ``auc_file``.
    """
    latest: dict[str, tuple[str, dict, dict, str]] = {}
    latest_auc: dict[str, tuple[dict, str]] = {}
    for path in sorted(RESULTS.glob(f"speed_inference_{profile}_2*.json")):
        record = json.loads(path.read_text())
        for model, entry in record["models"].items():
            file = path.relative_to(REPO).as_posix()
            latest[model] = (model, dict(entry), record, file)
            if entry.get("auc"):
                latest_auc[model] = (entry["auc"], file)
    for model, (_, entry, _, file) in latest.items():
        if not entry.get("auc") and model in latest_auc:
            entry["auc"], auc_file = latest_auc[model]
            if auc_file != file:
                entry["auc_file"] = auc_file
    order = list(PAPER_PED2)
    return sorted(latest.values(), key=lambda row: order.index(row[0]) if row[0] in order else 99)


def speed_table(rows: list[tuple[str, dict, dict, str]]) -> str:
    """Clips (= scored frames) per second per backend, FP32's speed-up, INT8's AUC cost, training speed."""
    backends = ("pytorch_eager", "openvino_fp32", "openvino_fp16", "openvino_int8")
    short = {
        "pytorch_eager": "eager",
        "openvino_fp32": "OV FP32",
        "openvino_fp16": "OV FP16",
        "openvino_int8": "OV INT8",
    }
    large = max(max(record["batches"]) for _, _, record, _ in rows)
    header = [f"{short[b]} b1" for b in backends] + [f"{short[b]} b{large}" for b in backends]
    lines = [
        "| model | "
        + " | ".join(header)
        + " | OV FP32 / eager (b1) | OV FP32 / NCHW eager (b1) | AUC change FP32 / FP16 / INT8 | training clips/s"
        " | command | results file |",
        "| --- | " + " | ".join("---" for _ in header) + " | --- | --- | --- | --- | --- | --- |",
    ]
    notes: list[str] = []
    devices = sorted({record["device"] for _, _, record, _ in rows})
    sizes = sorted({"x".join(str(v) for v in record["input_frame_size"]) for _, _, record, _ in rows})
    for model, entry, record, file in rows:
        speed = entry["inference_clips_per_second"]
        big = f"batch{max(record['batches'])}"
        cells = [f"{speed['batch1'][b]:.1f}" for b in backends] + [f"{speed[big][b]:.1f}" for b in backends]
        auc = entry.get("auc")
        change = " / ".join(change_text(auc[f"openvino_{p}"]) for p in ("fp32", "fp16", "int8")) if auc else "–"
        if entry.get("auc_file"):
            notes.append(f"{NAMES.get(model, model)}'s AUC change is from `{entry['auc_file']}` (earlier weights).")
            change += f" ({len(notes)})"
        nchw = entry.get("openvino_fp32_over_eager_nchw", {}).get("batch1")
        training = entry.get("training", {}).get("clips_per_second")
        lines.append(
            f"| {NAMES.get(model, model)} | "
            + " | ".join(cells)
            + f" | **{entry['openvino_fp32_over_eager']['batch1']:.2f}x** | {'–' if nchw is None else f'{nchw:.2f}x'}"
            + f" | {change} | {'–' if training is None else f'{training:.1f}'}"
            + f" | `{shown_command(record['command'])}` | `{file}` |"
        )
    lines += [
        "",
        f"Clips per second on {', '.join(devices)}, raw {', '.join(sizes)} frames in (every pipeline resizes them"
        " itself; one clip scores one frame); AUC change: protocol micro AUC of each export minus PyTorch's"
        " read-only scores on the Ped2 test set, in points. Eager runs with channels-last weights on CPU, as"
        " anomalib's Engine runs the models here; NCHW eager is PyTorch's stock layout.",
        *(f"\n({i}) {note}" for i, note in enumerate(notes, 1)),
    ]
    return "\n".join(lines)


# Frames of the 16 UCSD Ped2 training videos (Train001-Train016): 2550 in all.
PED2_TRAIN_FRAMES = (120, 150, 150, 180, 180, 150, 150, 120, 180, 180, 180, 180, 180, 150, 150, 150)
# First commit whose gpu_speed.py starts every torch.compile afresh: before it, the compiles of one run shared
# Dynamo's cache of ``predict_clip`` and, past its recompile limit, silently ran eager.
GPU_COMPILE_FIX = "b1d17d6"
GPU_COLUMNS = (
    ("eager fp32 b1", "batch1", "eager_fp32"),
    ("compile fp32 b1", "batch1", "compile_fp32"),
    ("eager fp32 b{large}", "batch{large}", "eager_fp32"),
    ("eager bf16 b{large}", "batch{large}", "eager_bf16"),
    ("bf16 channels-last b{large}", "batch{large}", "eager_bf16_channels_last"),
    ("compile fp32 b{large}", "batch{large}", "compile_fp32"),
    ("compile bf16 b{large}", "batch{large}", "compile_bf16"),
)


def includes_commit(revision: str, ancestor: str) -> bool:
    """Whether git ``revision`` (``-dirty`` dropped) contains ``ancestor`` (``False`` when git cannot tell)."""
    try:
        subprocess.run(
            ["git", "merge-base", "--is-ancestor", ancestor, revision.removesuffix("-dirty")],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def paper_training_minutes(model: str, training: dict) -> float | None:
    """Minutes of optimisation steps alone for the paper profile's epochs on Ped2, from measured step times.

    Main-stage epochs at ``step_seconds``, first-stage epochs (DLAN-AC's ``ac_epochs``, CDDA's
    ``ae_epochs``) at ``first_stage_step_seconds``; every clip of the 16 training videos once per epoch.
    Data loading, validation, k-means and the test pass are not in it.
    """
    path = config_path(model, "paper")
    if "step_seconds" not in training or not path.is_file():
        return None
    init_args, max_epochs = settings(path.read_text())
    args = init_args or {}
    clip = int(args.get("num_input_frames", 4)) + 1
    steps = -(-sum(n - clip + 1 for n in PED2_TRAIN_FRAMES) // training["batch"])
    argument = first_stage_argument(model)
    first = int(args.get(argument, 0)) if argument else 0
    main = int(max_epochs) - first
    seconds = steps * (main * training["step_seconds"] + first * training.get("first_stage_step_seconds", 0.0))
    return seconds / 60


def latest_gpu_speed(profile: str = "paper") -> tuple[dict[str, dict], list[str], int] | None:
    """Per model and cell, the newest full ``gpu_speed.py`` value (compile cells from fixed commits only).

    Returns ``(rows, files, large batch)``; each row maps a column to ``(value, file)`` and also holds
    ``training`` (the newest run's training entries), ``memory`` and ``parameters``.
    """
    paths = sorted(RESULTS.glob(f"speed_gpu_{profile}_2*.json"))
    if not paths:
        return None
    rows: dict[str, dict] = {}
    large = 0
    for path in paths:
        record = json.loads(path.read_text())
        file = path.relative_to(REPO).as_posix()
        large = max(large, *record["batches"])
        compile_ok = includes_commit(record.get("commit", "unknown"), GPU_COMPILE_FIX)
        for model, entry in record["models"].items():
            row = rows.setdefault(model, {"files": [], "device": record["device"]})
            speed = entry.get("inference_clips_per_second", {})
            for batch_key, values in speed.items():
                if not batch_key.startswith("batch") or not isinstance(values, dict) or "_" in batch_key:
                    continue
                for variant, value in values.items():
                    if value is None or (variant.startswith("compile") and not compile_ok):
                        continue
                    row[(batch_key, variant)] = (value, file)
            if "peak_memory_mib" in speed:
                row["memory"] = (speed["peak_memory_mib"], file)
            if "parameters" in entry:
                row["parameters"] = entry["parameters"]
            if any("error" not in t for t in entry.get("training", {}).values()):
                row["training"] = (entry["training"], file)
    for row in rows.values():
        row["files"] = sorted({v[1] for v in row.values() if isinstance(v, tuple)})
    return rows, [p.relative_to(REPO).as_posix() for p in paths], large


def gpu_speed_table(rows: dict[str, dict], large: int) -> str:
    """Clips per second on the GPU per variant, peak memory, training speed and a paper-profile time estimate."""
    header = [name.format(large=large) for name, _, _ in GPU_COLUMNS]
    lines = [
        "| model | parameters | "
        + " | ".join(header)
        + f" | peak memory b{large} | training clips/s fp32 / bf16-mixed (batch) | first-stage step"
        " | paper profile, steps alone | results files |",
        "| --- | --- | " + " | ".join("---" for _ in header) + " | --- | --- | --- | --- | --- |",
    ]
    order = list(PAPER_PED2)
    for model in sorted(rows, key=lambda m: order.index(m) if m in order else 99):
        row = rows[model]
        cells = []
        for _, batch_key, variant in GPU_COLUMNS:
            value = row.get((batch_key.format(large=large), variant))
            cells.append("–" if value is None else f"{value[0]:.0f}")
        memory = f"{row['memory'][0] / 1024:.1f} GiB" if "memory" in row else "–"
        training, first, estimate = "–", "–", "–"
        if "training" in row:
            runs = row["training"][0]
            fp32, bf16 = runs.get("32", {}), runs.get("bf16-mixed", {})
            training = " / ".join(
                f"{r['clips_per_second']:.0f}" if "clips_per_second" in r else "–" for r in (fp32, bf16)
            )
            training += f" ({fp32.get('batch', bf16.get('batch', '?'))})"
            if "first_stage_step_seconds" in fp32:
                first = f"{1000 * fp32['first_stage_step_seconds']:.0f} ms"
            minutes = paper_training_minutes(model, fp32)
            estimate = "–" if minutes is None else f"{minutes:.0f} min"
        parameters = f"{row['parameters'] / 1e6:.1f} M" if "parameters" in row else "–"
        files = ", ".join(f"`{f}`" for f in row["files"])
        lines.append(
            f"| {NAMES.get(model, model)} | {parameters} | "
            + " | ".join(cells)
            + f" | {memory} | {training} | {first} | {estimate} | {files} |"
        )
    devices = sorted({row["device"] for row in rows.values()})
    lines += [
        "",
        f"Clips per second on {', '.join(devices)}, paper-profile networks with random weights, raw 240x360 frames"
        " in (the pipeline resizes them; one clip scores one frame). Compile columns count only runs whose"
        f" `gpu_speed.py` compiles every variant afresh (commit {GPU_COMPILE_FIX} on). Training: the main"
        " stage's step at the paper batch through anomalib's Engine, data loading excluded. *Paper profile,"
        " steps alone*: the paper epochs over Ped2's 2486 training clips at the measured fp32 step times (first"
        " stage at its own step time), without data loading, k-means, validation or the test pass: an estimate,"
        " not a run.",
    ]
    return "\n".join(lines)


def seed_spread(records: list[dict]) -> dict[tuple[str, str], str]:
    """Mean and range of the micro AUC over the seeds of each (model, profile), where runs of 2+ seeds exist.

    Counts the untagged run and runs tagged ``seed<N>`` (``ped2_accuracy.py --seed N --tag seedN``) of
    the same epochs and precision, one run per seed.
    """
    groups: dict[tuple, dict] = {}
    for r in records:
        if r.get("tag") and not r["tag"].startswith("seed"):
            continue
        key = (r["model"], r["profile"], r["epochs"], r.get("precision", "32-true"))
        groups.setdefault(key, {})[r.get("seed")] = r["protocol_auc_micro"]
    spread: dict[tuple[str, str], str] = {}
    for (model, profile, _, precision), by_seed in groups.items():
        if len(by_seed) < 2:
            continue
        values = list(by_seed.values())
        seeds = ", ".join(str(seed) for seed in sorted(by_seed, key=lambda s: (s is None, s or 0)))
        label = "" if precision in ("32", "32-true") else f" ({precision})"
        mean = sum(values) / len(values)
        text = f"mean of seeds {seeds}{label}: **{mean:.2f}** ({min(values):.2f}–{max(values):.2f})"
        spread[(model, profile)] = "; ".join(filter(None, (spread.get((model, profile)), text)))
    return spread


def summary_table(records: list[dict], speed: list[tuple[str, dict, dict, str]]) -> str:
    """One row per model: the paper's Ped2 AUC, ours (newest run of each profile), CPU speed, INT8's cost."""
    speeds = {model: entry for model, entry, _, _ in speed}
    spread = seed_spread(records)
    lines = [
        "| model | paper AUC (Ped2) | ours: protocol micro AUC (profile, epochs)"
        " | OV FP32 clips/s (b1) | INT8 AUC change |",
        "| --- | --- | --- | --- | --- |",
    ]
    for model in PAPER_PED2:
        ours = [r for r in records if r["model"] == model]
        if not ours and model not in speeds:
            continue
        auc = (
            "; ".join(
                f"**{r['protocol_auc_micro']:.2f}** ({profile_label(r)}, {r['epochs']}"
                + (f"; smoothed {smoothed(r)}" if "protocol_auc_smoothed_micro" in r else "")
                + ")"
                for r in ours
            )
            or "–"
        )
        auc += "".join(f"; {text}" for (m, _), text in spread.items() if m == model)
        entry = speeds.get(model)
        fps = f"{entry['inference_clips_per_second']['batch1']['openvino_fp32']:.0f}" if entry else "–"
        int8 = entry.get("auc", {}).get("openvino_int8") if entry else None
        change = "–" if int8 is None else change_text(int8)
        lines.append(f"| {NAMES[model]} | {PAPER_PED2[model]} | {auc} | {fps} | {change} |")
    return "\n".join(lines)


def deploy_table() -> str | None:
    """Parity of ``anomalib-vadproto score`` with ``anomalib test``, its speed, and streaming AUC costs."""
    latest: dict[str, tuple[dict, str]] = {}
    for path in sorted(RESULTS.glob("deploy_*_ped2_*.json")):
        record = json.loads(path.read_text())
        latest[record["model"]] = (record, path.relative_to(REPO).as_posix())
    if not latest:
        return None
    names = ("offline", "running", "running-std", "validation")
    lines = [
        "| model | parity with `anomalib test`: offline / `pred_score` (max abs diff) | frames/s b1 / b8 (decode alone)"
        " | micro AUC: " + " / ".join(names) + " | command | results file |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for model, (r, file) in latest.items():
        speed = " / ".join(f"{t['frames_per_second']:.1f}" for t in r["throughput"])
        auc = r.get("auc") or {}
        aucs = " / ".join(f"{auc[n]['micro']:.1f}" if n in auc else "–" for n in names)
        lines.append(
            f"| {NAMES.get(model, model)} {r['profile']} | {r['parity_offline_max_abs_diff']:.1e}"
            f" / {r['parity_validation_max_abs_diff']:.1e} ({', '.join(r['parity'])})"
            f" | {speed} ({r['decode_frames_per_second']:.0f}) | {aucs} | `{shown_command(r['command'])}` | `{file}` |"
        )
    return "\n".join(lines)


def replace_block(path: Path, key: str, body: str) -> None:
    text = path.read_text()
    start, end = f"<!-- results:{key} -->", f"<!-- /results:{key} -->"
    block = f"{start}\n{body}\n{end}"
    pattern = re.compile(re.escape(start) + r"(.*?" + re.escape(end) + r")?", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {start} marker")
    path.write_text(pattern.sub(lambda _: block, text, count=1))


def main() -> None:
    records = latest_accuracy()
    replace_block(REPO / "README.md", "accuracy", accuracy_table(records))
    deploy = deploy_table()
    if deploy:
        replace_block(REPO / "README.md", "deploy", deploy)
    speed = latest_speed()
    if speed:
        replace_block(REPO / "README.md", "speed", speed_table(speed))
    replace_block(REPO / "README.md", "summary", summary_table(records, speed))
    gpu = latest_gpu_speed()
    if gpu:
        rows, _, large = gpu
        replace_block(REPO / "README.md", "gpu_speed", gpu_speed_table(rows, large))
    som = som_m_table()
    if som:
        replace_block(REPO / "docs" / "dlan_ac_analysis.md", "dlan_ac_som_m", som)
    for model in {r["model"] for r in records}:
        readme = REPO / "anomalib_vadproto" / "models" / model / "README.md"
        if readme.is_file():
            replace_block(readme, model, accuracy_table([r for r in records if r["model"] == model]))
            staged = [r for r in records if r["model"] == model and "num_prototypes_m" in r]
            if staged:
                replace_block(readme, f"{model}_stages", stages_table(staged))


if __name__ == "__main__":
    main()
