"""The results tables show only runs of a profile as it is configured now (``benchmarks/common.py``)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, load_benchmark


@pytest.fixture(scope="module")
def common():  # noqa: ANN201
    return load_benchmark("common")


CONFIG = """# a comment
model:
  class_path: anomalib_vadproto.Cdda
  init_args:
    lr: 5.0e-4
    lr_drop_epoch: 9
trainer:
  max_epochs: 17
"""


def test_settings_ignore_comments_and_see_every_value(common) -> None:  # noqa: ANN001
    same = CONFIG.replace("# a comment", "# another comment\n# and more")
    assert common.settings(same) == common.settings(CONFIG)
    assert common.settings(CONFIG.replace("lr_drop_epoch: 9", "lr_drop_epoch: 3")) != common.settings(CONFIG)
    assert common.settings(CONFIG.replace("max_epochs: 17", "max_epochs: 18")) != common.settings(CONFIG)
    assert common.settings(CONFIG) == ({"lr": 5.0e-4, "lr_drop_epoch": 9}, 17)


def test_configured_at_compares_a_revision_with_now(common) -> None:  # noqa: ANN001
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


@pytest.fixture(scope="module")
def make_table():  # noqa: ANN201
    return load_benchmark("make_table")


def test_seed_spread_averages_one_run_per_seed(make_table) -> None:  # noqa: ANN001
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


def test_seed_spread_keeps_precisions_apart(make_table) -> None:  # noqa: ANN001
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
