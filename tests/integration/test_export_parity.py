"""OpenVINO vs PyTorch on the same clips, and export leaves the live model's state untouched."""

import numpy as np
import pytest
import torch
from anomalib.deploy import ExportType
from anomalib.engine import Engine

from anomalib_vadproto import Mnad
from anomalib_vadproto.deploy import OpenVINOClipModel, openvino_core
from tests.conftest import clip_datamodule

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(synthetic_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("parity")
    datamodule = clip_datamodule(synthetic_root)
    # gamma = 1 lets every test clip update the memory (a 1-epoch model is far from the paper's 0.01)
    model = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0, gamma=1.0)
    engine = Engine(max_epochs=1, default_root_dir=work, logger=False)
    engine.fit(model=model, datamodule=datamodule)
    engine.test(model=model, datamodule=datamodule)  # test-time memory has evolved over the test set
    return model, engine, datamodule, work


def test_openvino_matches_pytorch_and_export_is_read_only(fitted):
    model, engine, datamodule, work = fitted
    memory = model.model.memory
    trained = memory.items.clone()
    evolved = memory.current_items(test_time=True).clone()
    assert not torch.equal(trained, evolved), "the gated test-time update should have run during test"
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # Engine.fit on CPU left the weights channels-last (use_preferred_memory_format): export must cope
    assert any(p.dim() == 4 and not p.is_contiguous() for p in model.model.parameters())

    xml = engine.export(model=model, export_type=ExportType.OPENVINO, export_root=work / "export")

    # exporting changed nothing: trained items, test-time items, every buffer and parameter
    assert torch.equal(memory.items, trained)
    assert torch.equal(memory.current_items(test_time=True), evolved)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())

    clips = torch.cat([batch.image for batch in datamodule.test_dataloader()])[:10]
    ov_model = OpenVINOClipModel(xml)
    assert ov_model.clip_length == 5
    # FP32 by default, also where OpenVINO's CPU plugin would pick bf16 (CPUs with bf16 instructions)
    assert str(ov_model.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    outputs = ov_model(clips.numpy())
    with model.read_only_eval(), torch.no_grad():
        reference = model.predict_clip(clips)
    assert (
        set(outputs)
        == set(reference)
        >= {"pred_score", "pred_label", "anomaly_map", "pred_mask", "cue_psnr", "cue_feature_distance"}
    )
    for name in ("pred_score", "anomaly_map", "cue_feature_distance"):
        np.testing.assert_allclose(outputs[name], reference[name].numpy(), atol=1e-4, err_msg=name)
    np.testing.assert_allclose(outputs["cue_psnr"], reference["cue_psnr"].numpy(), atol=1e-3)  # dB
    # the graph is read-only: the same clips give the same scores twice
    np.testing.assert_array_equal(ov_model(clips.numpy())["pred_score"], outputs["pred_score"])
    # dynamic batch
    assert ov_model(clips[:3].numpy())["pred_score"].shape == (3,)


def test_openvino_input_checks(fitted, tmp_path):
    model, engine, _, work = fitted
    xml = next((work / "export").rglob("model.xml"))
    ov_model = OpenVINOClipModel(xml)
    with pytest.raises(ValueError, match="expects clips of shape"):
        ov_model(np.zeros((1, 4, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="precision must be one of"):
        OpenVINOClipModel(xml, precision="int4")
    with pytest.raises(FileNotFoundError, match="No OpenVINO model"):
        OpenVINOClipModel(tmp_path / "missing.xml")


def test_static_batch_graphs_match_the_dynamic_graph(fitted):
    _, _, datamodule, work = fitted
    xml = next((work / "export").rglob("model.xml"))
    clips = torch.cat([batch.image for batch in datamodule.test_dataloader()])[:7].numpy()
    dynamic = OpenVINOClipModel(xml, static_batches=0)
    static = OpenVINOClipModel(xml, static_batches=2)
    assert dynamic.compiled_for(3) is dynamic.compiled  # no static graphs: every call runs the exported one
    expected = dynamic(clips)
    # sizes 3 and 1 get their own static graphs, size 2 (a third size) runs on the dynamic graph
    got = {name: np.concatenate(parts) for name, parts in _scored_in_batches(static, clips, (3, 1, 2, 1)).items()}
    assert sorted(static._static) == [1, 3]
    assert static.compiled_for(2) is static.compiled
    assert static.compiled_for(3).input(0).get_partial_shape().is_static
    for name in ("pred_score", "anomaly_map", "cue_psnr", "cue_feature_distance"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="static_batches must be >= 0"):
        OpenVINOClipModel(xml, static_batches=-1)


def _scored_in_batches(model, clips, sizes):
    outputs: dict[str, list[np.ndarray]] = {}
    start = 0
    for size in sizes:
        for name, value in model(clips[start : start + size]).items():
            outputs.setdefault(name, []).append(value)
        start += size
    assert start == len(clips)
    return outputs


def test_onnx_export_keeps_training_mode_and_state(fitted, tmp_path):
    model = fitted[0]
    model.train()
    before = model.model.memory.items.clone()
    model.to_onnx(tmp_path)
    assert model.training and model.model.training
    assert torch.equal(model.model.memory.items, before)
    assert model.model.read_only is False


def test_int8_ptq_keeps_the_layers_next_to_the_outputs_in_fp32(fitted, tmp_path):
    from anomalib.deploy import CompressionType

    from anomalib_vadproto.components.export import output_layers

    model, _, datamodule, _ = fitted
    fp32 = model.to_openvino(tmp_path / "fp32")
    int8 = model.to_openvino(tmp_path / "int8", compression_type=CompressionType.INT8_PTQ, datamodule=datamodule)
    core = openvino_core()
    kept = output_layers(core.read_model(str(fp32)), model.int8_fp32_depth)
    ops = {op.get_friendly_name(): op for op in core.read_model(str(int8)).get_ordered_ops()}

    def eight_bit(node, hops: int = 4) -> bool:  # a FakeQuantize or int8 weights within a few hops
        if node.get_type_name() == "FakeQuantize":
            return True
        if node.get_type_name() == "Constant":
            return str(node.get_output_element_type(0)) in ("<Type: 'int8_t'>", "<Type: 'uint8_t'>", "i8", "u8")
        return (
            hops > 0
            and node.get_type_name() in ("Convert", "Subtract", "Multiply", "Reshape")
            and any(eight_bit(value.get_source_output().get_node(), hops - 1) for value in node.inputs())
        )

    def quantised(op) -> bool:
        return any(eight_bit(value.get_source_output().get_node()) for value in op.inputs())

    assert model.int8_fp32_depth >= 1 and kept
    assert all(name in ops and not quantised(ops[name]) for name in kept)
    others = [op for name, op in ops.items() if op.get_type_name() == "Convolution" and name not in kept]
    assert sum(quantised(op) for op in others) >= len(others) // 2  # the rest of the network runs in INT8
    clips = torch.cat([batch.image for batch in datamodule.test_dataloader()])[:4].numpy()
    outputs, reference = OpenVINOClipModel(int8)(clips), OpenVINOClipModel(fp32)(clips)
    assert np.isfinite(outputs["cue_psnr"]).all()
    np.testing.assert_allclose(outputs["cue_psnr"], reference["cue_psnr"], atol=3.0)  # dB; 8-bit, not equal
