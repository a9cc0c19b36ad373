"""Regenerate the results tables in README.md and the model READMEs from ``benchmarks/results/*.json``.

Never type a number into a table by hand: run this after a benchmark.

    python benchmarks/make_table.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, configured_at, configured_epochs  # noqa: E402

# Published Ped2 frame-level micro AUC (spec/methods.md §6.1).
# APN: 96.5 single-scale, 98.2 with the paper's "multi-scale testing" (absent from its code); both smoothed.
PAPER_PED2 = {"mnad": 97.0, "dlan_ac": 97.6, "lgn_net": 97.1, "apn": "96.5 (98.2 multi-scale)", "cdda": 96.5}
NAMES = {"mnad": "MNAD", "dlan_ac": "DLAN-AC", "lgn_net": "LGN-Net", "apn": "APN", "cdda": "CDDA"}


def latest_accuracy() -> list[dict]:
    """The newest accuracy record per (model, profile, tag) on Ped2 of the profile as configured now.

    A run with another number of epochs than the config's, or made when the config's settings differed
    from today's (an earlier or discarded profile), stays in the model README's history, not in the
    generated tables. So does a trial that overrode model arguments (``ped2_accuracy.py --set``).
    """
    latest: dict[tuple, dict] = {}
    for path in sorted(RESULTS.glob("accuracy_*.json")):
        record = json.loads(path.read_text())
        if record.get("dataset") != "ucsd_ped2" or record.get("model_overrides"):
            continue
        epochs = configured_epochs(record["model"], record["profile"])
        if epochs is not None and record.get("epochs") != epochs:
            continue
        if configured_at(record["model"], record["profile"], record.get("commit", "unknown")) is False:
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
    """APN's micro AUC with the code's temporal smoothing (the other models are not smoothed)."""
    value = record.get("protocol_auc_smoothed_micro")
    return "–" if value is None else f"{value:.1f}"


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
            f" | `{r['command']}` | `{r['file']}` |"
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
            + f" | {change} | {'–' if training is None else f'{training:.1f}'} | `{record['command']}` | `{file}` |"
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
            f" | {speed} ({r['decode_frames_per_second']:.0f}) | {aucs} | `{r['command']}` | `{file}` |"
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
    som = som_m_table()
    if som:
        replace_block(REPO / "anomalib_vadproto" / "models" / "dlan_ac" / "README.md", "dlan_ac_som_m", som)
    for model in {r["model"] for r in records}:
        readme = REPO / "anomalib_vadproto" / "models" / model / "README.md"
        if readme.is_file():
            replace_block(readme, model, accuracy_table([r for r in records if r["model"] == model]))
            staged = [r for r in records if r["model"] == model and "num_prototypes_m" in r]
            if staged:
                replace_block(readme, f"{model}_stages", stages_table(staged))


if __name__ == "__main__":
    main()
