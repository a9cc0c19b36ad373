"""The fast training step (issue 31): compiled steps equal eager ones, no host reads, the options and their defaults.

The compiled-versus-eager checks run the models' own training steps (Lightning's ``training_step``, or CDDA's
``optimisation_step`` with its two optimisers) from the same seed and weights, with ``torch.compile``'s
``aot_eager`` backend (Dynamo's capture and AOT autograd, the parts that decide what a compiled step computes,
without code generation) for all five models, and one run through inductor (APN, which has no batch norm: in
the tiny random networks a batch norm over nearly constant channels makes eager FP32 itself inaccurate).
"""

from __future__ import annotations

import contextlib
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.engine import Engine
from anomalib.models import get_model
from torch._dynamo.backends.registry import lookup_backend
from torch._dynamo.utils import counters

from anomalib_vadproto.components import fast
from anomalib_vadproto.components.fast import AUTO_CUDA_MODE, CompileOptions, adam_kwargs
from tests.conftest import clip_datamodule

TINY = {"image_size": (32, 32), "grayscale": True, "width": 4, "seed": 0}
EXTRA = {
    "mnad": {},
    "lgn_net": {"num_layers": 2, "test_update": "per_clip"},  # also covers the clip-by-clip scoring, compiled
    "apn": {},
    "dlan_ac": {"som_iterations": 50},
    "cdda": {"num_clusters": 4, "kmeans_samples": 200, "kmeans_restarts": 1},
}
RTOL, ATOL = 1e-4, 1e-6


class CountingBackend:
    """``aot_eager`` that counts the graphs Dynamo hands it (0 would mean the "compiled" run was eager)."""

    def __init__(self, inner: str = "aot_eager") -> None:
        self.inner, self.graphs = lookup_backend(inner), 0

    def __call__(self, graph, example_inputs):  # noqa: ANN001, ANN204
        self.graphs += 1
        return self.inner(graph, example_inputs)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Every test compiles afresh (Dynamo's caches live on the functions' code, shared across models)."""
    torch._dynamo.reset()  # noqa: SLF001
    yield
    torch._dynamo.reset()  # noqa: SLF001


def clips(model, count: int, batch: int = 4, seed: int = 1) -> list[torch.Tensor]:  # noqa: ANN001
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, model.clip_length, 1, 32, 32, generator=generator) * 2 - 1 for _ in range(count)]


def optimiser_of(model):  # noqa: ANN001, ANN201
    config = model.configure_optimizers()
    return config["optimizer"] if isinstance(config, dict) else config


def snapshot(value):  # noqa: ANN001, ANN201
    """Detached copies of the tensors in ``value`` (nested tuples, dicts, NamedTuples)."""
    return torch.utils._pytree.tree_map(lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, value)  # noqa: SLF001


def lightning_steps(model, batches: list[torch.Tensor], record: list) -> None:  # noqa: ANN001
    """Lightning's automatic optimisation, step by step: training_step, backward, optimiser step."""
    optimiser = optimiser_of(model)
    for index, clip in enumerate(batches):
        optimiser.zero_grad()
        loss = model.training_step(SimpleNamespace(image=clip), index)
        loss.backward()
        optimiser.step()
        record.append(("loss", loss.detach().clone()))


def train(snake: str, backend=None) -> tuple[object, list]:  # noqa: ANN001
    """Build a tiny model (seed 0), compile it with ``backend`` (``None``: eager), train, score; record everything."""
    model = get_model(snake, **TINY, **EXTRA[snake])
    if backend is not None:
        model.model.compile_options = CompileOptions(backend=backend)
    record: list = []
    model.log_losses = lambda losses, batch_size: record.append(("logged", snapshot(dict(losses))))
    batches = clips(model, 3)
    if snake in ("mnad", "lgn_net", "apn"):
        lightning_steps(model, batches, record)
        if snake != "apn":
            record.append(("memory items", snapshot(model.model.memory.items)))
    elif snake == "dlan_ac":
        lightning_steps(model, batches[:2], record)  # stage 1: the clusterer is fitted eagerly after each step
        clusterer = model.model.clusterer
        record.append(("SOM", snapshot((clusterer.weights, clusterer.m, clusterer.z_sum))))
        model.model.start_dlan_stage()  # the switch (Lightning then rebuilds the optimiser, as lightning_steps does)
        record.append(("DLAN after the switch", snapshot(model.model.dlan.state_dict())))
        lightning_steps(model, batches[1:], record)  # stage 2: the compiled step recompiles once for it
        model.model.eval()
        with torch.no_grad():
            record.append(("prototypes", snapshot(model.model._forward(batches[0]).prototypes)))  # noqa: SLF001
        model.model.train()
    else:  # cdda: manual optimisation with two optimisers
        model._samples = {name: [] for name in model.model.clusters}  # noqa: SLF001 - the last pre-training epoch
        autoencoders, centres = model.configure_optimizers()
        record.append(("pretraining", snapshot(model.optimisation_step(batches[0], autoencoders, centres))))
        model.start_alternating()  # k-means on the gathered features
        record.append(("k-means centres", snapshot(model.model.clusters.state_dict())))
        autoencoders, centres = model.configure_optimizers()  # rebuilt at the switch, as in Lightning
        for clip in batches[1:]:
            record.append(("alternating", snapshot(model.optimisation_step(clip, autoencoders, centres))))
            record.append(("centres after the centre step", snapshot(model.model.clusters.state_dict())))
    record.append(("state", snapshot(model.model.state_dict())))
    model.model.eval()
    model.model.reset_test_state()
    with torch.no_grad():
        for clip in clips(model, 2, seed=2):
            record.append(("score", snapshot(model.model.score(clip))))
            if snake in ("mnad", "lgn_net"):
                record.append(("test-time items", snapshot(model.model.memory.current_items(test_time=True))))
    return model, record


def assert_same_records(compiled: list, eager: list) -> None:
    assert [name for name, _ in compiled] == [name for name, _ in eager]
    for (name, value), (_, reference) in zip(compiled, eager, strict=True):
        torch.testing.assert_close(value, reference, rtol=RTOL, atol=ATOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("snake", list(EXTRA))
def test_compiled_training_steps_equal_eager_ones_and_keep_the_state_right(snake):
    model, eager = train(snake)
    backend = CountingBackend()
    counters.clear()
    compiled_model, compiled = train(snake, backend)
    # one graph per compiled function and stage: the training step (DLAN-AC and CDDA: per stage; CDDA: and the
    # centre step) and the scoring, none broken (state updates sit between the compiled calls)
    assert backend.graphs == {"dlan_ac": 3, "cdda": 4}.get(snake, 2)
    assert not counters["graph_break"]
    assert_same_records(compiled, eager)
    # the state really moved (a comparison of two untouched states would prove nothing)
    state = dict(eager)["state"]
    fresh = get_model(snake, **TINY, **EXTRA[snake]).model.state_dict()
    assert any(not torch.equal(state[key], fresh[key]) for key in fresh if state[key].is_floating_point())
    if snake in ("mnad", "lgn_net"):
        assert not torch.equal(dict(eager)["memory items"], fresh["memory.items"]), "the memory was updated"
    if snake == "dlan_ac":
        assert model.model.in_dlan_stage and compiled_model.model.in_dlan_stage
        som = dict(eager)["SOM"]
        assert int(som[1]) >= 1 and not torch.equal(som[0], fresh["clusterer.weights"]), "the SOM was fitted"
    if snake == "cdda":
        after_steps = [value for name, value in eager if name == "centres after the centre step"]
        assert not torch.equal(after_steps[-1]["motion.centres"], dict(eager)["k-means centres"]["motion.centres"])


@pytest.mark.slow
def test_inductor_training_step_equals_the_eager_one():
    """One model through inductor's generated code (CPU C++ kernels): APN, three AdamW steps, then scoring."""
    _, eager = train("apn")
    _, compiled = train("apn", "inductor")
    assert_same_records(compiled, eager)


@pytest.mark.slow
@pytest.mark.parametrize("snake", ["dlan_ac", "cdda"])
def test_compiled_fit_through_the_engine_ends_where_the_eager_fit_does(snake, synthetic_root, tmp_path):
    """Lightning's loop around the compiled steps: stage switch, optimisers rebuilt, compiled validation and test."""
    first_stage = {"dlan_ac": {"ac_epochs": 1, "som_iterations": 50}, "cdda": {"ae_epochs": 1, **EXTRA["cdda"]}}
    results = {}
    for compiled in (False, True):
        torch._dynamo.reset()  # noqa: SLF001
        model = get_model(snake, **TINY, **first_stage[snake])
        backend = CountingBackend()
        if compiled:
            model.model.compile_options = CompileOptions(backend=backend)
        engine = Engine(
            max_epochs=2,
            limit_train_batches=3,
            logger=False,
            default_root_dir=tmp_path / str(compiled),
            enable_progress_bar=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the shortened tiny run's notices
            engine.fit(model=model, datamodule=clip_datamodule(synthetic_root))
            engine.test(model=model, datamodule=clip_datamodule(synthetic_root))
        assert (backend.graphs >= 4) is compiled  # both stages' steps and the scoring
        results[compiled] = (snapshot(model.model.state_dict()), model.protocol_result.all_scores)
    (eager_state, eager_scores), (state, scores) = results[False], results[True]
    assert int(state["stage"]) == 1  # the run reached the second stage
    torch.testing.assert_close(state, eager_state, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(scores, eager_scores, rtol=RTOL, atol=ATOL)


def test_cuda_graph_calls_start_a_step_and_return_copies(monkeypatch):
    """Under CUDA graphs an output is overwritten by the next replay: the wrapper marks steps and copies outputs."""
    steps = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)  # the wrapper's logic alone
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    module = torch.nn.Linear(2, 2)
    module.compile_options = CompileOptions(mode="reduce-overhead")
    kept = torch.ones(3)

    def fn(module, x):  # noqa: ANN001, ANN202
        return kept, {"double": 2 * x, "none": None}

    out, extra = fast.maybe_compiled(module, fn, torch.device("cuda", 0))(module, torch.ones(2))
    assert steps == [1] and torch.equal(out, kept) and out.data_ptr() != kept.data_ptr() and extra["none"] is None
    plain = fast.maybe_compiled(module, fn, torch.device("cpu"))(module, torch.ones(2))[0]  # CPU: no CUDA graphs
    assert plain is kept and steps == [1]


# ---------------------------------------------------------------------------------------------- no host reads
@pytest.fixture
def meta_autocast(monkeypatch):
    """``torch.autocast`` on the meta device is a no-op (PyTorch has no autocast there; nothing else changes)."""
    real = torch.autocast

    def autocast(device_type, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        return contextlib.nullcontext() if device_type == "meta" else real(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", autocast)


class NoOptimiser:
    def zero_grad(self) -> None:
        pass

    def step(self) -> None:
        pass


@pytest.mark.parametrize("snake", list(EXTRA))
def test_training_step_reads_no_tensor_on_the_host(snake, meta_autocast):
    """On the meta device every host read (``.item()``, ``bool()``, ``.tolist()``, ``.cpu()``, a boolean mask,
    ``F.one_hot``'s range check) raises: a training step that runs there never waits for the GPU.

    DLAN-AC is checked in stage 2 (stage 1 fits its clusterer on the host by design), CDDA in both stages.
    """
    model = get_model(snake, **TINY, **EXTRA[snake])
    clip = clips(model, 1, batch=2)[0]
    if snake == "dlan_ac":
        model.model.clusterer.fit_batch(model.model(clip).features.detach())
        model.model.start_dlan_stage()
    model.log_losses = lambda losses, batch_size: None
    model.to("meta")
    meta_clip = clip.to("meta")
    with pytest.raises(RuntimeError, match="meta"):
        bool(meta_clip.sum() > 0)  # the premise: a host read fails on meta
    if snake == "cdda":
        model._samples = {name: [] for name in model.model.clusters}  # noqa: SLF001 - pre-training, gathering
        losses = model.optimisation_step(meta_clip, NoOptimiser(), NoOptimiser())
        assert all(chunks[0].is_meta for chunks in model._samples.values())  # noqa: SLF001
        model._samples = {}  # noqa: SLF001
        model.model.initialise_centres({n: F.normalize(torch.rand(4, 32), dim=1) for n in model.model.clusters})
        losses = model.optimisation_step(meta_clip, NoOptimiser(), NoOptimiser())
        assert {"cluster", "ae_cluster"} <= set(losses)
        return
    loss = model.training_step(SimpleNamespace(image=meta_clip), 0)
    loss.backward()
    assert loss.is_meta and all(p.grad is None or p.grad.is_meta for p in model.parameters())
    if snake in ("mnad", "lgn_net"):
        assert model.model.memory.items.is_meta  # the update ran, as tensors


# ---------------------------------------------------------------------------------------------- test-time update
def scores_in_batches(snake: str, test_update: str, batch: int) -> tuple[dict, torch.Tensor]:
    arguments = {**TINY, **EXTRA[snake], "gamma": 1.0, "test_update": test_update}  # γ = 1: every clip updates
    model = get_model(snake, **arguments)
    model.model.eval()
    model.model.reset_test_state()
    data = torch.cat(clips(model, 2))  # 8 clips
    outputs = []
    with torch.no_grad():
        for part in data.split(batch):
            predictions, cues = model.model.score(part)
            outputs.append({"pred_score": predictions.pred_score, "anomaly_map": predictions.anomaly_map, **cues})
    merged = {name: torch.cat([o[name] for o in outputs]) for name in outputs[0]}
    return merged, model.model.memory.current_items(test_time=True).clone()


@pytest.mark.parametrize("snake", ["mnad", "lgn_net"])
def test_per_clip_update_in_batches_of_4_scores_exactly_as_batch_1(snake):
    per_clip, items = scores_in_batches(snake, "per_clip", batch=4)
    batch_one, items_one = scores_in_batches(snake, "per_batch", batch=1)
    per_batch, _ = scores_in_batches(snake, "per_batch", batch=4)
    assert set(per_clip) == set(batch_one) and per_clip["pred_score"].shape == (8,)
    for name, value in batch_one.items():
        assert torch.equal(per_clip[name], value), name
    assert torch.equal(items, items_one)
    # the premise: within a batch of 4, "per_batch" clips do not see each other's updates, so the scores differ
    assert not torch.equal(per_batch["feature_distance"], batch_one["feature_distance"])


@pytest.mark.slow
def test_per_clip_engine_test_with_eval_batch_4_equals_eval_batch_1(synthetic_root, tmp_path):
    """Through anomalib's Engine: the protocol scores of a test at eval batch 4 (per_clip) and 1 (per_batch)."""
    scores = {}
    for test_update, batch in (("per_clip", 4), ("per_batch", 1), ("per_batch", 4)):
        model = get_model("mnad", **TINY, gamma=1.0, test_update=test_update)
        engine = Engine(logger=False, default_root_dir=tmp_path / f"{test_update}{batch}", enable_progress_bar=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tested untrained: the scores only need to be comparable
            engine.test(model=model, datamodule=clip_datamodule(synthetic_root, eval_batch_size=batch))
        scores[test_update, batch] = model.protocol_result.all_scores
    np.testing.assert_array_equal(scores["per_clip", 4], scores["per_batch", 1])
    assert not np.array_equal(scores["per_batch", 4], scores["per_batch", 1])


def test_test_update_is_checked():
    with pytest.raises(ValueError, match="test_update"):
        get_model("mnad", **TINY, test_update="per_video")


# ---------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("snake", list(EXTRA))
def test_fast_options_are_off_by_default(snake):
    model = get_model(snake, **TINY)
    assert model.model.compile_options is None and not model.channels_last and not model.log_step_losses
    if snake in ("mnad", "lgn_net"):
        assert model.model.test_update == "per_batch"  # the lite profiles' and published numbers' semantics
    compiled = get_model(snake, **TINY, compile=True, channels_last=True, log_step_losses=True)
    assert compiled.model.compile_options == CompileOptions(mode=None)
    assert compiled.channels_last and compiled.log_step_losses
    assert compiled.hparams["compile"] is True  # saved with the checkpoint like every init argument


def test_compile_modes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    automatic = CompileOptions()
    assert automatic.mode_for(cpu) == "default" and automatic.mode_for(cuda) == AUTO_CUDA_MODE
    graphs = CompileOptions(mode="reduce-overhead")
    assert graphs.mode_for(cuda) == "reduce-overhead" and graphs.mode_for(cpu) == "default"  # CUDA graphs: CUDA only
    assert CompileOptions(backend="aot_eager").mode_for(cuda) is None
    for snake in ("mnad", "lgn_net", "apn", "dlan_ac"):
        assert get_model(snake, **TINY, compile=True, compile_mode="reduce-overhead").model.compile_options.mode
    with pytest.raises(ValueError, match="CUDA graphs"):
        get_model("cdda", **TINY, compile=True, compile_mode="reduce-overhead")
    with pytest.raises(ValueError, match="compile_mode"):
        get_model("apn", **TINY, compile=True, compile_mode="fastest")


def test_nothing_is_compiled_for_export_or_the_read_only_pipeline():
    model = get_model("apn", **TINY, compile=True)
    backend = CountingBackend()
    model.model.compile_options = CompileOptions(backend=backend)
    with model.read_only_eval(), torch.no_grad():
        model.predict_clip(torch.rand(1, model.clip_length, 3, 32, 32))
    assert backend.graphs == 0
    model.model.eval()
    with torch.no_grad():
        model.model.score(clips(model, 1)[0])
    assert backend.graphs == 1


def test_adam_is_fused_only_when_every_parameter_is_on_cuda():
    assert adam_kwargs([SimpleNamespace(is_cuda=True)] * 2) == {"fused": True}
    assert adam_kwargs([SimpleNamespace(is_cuda=True), SimpleNamespace(is_cuda=False)]) == {}
    assert adam_kwargs([]) == {}
    for snake in EXTRA:  # on this CPU: PyTorch's default implementation, as before
        model = get_model(snake, **TINY)
        optimisers = model.configure_optimizers() if snake == "cdda" else [optimiser_of(model)]
        assert len(optimisers) == (2 if snake == "cdda" else 1)
        assert all(not optimiser.defaults.get("fused") for optimiser in optimisers)


@pytest.mark.parametrize("option", [False, True])
def test_channels_last_on_cuda_only_with_the_option(option):
    model = get_model("mnad", **TINY, channels_last=option)
    model._device = torch.device("cuda", 0)  # noqa: SLF001 - where Lightning would have moved it (no GPU here)
    model.use_preferred_memory_format()
    weight = model.model.encoder.stage1[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) is option
    assert weight.is_contiguous() is not option  # a 3x3 kernel is one or the other


@pytest.mark.parametrize("per_step", [False, True])
def test_losses_are_logged_per_epoch_unless_asked_per_step(per_step):
    model = get_model("apn", **TINY, log_step_losses=per_step)
    calls = []
    model.log_dict = lambda values, **kwargs: calls.append((values, kwargs))
    model.log_losses({"loss": torch.tensor(1.0, requires_grad=True)}, batch_size=4)
    ((values, kwargs),) = calls
    assert set(values) == {"train_loss"} and not values["train_loss"].requires_grad
    assert kwargs["on_step"] is per_step and kwargs["on_epoch"] is not per_step
    assert kwargs["prog_bar"] is True and kwargs["batch_size"] == 4
