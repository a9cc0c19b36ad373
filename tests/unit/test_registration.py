"""Registration with anomalib: short names, get_model/list_models, configs, no start-up cost."""

import subprocess
import sys
from pathlib import Path

import pytest
from anomalib.models import get_model, list_models
from anomalib.models.components import AnomalibModule

import anomalib_vadproto
from anomalib_vadproto import Mnad

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_models_are_direct_anomalib_subclasses():
    assert AnomalibModule in Mnad.__bases__
    assert "mnad" in list_models()
    model = get_model("mnad", width=4, image_size=32)
    assert isinstance(model, Mnad)
    assert isinstance(get_model("Mnad", width=4, image_size=32), Mnad)


def test_importing_anomalib_models_registers_the_plugin_in_a_fresh_interpreter():
    assert run_python("import sys, anomalib.models; print('anomalib_vadproto' in sys.modules)") == "True"
    assert run_python("from anomalib.models import list_models; print('mnad' in list_models())") == "True"


def test_python_start_up_imports_nothing_heavy():
    out = run_python(
        "import sys; print(sorted(m for m in ('torch', 'anomalib', 'anomalib_vadproto') if m in sys.modules))"
    )
    assert out == "[]"


def test_short_name_resolves_through_jsonargparse():
    from jsonargparse._typehints import resolve_class_path_by_name

    assert resolve_class_path_by_name(AnomalibModule, "Mnad") == "anomalib_vadproto.Mnad"


@pytest.mark.parametrize("config", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_configs_instantiate(config):
    model = AnomalibModule.from_config(config)
    assert type(model).__module__.startswith("anomalib_vadproto")


def test_version():
    assert anomalib_vadproto.__version__.count(".") == 2
