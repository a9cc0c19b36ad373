"""Every model beyond MNAD through anomalib's own CLI: train (short name), test from the run, export, parity.

MNAD has its own, more detailed CLI tests in ``test_cli.py`` and ``test_export_parity.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import anomalib_vadproto
from anomalib_vadproto.deploy import OpenVINOClipModel
from tests.conftest import TINY_MODEL_ARGS, clip_datamodule, data_args, run_cli
from tests.integration.test_cli import metric

pytestmark = pytest.mark.slow

# CLI name -> extra arguments that keep a two-epoch run tiny, and state-dict checks on the checkpoint.
MODELS = {
    "Apn": [],
    "DlanAc": ["--model.ac_epochs", "1", "--model.som_iterations", "100"],
    "LgnNet": ["--model.num_layers", "2"],
    "Cdda": ["--model.ae_epochs", "1", "--model.num_clusters", "4", "--model.kmeans_samples", "500"],
}
# The cue every model exports beside pred_score and anomaly_map (CDDA scores by regularity, not PSNR).
MAIN_CUE = {"Cdda": "cue_regularity"}


def check_checkpoint(name: str, state: dict) -> None:
    if name == "DlanAc":  # trained through both stages, M stored
        assert int(state["model.stage"]) == 1
        assert int(state["model.dlan.num_kept"]) == int(state["model.clusterer.m"]) >= 1
    if name == "LgnNet":  # memory items are buffers, saved
        assert state["model.memory.items"].shape == (10, 32)
    if name == "Cdda":  # k-means ran at the switch: alternating stage, centres of unit-norm features stored
        assert int(state["model.stage"]) == 1
        assert state["model.clusters.motion.centres"].shape == (4, 32)


@pytest.fixture(scope="module", params=sorted(MODELS))
def cli_run(request, synthetic_root, tmp_path_factory):
    name = request.param
    work = tmp_path_factory.mktemp(name)
    proc = run_cli(
        [
            "train",
            "--model",
            name,
            *TINY_MODEL_ARGS,
            *MODELS[name],
            *data_args(synthetic_root),
            "--trainer.max_epochs",
            "2",
            "--default_root_dir",
            str(work),
        ],  # fmt: skip
        cwd=work,
    )
    ckpt = next(work.rglob("model.ckpt"))
    return {"name": name, "ckpt": ckpt, "config": ckpt.parents[2] / "config.yaml", "stdout": proc.stdout}


def test_train_reports_both_protocols_and_test_reproduces(cli_run, tmp_path):
    check_checkpoint(cli_run["name"], torch.load(cli_run["ckpt"], map_location="cpu", weights_only=False)["state_dict"])
    for name in ("image_AUROC", "protocol_AUC_micro", "protocol_AUC_macro"):
        assert 0.0 <= metric(cli_run["stdout"], name) <= 1.0
    if cli_run["name"] == "Apn":  # APN reports the protocol with and without the code's temporal smoothing
        smoothed = metric(cli_run["stdout"], "protocol_smoothed_AUC_micro")
        assert 0.0 <= smoothed <= 1.0
    proc = run_cli(
        [
            "test",
            "--config",
            str(cli_run["config"]),
            "--ckpt_path",
            str(cli_run["ckpt"]),
            "--default_root_dir",
            str(tmp_path),
        ],  # fmt: skip
        cwd=tmp_path,
    )
    for name in ("image_AUROC", "protocol_AUC_micro"):
        assert metric(proc.stdout, name) == pytest.approx(metric(cli_run["stdout"], name), abs=1e-6)


def test_export_openvino_matches_pytorch(cli_run, synthetic_root, tmp_path):
    run_cli(
        [
            "export",
            "--model",
            cli_run["name"],
            "--export_type",
            "openvino",
            "--input_size",
            "[48,64]",  # the synthetic frames' raw size: the graph resizes, as in deployment
            "--ckpt_path",
            str(cli_run["ckpt"]),
            "--default_root_dir",
            str(tmp_path),
        ],  # fmt: skip
        cwd=tmp_path,
    )
    xml = tmp_path / "weights" / "openvino" / "model.xml"
    assert xml.is_file()
    model = getattr(anomalib_vadproto, cli_run["name"]).load_from_checkpoint(cli_run["ckpt"], map_location="cpu")
    data = clip_datamodule(synthetic_root)
    data.setup()
    clips = torch.cat([batch.image for batch in data.test_dataloader()])[:6]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with model.read_only_eval(), torch.no_grad():
        reference = model.predict_clip(clips)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # read-only: nothing moved
    outputs = OpenVINOClipModel(xml)(clips.numpy())
    assert set(outputs) == set(reference) >= {"pred_score", "anomaly_map", MAIN_CUE.get(cli_run["name"], "cue_psnr")}
    for key, value in reference.items():
        if key == "cue_regularity":  # 1 / (E_rec · D_m · D_a): large values, compared relatively
            np.testing.assert_allclose(outputs[key], value.numpy(), rtol=1e-3, err_msg=key)
        elif key.startswith("cue_") or key in ("pred_score", "anomaly_map"):
            atol = 1e-3 if key in ("cue_psnr", "pred_score") else 1e-4  # PSNR in dB
            np.testing.assert_allclose(outputs[key], value.numpy(), atol=atol, err_msg=key)
