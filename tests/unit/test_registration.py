"""Registration with anomalib: short names, get_model/list_models, configs, no start-up cost."""

import subprocess
import sys
from pathlib import Path

import pytest
from anomalib.models import get_model, list_models
from anomalib.models.components import AnomalibModule

import anomalib_vadproto
from anomalib_vadproto import Apn, Cdda, DlanAc, LgnNet, Mnad

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize(
    ("cls", "snake"), [(Mnad, "mnad"), (DlanAc, "dlan_ac"), (LgnNet, "lgn_net"), (Apn, "apn"), (Cdda, "cdda")]
)
def test_models_are_direct_anomalib_subclasses(cls, snake):
    assert AnomalibModule in cls.__bases__
    assert snake in list_models()
    assert isinstance(get_model(snake, width=4, image_size=32), cls)
    assert isinstance(get_model(cls.__name__, width=4, image_size=32), cls)


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
    assert resolve_class_path_by_name(AnomalibModule, "DlanAc") == "anomalib_vadproto.DlanAc"


@pytest.mark.parametrize("config", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_configs_instantiate(config):
    model = AnomalibModule.from_config(config)
    assert type(model).__module__.startswith("anomalib_vadproto")


def test_version():
    assert anomalib_vadproto.__version__.count(".") == 2
