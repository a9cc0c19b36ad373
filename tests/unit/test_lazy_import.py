"""Lazy top-level names, registration through the ``.pth`` hook, the plugin's own help, quiet start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

import anomalib_vadproto
from anomalib_vadproto.cli import PLUGIN_COMMANDS, main

MODELS = ("apn", "cdda", "dlan_ac", "lgn_net", "mnad")


def run_python(code: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *options, "-c", code], capture_output=True, text=True, check=True)


def test_public_names_resolve_lazily() -> None:
    from anomalib.data import AnomalibDataModule
    from anomalib.models.components import AnomalibModule

    for name in ("Apn", "Cdda", "DlanAc", "LgnNet", "Mnad"):
        assert AnomalibModule in getattr(anomalib_vadproto, name).__bases__
    for name in ("LocalAvenue", "LocalShanghaiTech", "LocalUCSDped"):
        assert issubclass(getattr(anomalib_vadproto, name), AnomalibDataModule)
    assert set(anomalib_vadproto.__all__) <= set(dir(anomalib_vadproto))
    with pytest.raises(AttributeError, match="Nothing"):
        anomalib_vadproto.Nothing  # noqa: B018


@pytest.mark.slow
@pytest.mark.parametrize("module", ["anomalib_vadproto.deploy.score", "anomalib_vadproto.data.synthetic"])
def test_score_and_synthetic_import_neither_models_nor_anomalib_data(module) -> None:
    heavy = ("anomalib_vadproto.models", "anomalib.data", "anomalib.models", "lightning")
    out = run_python(f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))").stdout
    assert out.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize(
    "first",
    [
        "anomalib_vadproto",  # the package alone registers nothing until anomalib.models is imported
        "anomalib_vadproto.components.lightning",  # the models' base class, imported before any model
        "anomalib_vadproto.deploy",
    ],
)
def test_models_register_whatever_is_imported_first(first) -> None:
    proc = run_python(
        f"import {first}\nfrom anomalib.models import list_models\nprint(sorted(set(list_models()) & {set(MODELS)!r}))"
    )
    assert proc.stdout.strip() == str(sorted(MODELS))
    assert "could not be registered" not in proc.stderr


@pytest.mark.slow
def test_known_start_up_deprecation_warnings_are_filtered_and_no_others() -> None:
    code = (
        "import warnings, anomalib.models\n"  # what anomalib's CLI imports at start-up (the hook does the rest)
        "warnings.warn('Importing from timm.models.layers is deprecated', FutureWarning)\n"
        "warnings.warn('another deprecation', FutureWarning)\n"
    )
    stderr = run_python(code, "-W", "default").stderr
    assert "timm.models.layers" not in stderr
    assert "anomalib.models.components.dinov2" not in stderr
    assert "FutureWarning: another deprecation" in stderr  # other warnings still show


@pytest.mark.parametrize("argv", [["--help"], ["-h"], []])
def test_plugin_help_lists_the_plugin_commands(argv, capsys) -> None:
    main(argv)
    out = capsys.readouterr().out
    assert out.startswith("usage: anomalib-vadproto COMMAND")
    for command in PLUGIN_COMMANDS:
        assert f"\n  {command} " in out
    assert "Every other command is anomalib's (train, test, fit" in out


@pytest.mark.slow
def test_anomalib_commands_get_anomalib_help() -> None:
    out = run_python("from anomalib_vadproto.cli import main; main(['train', '--help'])").stdout
    assert "--trainer" in out and "--model" in out
