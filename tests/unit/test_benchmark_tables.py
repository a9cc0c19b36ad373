"""The results tables show only runs of a profile as it is configured now (``benchmarks.common``)."""

from __future__ import annotations

import pytest

from benchmarks import common, make_table, ped2_accuracy, speed
from tests.conftest import REPO

CONFIG = """# a comment
model:
  class_path: anomalib_vadproto.Cdda
  init_args:
    lr: 5.0e-4
    lr_drop_epoch: 9
trainer:
  max_epochs: 17
"""


def test_settings_ignore_comments_and_see_every_value() -> None:
    same = CONFIG.replace("# a comment", "# another comment\n# and more")
    assert common.settings(same) == common.settings(CONFIG)
    assert common.settings(CONFIG.replace("lr_drop_epoch: 9", "lr_drop_epoch: 3")) != common.settings(CONFIG)
    assert common.settings(CONFIG.replace("max_epochs: 17", "max_epochs: 18")) != common.settings(CONFIG)
    assert common.settings(CONFIG) == ({"lr": 5.0e-4, "lr_drop_epoch": 9}, 17)


def test_configured_at_compares_a_revision_with_now() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    # Head's committed config against the working tree: equal unless a config is being edited.
    clean = common.subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", "configs/model/cdda_lite.yaml"], cwd=common.REPO, check=False
    )
    if clean.returncode == 0:
        assert common.configured_at("cdda", "lite", "HEAD") is True
    assert common.configured_at("cdda", "lite", "0000000") is None  # a revision git does not know
    assert common.configured_at("cdda", "no_such_profile", "HEAD") is None  # no config now


def test_seed_spread_averages_one_run_per_seed() -> None:
    def run(micro: float, seed: int, tag: str = "", epochs: int = 17) -> dict:
        return {
            "model": "cdda",
            "profile": "lite",
            "epochs": epochs,
            "seed": seed,
            "tag": tag,
            "protocol_auc_micro": micro,
        }

    records = [run(84.0, 42), run(90.0, 43, "seed43"), run(87.0, 44, "seed44"), run(99.0, 42, "rerun")]
    records += [run(50.0, 43, "seed43", epochs=4), {**run(70.0, 1), "model": "mnad"}]
    spread = make_table.seed_spread(records)
    assert spread == {("cdda", "lite"): "mean of seeds 42, 43, 44: **87.00** (84.00–90.00)"}


def test_seed_spread_keeps_precisions_apart() -> None:
    def run(micro: float, seed: int, precision: str) -> dict:
        tag = "" if seed == 42 else f"seed{seed}"
        record = {"model": "mnad", "profile": "lite", "epochs": 6, "seed": seed, "tag": tag}
        return {**record, "protocol_auc_micro": micro, "precision": precision}

    records = [run(90.0, 42, "32-true"), run(92.0, 43, "32-true")]
    records += [run(80.0, 42, "bf16-mixed"), run(84.0, 43, "bf16-mixed")]
    assert make_table.seed_spread(records) == {
        ("mnad", "lite"): "mean of seeds 42, 43: **91.00** (90.00–92.00); mean of seeds 42, 43 (bf16-mixed):"
        " **82.00** (80.00–84.00)"
    }


def test_trials_with_model_overrides_stay_out_of_the_tables(tmp_path, monkeypatch) -> None:
    import json

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    record = {"kind": "accuracy", "model": "cdda", "profile": "lite", "dataset": "ucsd_ped2", "epochs": 17}
    record |= {"commit": "unknown", "protocol_auc_micro": 85.0}
    (results / "accuracy_cdda_lite_ped2_20990101T000000.json").write_text(json.dumps(record))
    trial = {**record, "protocol_auc_micro": 99.0, "model_overrides": {"image_size": [256, 256]}}
    (results / "accuracy_cdda_lite_ped2_res256_20990101T000001.json").write_text(json.dumps(trial))
    monkeypatch.setattr(make_table, "RESULTS", results)
    monkeypatch.setattr(make_table, "REPO", tmp_path)
    shown = make_table.latest_accuracy()
    assert [r["protocol_auc_micro"] for r in shown] == [85.0]
    assert shown[0]["file"] == "benchmarks/results/accuracy_cdda_lite_ped2_20990101T000000.json"


def test_gpu_table_keeps_compile_figures_of_fixed_runs_only(tmp_path, monkeypatch) -> None:
    import json

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)

    def record(commit: str, eager: float, compiled: float | None) -> dict:
        speed = {"eager_fp32": eager, "compile_fp32": compiled}
        training = {"32": {"batch": 4, "step_seconds": 0.02, "clips_per_second": 200.0}}
        entry = {"parameters": 1_000_000, "inference_clips_per_second": {"batch1": speed, "batch32": speed}}
        return {
            "commit": commit,
            "device": "GPU",
            "batches": [1, 32],
            "models": {"mnad": entry | {"training": training}},
        }

    # the older run's compile figure predates the fix; the newer run has none (budget spent) but newer eager
    (results / "speed_gpu_paper_20990101T000000.json").write_text(json.dumps(record("old", 100.0, 999.0)))
    (results / "speed_gpu_paper_20990101T000001.json").write_text(json.dumps(record("new", 120.0, None)))
    monkeypatch.setattr(make_table, "RESULTS", results)
    monkeypatch.setattr(make_table, "REPO", tmp_path)
    monkeypatch.setattr(make_table, "includes_commit", lambda revision, ancestor: revision == "new")
    rows, files, large = make_table.latest_gpu_speed()
    assert large == 32 and len(files) == 2
    assert ("batch1", "compile_fp32") not in rows["mnad"]
    assert rows["mnad"][("batch1", "eager_fp32")] == (120.0, "benchmarks/results/speed_gpu_paper_20990101T000001.json")
    table = make_table.gpu_speed_table(rows, large)
    assert "| MNAD | 1.0 M | 120 | – | 120 |" in table


def test_paper_training_minutes_counts_every_ped2_clip_once_per_epoch() -> None:
    # MNAD's paper profile: 60 epochs of ceil((2550 - 16 * 4) / 4) = 622 steps
    assert make_table.paper_training_minutes("mnad", {"batch": 4, "step_seconds": 0.02}) == pytest.approx(
        622 * 60 * 0.02 / 60
    )
    # DLAN-AC's: 10 AC epochs at the first-stage step, 80 DLAN epochs, ceil(2486 / 8) = 311 steps each
    minutes = make_table.paper_training_minutes(
        "dlan_ac", {"batch": 8, "step_seconds": 0.03, "first_stage_step_seconds": 0.5}
    )
    assert minutes == pytest.approx(311 * (80 * 0.03 + 10 * 0.5) / 60)
    assert make_table.paper_training_minutes("mnad", {"batch": 4}) is None


def test_set_parses_model_arguments_as_yaml() -> None:
    parsed = ped2_accuracy.parse_model_args(
        ["image_size=[256, 256]", "width=16", " spatial_init = kaiming", "lr=5e-4", "centre_lr=5.0e-5"]
    )
    assert parsed == {"image_size": [256, 256], "width": 16, "spatial_init": "kaiming", "lr": 5e-4, "centre_lr": 5e-5}
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        ped2_accuracy.parse_model_args(["width16"])
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        ped2_accuracy.parse_model_args(["=16"])


def test_set_without_a_tag_is_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        ped2_accuracy.main(["--model", "cdda", "--set", "width=16"])
    assert "give it a --tag" in capsys.readouterr().err


def test_checkpoints_or_latest_names_what_is_missing(tmp_path) -> None:
    import os

    with pytest.raises(SystemExit, match="No cdda lite checkpoint"):
        speed.checkpoints_or_latest(None, "cdda", "lite", tmp_path)
    runs = tmp_path / "cdda_lite"
    old, new = runs / "v0" / "model.ckpt", runs / "v1" / "model.ckpt"
    for age, path in ((100, old), (0, new)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        os.utime(path, (path.stat().st_mtime - age,) * 2)
    assert speed.checkpoints_or_latest(None, "cdda", "lite", tmp_path) == [new]
    assert speed.checkpoints_or_latest([old], "cdda", "lite", tmp_path) == [old]
    with pytest.raises(SystemExit, match="gone.ckpt"):
        speed.checkpoints_or_latest([old, tmp_path / "gone.ckpt"], "cdda", "lite", tmp_path)


def test_shown_path_is_repository_relative_inside_it(tmp_path) -> None:
    assert common.shown_path(REPO / "benchmarks" / "common.py") == "benchmarks/common.py"
    assert common.shown_path(tmp_path / "x.ckpt") == str(tmp_path / "x.ckpt")


def test_speed_only_arguments_and_the_smoothing_mode_do_not_make_a_run_stale():
    base = "model:\n  init_args:\n    width: 16\n    smoothing: false\ntrainer:\n  max_epochs: 6\n"
    faster = base.replace("    width: 16\n", "    width: 16\n    compile: true\n    smoothing_mode: hold\n")
    assert common.training_settings(base) == common.training_settings(faster)
    assert common.training_settings(base) != common.training_settings(base.replace("16", "32"))
    assert make_table.smoothed({"protocol_auc_smoothed_micro": 92.04}) == "92.0 (edge-padded)"
    assert make_table.smoothed({"protocol_auc_smoothed_micro": 92.04, "smoothing_mode": "hold"}) == "92.0"


# ---------------------------------------------------------------------- the results record
def test_record_writes_the_command_commit_and_settings(tmp_path, monkeypatch) -> None:
    import json
    import re

    import torch

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "device_name", lambda: "CPU (2 threads)")
    settings = {"models": {"cdda": {"init_args": {"width": 8, "lr": 5.0e-4}, "trainer": {"max_epochs": 17}}}}
    path = common.record(
        "accuracy_cdda_lite_ped2",
        {"kind": "accuracy", "model": "cdda", "protocol_auc_micro": 84.62},
        module="benchmarks.ped2_accuracy",
        argv=["--model", "cdda", "--tag", "two words"],
        settings=settings,
        started_on="abc1234-dirty",
    )
    assert path.parent == tmp_path and re.fullmatch(r"accuracy_cdda_lite_ped2_\d{8}T\d{6}\.json", path.name)
    written = json.loads(path.read_text())
    assert written["command"] == "python -m benchmarks.ped2_accuracy --model cdda --tag 'two words'"
    assert written["commit"] == "abc1234-dirty"
    assert written["device"] == "CPU (2 threads)"
    assert written["torch_threads"] == torch.get_num_threads()
    assert written["run_settings"] == settings
    assert written["kind"] == "accuracy" and written["protocol_auc_micro"] == 84.62
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", written["date"])
    assert list(written)[:4] == ["commit", "date", "device", "command"]


def test_record_defaults_to_the_current_commit_and_refuses_fields_it_writes(tmp_path, monkeypatch) -> None:
    import json

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "device_name", lambda: "CPU")
    monkeypatch.setattr(common, "commit", lambda: "def5678")
    monkeypatch.setattr(common.sys, "argv", ["speed.py", "--quick"])
    written = json.loads(common.record("speed_x", {}, module="benchmarks.speed").read_text())
    assert written["commit"] == "def5678" and written["command"] == "python -m benchmarks.speed --quick"
    assert written["run_settings"] == {}
    assert common.command_line("research.int8_scope", []) == "python -m research.int8_scope"
    with pytest.raises(ValueError, match="command"):
        common.record("speed_x", {"command": "python benchmarks/speed.py"}, module="benchmarks.speed")


def test_model_settings_are_the_configs_values_and_the_overrides() -> None:
    import yaml

    config = yaml.safe_load((REPO / "configs" / "model" / "cdda_lite.yaml").read_text())
    stored = common.model_settings("cdda", "lite", {"seed": 43})
    assert stored == {
        "config": "configs/model/cdda_lite.yaml",
        "class_path": config["model"]["class_path"],
        "init_args": config["model"]["init_args"],
        "trainer": config["trainer"],
        "overrides": {"seed": 43},
    }
    assert common.model_settings("cdda", "no_such_profile")["init_args"] == {}


def test_init_args_of_keeps_what_json_can_store() -> None:
    from types import SimpleNamespace

    module = SimpleNamespace(hparams={"width": 8, "image_size": (128, 128), "pre_processor": object(), "x": None})
    assert common.init_args_of(module) == {"width": 8, "image_size": (128, 128), "x": None}
    assert common.init_args_of(object()) == {}


def test_the_tables_read_a_runs_stored_settings_without_git(tmp_path, monkeypatch) -> None:
    import json

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    now = common.model_settings("cdda", "lite")
    stale = {**now, "init_args": {**now["init_args"], "width": 1234}}
    epochs = common.configured_epochs("cdda", "lite")
    base = {"kind": "accuracy", "model": "cdda", "profile": "lite", "dataset": "ucsd_ped2", "epochs": epochs}
    base["commit"] = "0000000"  # a revision git does not know: only the stored settings can tell
    current = {**base, "protocol_auc_micro": 85.0, "run_settings": {"models": {"cdda": now}}}
    earlier = {**base, "protocol_auc_micro": 99.0, "run_settings": {"models": {"cdda": stale}}}
    (results / "accuracy_cdda_lite_ped2_20990101T000000.json").write_text(json.dumps(current))
    (results / "accuracy_cdda_lite_ped2_20990101T000001.json").write_text(json.dumps(earlier))
    (results / "archive").mkdir()  # superseded files: never read
    (results / "archive" / "accuracy_cdda_lite_ped2_20990101T000002.json").write_text(json.dumps(current))

    def no_git(*args: object) -> None:
        raise AssertionError("a file with stored settings needs no git history")

    monkeypatch.setattr(common, "configured_at", no_git)
    monkeypatch.setattr(make_table, "RESULTS", results)
    monkeypatch.setattr(make_table, "REPO", tmp_path)
    shown = make_table.latest_accuracy()
    assert [(r["protocol_auc_micro"], r["file"]) for r in shown] == [
        (85.0, "benchmarks/results/accuracy_cdda_lite_ped2_20990101T000000.json")
    ]
    # speed-only arguments in the stored settings do not make a run stale
    faster = {**now, "init_args": {**now["init_args"], "compile": True}}
    assert common.configured_as_now({**current, "run_settings": {"models": {"cdda": faster}}}) is True
    assert common.stored_training_settings({"model": "cdda"}, "cdda") is None  # an older file: git decides


def test_shown_commands_leave_out_the_machines_working_folders() -> None:
    from benchmarks.make_table import shown_command

    recorded = "python -m benchmarks.ped2_accuracy --model cdda --work-dir /tmp/wt2/runs --seed 44 --work-dir=/x/y"
    assert shown_command(recorded) == "python -m benchmarks.ped2_accuracy --model cdda --seed 44"
    assert shown_command("python -m benchmarks.speed --auc") == "python -m benchmarks.speed --auc"
