"""Clear, early errors and warnings: image sizes, foreign checkpoints, incomplete data, no data, untrained tests."""

from __future__ import annotations

import shutil
import sys
import warnings

import pytest
import torch

from anomalib_vadproto.errors import (
    TRACEBACK_ENV,
    CheckpointMismatchError,
    DatasetLayoutError,
    InvalidArgumentError,
    MissingDataError,
    UntrainedModelWarning,
    UsageError,
    install_cli_excepthook,
)

TINY = {"grayscale": True, "width": 4}


def model_class(name: str):
    import anomalib_vadproto

    return getattr(anomalib_vadproto, name)


# ---------------------------------------------------------------------- 1. image_size multiples
# (model, required multiple, a refused size, the nearest valid sizes the message must name)
SIZES = [
    ("Mnad", 8, [100, 100], "[96, 96] or [104, 104]"),
    ("DlanAc", 8, [100, 100], "[96, 96] or [104, 104]"),
    ("LgnNet", 8, [100, 100], "[96, 96] or [104, 104]"),
    ("Apn", 4, [98, 98], "[96, 96] or [100, 100]"),
    ("Cdda", 16, [100, 100], "[96, 96] or [112, 112]"),
]


@pytest.mark.parametrize(("name", "multiple", "size", "nearest"), SIZES)
def test_image_size_of_the_wrong_multiple_is_refused_at_construction(name, multiple, size, nearest):
    cls = model_class(name)
    with pytest.raises(ValueError, match="image_size") as info:
        cls(image_size=size, **TINY)
    message = str(info.value)
    assert f"multiples of {multiple} for {name}" in message and str(size) in message and nearest in message
    assert isinstance(info.value, InvalidArgumentError) and cls.size_multiple == multiple


def test_nearest_sizes_keep_valid_sides_and_respect_the_minimum():
    from anomalib_vadproto.components.lightning import as_size

    assert as_size([96, 64], 8) == (96, 64) and as_size(48, 16) == (48, 48)
    with pytest.raises(InvalidArgumentError, match=r"\[96, 96\] or \[96, 104\]"):
        as_size([96, 100], 8)
    with pytest.raises(InvalidArgumentError, match=r"nearest valid sizes are \[16, 16\]:"):  # 0 is no size
        as_size(12, 16)


@pytest.mark.parametrize(("name", "multiple", "size", "nearest"), SIZES)
def test_size_multiple_is_what_the_network_needs(name, multiple, size, nearest):
    """The smallest accepted sizes run forward; half a multiple more fails in the network itself."""
    del size, nearest
    module = model_class(name)(image_size=[2 * multiple, 3 * multiple], **TINY)
    net = module.model.train()
    with torch.no_grad():
        for height, width in ((2 * multiple, 3 * multiple), (3 * multiple, 2 * multiple)):
            net(torch.rand(2, module.clip_length, 1, height, width))
        with pytest.raises((RuntimeError, ValueError)):
            net(torch.rand(2, module.clip_length, 1, 2 * multiple + multiple // 2, 3 * multiple))


# ---------------------------------------------------------------------- 2. checkpoints of another model
@pytest.fixture(scope="module")
def mnad_checkpoint(tmp_path_factory) -> dict:
    """A checkpoint written by Lightning for a tiny, untrained Mnad (no data needed)."""
    from lightning.pytorch import Trainer

    path = tmp_path_factory.mktemp("ckpt") / "mnad.ckpt"
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=path.parent)
    trainer.strategy.connect(model_class("Mnad")(image_size=32, **TINY))
    trainer.save_checkpoint(path)
    return torch.load(path, weights_only=False, map_location="cpu")


@pytest.mark.parametrize("with_name", [True, False], ids=["named", "older-checkpoint"])
def test_checkpoint_of_another_model_is_refused_by_name(mnad_checkpoint, with_name):
    key = "anomalib_vadproto_model"
    checkpoint = {k: v for k, v in mnad_checkpoint.items() if k != key}  # older checkpoints: hyper_parameters only
    if with_name:
        assert mnad_checkpoint[key] == "Mnad"  # what on_save_checkpoint records
        checkpoint[key] = mnad_checkpoint[key]
    for target in ("DlanAc", "Cdda"):
        model = model_class(target)(image_size=32, **TINY)
        with pytest.raises(CheckpointMismatchError) as info:
            model.on_load_checkpoint(checkpoint)
        assert str(info.value).startswith(f"this checkpoint holds a Mnad model, not {target}; use --model Mnad")


def test_checkpoint_of_the_same_model_still_loads_or_names_the_differing_arguments(mnad_checkpoint):
    same = model_class("Mnad")(image_size=32, **TINY)
    same.on_load_checkpoint(dict(mnad_checkpoint))  # no error
    assert same._trained
    wider = model_class("Mnad")(image_size=32, grayscale=True, width=8)
    with pytest.raises(CheckpointMismatchError, match="checkpoint was trained with width=4") as info:
        wider.on_load_checkpoint(dict(mnad_checkpoint))
    assert "holds a" not in str(info.value)


# ---------------------------------------------------------------------- 3. incomplete UCSD ground truth
def test_missing_or_short_ground_truth_is_refused_at_prepare_data(synthetic_root, tmp_path):
    from anomalib_vadproto import LocalUCSDped

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    datamodule = LocalUCSDped(root=root, category="synthetic", clip_length_in_frames=5, num_workers=0)
    datamodule.prepare_data()  # complete: no error
    test = root / "synthetic" / "Test"
    sorted((test / "Test002_gt").glob("*.bmp"))[-1].unlink()
    with pytest.raises(FileNotFoundError, match=r"Test002_gt holds 15 \.bmp masks for the 16 \.tif frames") as info:
        datamodule.prepare_data()
    assert isinstance(info.value, DatasetLayoutError)
    shutil.rmtree(test / "Test001_gt")
    with pytest.raises(FileNotFoundError, match=r"Test001 has no ground-truth folder .*Test001_gt"):
        datamodule.prepare_data()  # the first missing one, in sorted order


def test_video_datamodule_layout_errors_are_usage_errors(tmp_path):
    """Avenue and ShanghaiTech already refuse a missing ground-truth file; their errors are one-line ones too."""
    from anomalib_vadproto import LocalAvenue, LocalShanghaiTech

    with pytest.raises(DatasetLayoutError, match="No Avenue dataset"):
        LocalAvenue(root=tmp_path / "nowhere", gt_dir=tmp_path / "gt").prepare_data()
    with pytest.raises(DatasetLayoutError, match="No ShanghaiTech dataset"):
        LocalShanghaiTech(root=tmp_path / "nowhere").prepare_data()


# ---------------------------------------------------------------------- 4. one-line CLI errors
@pytest.fixture
def hook(monkeypatch):
    """Install the CLI hook over a recording stand-in for rich's; ``sys.excepthook`` is restored afterwards."""
    calls = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: calls.append(args[1]))
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    assert install_cli_excepthook() and not install_cli_excepthook()  # idempotent
    return calls


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_usage_errors_print_one_line_and_everything_else_its_traceback(hook, capsys, monkeypatch):
    error = raised(DatasetLayoutError("No dataset at /nowhere:\n expected Train/."))
    sys.excepthook(type(error), error, error.__traceback__)
    assert (
        capsys.readouterr().err
        == f"error: No dataset at /nowhere: expected Train/. (set {TRACEBACK_ENV}=1 for the traceback)\n"
    )
    assert hook == []
    bug = raised(FileNotFoundError("a genuine bug"))  # the built-in type alone is not ours
    sys.excepthook(type(bug), bug, bug.__traceback__)
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    sys.excepthook(type(error), error, error.__traceback__)
    assert hook == [bug, error] and capsys.readouterr().err == ""


def test_jsonargparse_instantiation_wrapper_of_a_usage_error_is_shortened(hook, capsys):
    """anomalib's CLI instantiates --model through jsonargparse, which re-raises a ValueError of its own."""
    from anomalib.models import AnomalibModule
    from jsonargparse import ArgumentParser

    model_class("Mnad")  # registered as an AnomalibModule
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=AnomalibModule | None)  # as anomalib's CLI: None or a model
    config = parser.parse_args(["--model", "Mnad", "--model.image_size", "[100,100]", "--model.width", "4"])
    with pytest.raises(ValueError, match="Does not validate") as info:
        parser.instantiate_classes(config)
    assert not isinstance(info.value, UsageError)
    sys.excepthook(info.type, info.value, info.tb)
    err = capsys.readouterr().err
    assert err.startswith("error: image_size must be multiples of 8 for Mnad") and err.count("\n") == 1
    assert hook == []


def test_unknown_model_name_is_refused_in_one_line_with_the_valid_names(capsys):
    from anomalib_vadproto.cli import check_model_name

    for accepted in (["train", "--model", "DlanAc"], ["test", "--model=anomalib_vadproto.DlanAc"], ["train"]):
        check_model_name(accepted)
    with pytest.raises(SystemExit) as info:
        check_model_name(["train", "--model", "dlan_ac", "--data", "LocalUCSDped"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model dlan_ac is not a model class name; use --model DlanAc.")
    assert err.count("\n") == 1 and "Mnad" in err and "Padim" in err


def test_fit_without_data_is_refused_before_training(tmp_path):
    from lightning.pytorch import Trainer

    model = model_class("DlanAc")(image_size=32, **TINY)
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(MissingDataError, match="DlanAc has no training data: give a datamodule, e.g. --data"):
        trainer.fit(model)
    assert trainer.global_step == 0


# ---------------------------------------------------------------------- 5. testing an untrained model
def test_testing_an_untrained_model_warns_once(synthetic_root, tmp_path):
    from anomalib.engine import Engine

    from tests.conftest import clip_datamodule

    model = model_class("Mnad")(image_size=32, **TINY)
    engine = Engine(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, limit_test_batches=1)
    with pytest.warns(UntrainedModelWarning, match="Mnad is being tested untrained") as record:
        engine.test(model, datamodule=clip_datamodule(synthetic_root))
        model.on_test_start()  # a second test of the same model: no second warning
    assert sum(issubclass(w.category, UntrainedModelWarning) for w in record) == 1


@pytest.mark.parametrize("trained_by", ["on_fit_end", "on_load_checkpoint"])
def test_fitted_or_loaded_models_do_not_warn(mnad_checkpoint, trained_by):
    model = model_class("Mnad")(image_size=32, **TINY)
    if trained_by == "on_fit_end":
        model.on_fit_end()
    else:
        model.on_load_checkpoint(dict(mnad_checkpoint))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedModelWarning)
        model.on_test_start()
