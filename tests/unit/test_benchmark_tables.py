"""The results tables show only runs of a profile as it is configured now (``benchmarks/common.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

COMMON = Path(__file__).resolve().parents[2] / "benchmarks" / "common.py"


@pytest.fixture(scope="module")
def common():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("benchmarks_common", COMMON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    if not (COMMON.parents[1] / ".git").exists():
        pytest.skip("not a git checkout")
    # Head's committed config against the working tree: equal unless a config is being edited.
    clean = common.subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", "configs/model/cdda_lite.yaml"], cwd=common.REPO, check=False
    )
    if clean.returncode == 0:
        assert common.configured_at("cdda", "lite", "HEAD") is True
    assert common.configured_at("cdda", "lite", "0000000") is None  # a revision git does not know
    assert common.configured_at("cdda", "no_such_profile", "HEAD") is None  # no config now
