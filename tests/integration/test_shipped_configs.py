"""Every shipped config parses through anomalib's own CLI parser, alone and with every other kind.

The configs are what users run (``anomalib train --config configs/model/<m>.yaml --data
configs/data/<d>.yaml``); a dependency release that changes how they parse (jsonargparse's handling of
enum-typed arguments broke ``target_frame: last`` once) must fail here, not on a user's machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

MODEL_CONFIGS = sorted((REPO / "configs" / "model").glob("*.yaml"))
DATA_CONFIGS = sorted((REPO / "configs" / "data").glob("*.yaml"))


@pytest.fixture(scope="module")
def cli_parser():
    """anomalib's CLI parser, built once (parsing does not instantiate anything)."""
    from anomalib.cli.cli import AnomalibCLI

    import anomalib_vadproto  # noqa: F401  - registers the models

    cli = AnomalibCLI.__new__(AnomalibCLI)
    cli.parser = cli.init_parser()
    cli.subcommand_parsers = {}
    cli.subcommand_method_arguments = {}
    cli.add_subcommands()
    return cli.parser


def class_name(config: Path) -> str:
    data = yaml.safe_load(config.read_text())
    return (data.get("model", data))["class_path"].rsplit(".", 1)[-1]


def test_the_configs_are_found():
    assert len(MODEL_CONFIGS) >= 10 and len(DATA_CONFIGS) >= 5


def test_every_model_config_with_every_data_config_parses(cli_parser):
    failures = {}
    for model in MODEL_CONFIGS:
        for data in DATA_CONFIGS:
            try:
                config = cli_parser.parse_args(["train", "--config", str(model), "--data", str(data)])
            except SystemExit as exc:  # jsonargparse reports and exits
                failures[f"{model.name} x {data.name}"] = exc.code
                continue
            train = config["train"]
            assert train["model"]["class_path"].endswith(class_name(model))
            assert train["data"]["class_path"].endswith(class_name(data))
    assert not failures


@pytest.mark.parametrize("data", DATA_CONFIGS, ids=lambda p: p.stem)
def test_every_data_config_builds_its_datamodule(data, tmp_path, monkeypatch):
    """Instantiate through the CLI (as ``anomalib train`` does before training): enums resolve either way."""
    from anomalib.cli.cli import AnomalibCLI
    from anomalib.data.datasets.base.video import VideoTargetFrame
    from anomalib.data.utils import ValSplitMode

    monkeypatch.chdir(tmp_path)
    cli = AnomalibCLI(["train", "--config", str(REPO / "configs/model/mnad_lite.yaml"), "--data", str(data)], run=False)
    assert type(cli.datamodule).__name__ == class_name(data)
    assert cli.datamodule.target_frame is VideoTargetFrame.LAST
    assert ValSplitMode(cli.datamodule.val_split_mode) is ValSplitMode.SAME_AS_TEST


@pytest.mark.parametrize("model", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_every_model_config_builds_its_model(model, tmp_path, monkeypatch):
    from anomalib.cli.cli import AnomalibCLI

    monkeypatch.chdir(tmp_path)
    cli = AnomalibCLI(["train", "--config", str(model), "--data", str(REPO / "configs/data/synthetic.yaml")], run=False)
    assert type(cli.model).__name__ == class_name(model)
    assert cli.config["train"]["trainer"]["max_epochs"] == yaml.safe_load(model.read_text())["trainer"]["max_epochs"]


@pytest.mark.parametrize("spelling", ["last", "LAST", "Last"])
def test_the_enum_arguments_take_values_and_names(spelling, cli_parser):
    config = cli_parser.parse_args(
        [
            "train",
            "--model",
            "Mnad",
            "--data",
            str(REPO / "configs/data/ucsd_ped2.yaml"),
            "--data.target_frame",
            spelling,
        ]
    )
    assert str(config["train"]["data"]["init_args"]["target_frame"]).lower().endswith("last")


def test_a_wrong_enum_value_names_the_choices():
    from anomalib_vadproto import LocalUCSDped

    with pytest.raises(ValueError, match=r"target_frame must be one of \('first', 'last', 'mid', 'all'\)"):
        LocalUCSDped(root="nowhere", target_frame="final")
