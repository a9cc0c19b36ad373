"""Model metadata: JSON round trip, embedding in ONNX, reading it back through OpenVINO, mismatch errors."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from anomalib_vadproto.components.export import embed_metadata
from anomalib_vadproto.deploy import METADATA_KEY, ModelMetadata, OpenVINOClipModel, load_clip_model, openvino_core

META = ModelMetadata(
    model="Mnad",
    clip_length=5,
    image_size=(32, 32),
    input_size=(24, 40),
    cue_weights={"psnr": 0.6, "feature_distance": 0.4},
    normal_cues=("psnr",),
    image_min=-40.0,
    image_max=-30.0,
    image_threshold=-35.0,
)


def test_json_round_trip_and_validation():
    again = ModelMetadata.from_json(META.to_json())
    assert again == META
    assert again.cue_outputs == ("cue_feature_distance", "cue_psnr")
    record = json.loads(META.to_json())
    assert record["input_size"] == [24, 40] and record["version"] == 1
    assert ModelMetadata.from_json(json.dumps({**record, "from_the_future": 1})) == META  # unknown keys ignored
    with pytest.raises(ValueError, match="format version 99"):
        ModelMetadata.from_json(json.dumps({**record, "version": 99}))
    with pytest.raises(ValueError, match=r"lacks \['clip_length'\]"):
        ModelMetadata.from_json(json.dumps({"model": "X", "image_size": [8, 8]}))
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelMetadata.from_json("{")
    with pytest.raises(ValueError, match=r"normal_cues \['PSNR'\]"):
        ModelMetadata(model="X", clip_length=2, image_size=(8, 8), cue_weights={"psnr": 1.0}, normal_cues=("PSNR",))


class TinyClipGraph(nn.Module):
    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return clip.mean(dim=(1, 2, 3, 4)), clip[:, -1].mean(dim=(1, 2, 3))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    torch.onnx.export(
        TinyClipGraph().eval(),
        (torch.zeros(2, 5, 3, 24, 40),),
        str(path),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=["pred_score", "cue_psnr"],
        dynamic_shapes=({0: torch.export.Dim("batch_size")},),
    )
    return path


def test_openvino_reads_the_metadata_embedded_in_onnx_and_checks_shapes(tiny_onnx, tmp_path):
    with pytest.raises(ValueError, match=f"no {METADATA_KEY} metadata"):
        OpenVINOClipModel(tiny_onnx)
    embed_metadata(tiny_onnx, META)
    embed_metadata(tiny_onnx, META)  # replaces, does not duplicate
    import onnx

    assert [p.key for p in onnx.load(str(tiny_onnx)).metadata_props].count(METADATA_KEY) == 1
    model = load_clip_model(tiny_onnx)
    assert isinstance(model, OpenVINOClipModel) and model.metadata == META
    assert model.clip_length == 5 and model.input_size == (24, 40)
    outputs = model(np.ones((3, 5, 3, 24, 40), dtype=np.float32))
    np.testing.assert_allclose(outputs["pred_score"], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="expects clips of shape"):
        model(np.ones((1, 4, 3, 24, 40), dtype=np.float32))

    # the IR converted from it keeps the record
    import openvino as ov

    ov.save_model(ov.convert_model(str(tiny_onnx)), str(tmp_path / "model.xml"))
    assert load_clip_model(tmp_path / "model.xml").metadata == META


def test_metadata_that_disagrees_with_the_graph_is_an_error(tiny_onnx):
    embed_metadata(tiny_onnx, ModelMetadata(**{**META.__dict__, "clip_length": 4}))
    with pytest.raises(ValueError, match="takes clips of 5 frames but its metadata says 4"):
        load_clip_model(tiny_onnx)
    embed_metadata(tiny_onnx, ModelMetadata(**{**META.__dict__, "input_size": (32, 32)}))
    with pytest.raises(ValueError, match=r"takes frames of \(24, 40\) but its metadata says \(32, 32\)"):
        load_clip_model(tiny_onnx)


def test_load_clip_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        load_clip_model(tmp_path / "missing.xml")
    (tmp_path / "model.tflite").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown model type '.tflite'"):
        load_clip_model(tmp_path / "model.tflite")


def _alternate_signal_stack_is_usable() -> bool:
    """Whether this thread's alternate signal stack is disabled or lies in mapped memory (Linux)."""
    import ctypes

    class StackT(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    stack, ss_disable = StackT(), 2
    assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack)) == 0
    if stack.ss_flags & ss_disable:
        return True
    for line in Path("/proc/self/maps").read_text().splitlines():
        low, high = (int(bound, 16) for bound in line.split()[0].split("-"))
        if low <= stack.ss_sp and stack.ss_sp + stack.ss_size <= high:
            return True
    return False


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads the memory map of a Linux process")
def test_clip_models_freed_in_creation_order_leave_a_usable_signal_stack(tiny_onnx, tmp_path):
    # An OpenVINO Core that compiles installs an alternate signal stack and, when destroyed, restores
    # the one before it; two Cores freed in creation order left the stack in freed memory, and the
    # next Python signal handler (torch's SIGCHLD handler) crashed the process with SIGSEGV.
    path = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, path)
    embed_metadata(path, META)
    first, second = OpenVINOClipModel(path), OpenVINOClipModel(path, static_batches=1)
    assert first._core is second._core is openvino_core()
    second(np.ones((2, 5, 3, 24, 40), dtype=np.float32))  # compiles a static graph too
    del first
    gc.collect()
    del second
    gc.collect()
    assert _alternate_signal_stack_is_usable()
