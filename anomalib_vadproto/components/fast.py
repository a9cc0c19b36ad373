"""The fast training step shared by the five models: ``torch.compile``, fused Adam, channels-last on CUDA.

Paper-profile steps on a GPU (4-8 clips of 256x256) are bound by kernel launches and host work, not by
arithmetic. Each model therefore takes these options (``--model.<option>``), all off by default so the
lite profiles and their published results are unchanged:

* ``compile``: ``torch.compile`` of the pure tensor part of the training step (the torch model's forward
  and the losses, and the memory models' new items) and of the scoring path (the network and the cues).
  State updates stay outside the compiled functions, in eager code between calls: the memory items of
  MNAD and LGN-Net are replaced by the compiled function's output, the test-time memory update runs
  eagerly on the compiled scores, DLAN-AC's stage-1 clusterer runs on the host on detached features,
  its stage switch and CDDA's k-means change Python attributes that the compiled functions are guarded
  on (one recompile at the switch), and CDDA's two optimisers step eagerly between its two compiled
  losses. :func:`maybe_compiled` gives the function to call.
* ``compile_mode`` (:class:`CompileOptions`): ``None`` (automatic) compiles with
  ``"max-autotune-no-cudagraphs"`` on CUDA and inductor's default mode on a CPU. ``"reduce-overhead"``
  (CUDA graphs: one launch per compiled function) is accepted by the models whose compiled step allows
  it (:attr:`~anomalib_vadproto.components.lightning.VideoModelMixin.cuda_graph_training`: APN, DLAN-AC,
  MNAD, LGN-Net, not CDDA) and is used on CUDA only (a CPU run falls back to the default mode).
* fused Adam (:func:`adam_kwargs`) whenever every parameter is on CUDA: one kernel for the whole update.
* ``channels_last``: channels-last weights on CUDA too (on a CPU they always are, see
  :meth:`~anomalib_vadproto.components.lightning.VideoModelMixin.use_preferred_memory_format`); cuDNN's
  tensor-core convolutions run NHWC, which pays under ``--trainer.precision bf16-mixed``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from anomalib_vadproto.errors import check_choice

#: Modes ``compile_mode`` accepts (``torch.compile``'s own).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Modes that capture CUDA graphs (on CUDA only).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
#: The automatic mode on CUDA: inductor's autotuned kernels, no CUDA graphs (safe for every model).
AUTO_CUDA_MODE = "max-autotune-no-cudagraphs"

# module -> {(function, mode, backend): compiled function}. Kept outside the module, so that pickling the
# model (anomalib's torch export) or deep-copying it never meets a compiled function.
_COMPILED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], Callable]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class CompileOptions:
    """How a torch model compiles its training and scoring functions.

    Attributes:
        mode: A ``torch.compile`` mode, or ``None`` for the automatic choice (:meth:`mode_for`).
        backend: ``torch.compile``'s backend: ``"inductor"`` (default) or another, e.g. ``"aot_eager"``
            (tests and debugging: AOT autograd without code generation; no mode then).

    """

    mode: str | None = None
    backend: str | Callable = "inductor"

    def mode_for(self, device: torch.device) -> str | None:
        """Return the mode to compile with for tensors on ``device`` (``None``: the backend's own default).

        CUDA graphs exist on CUDA only: a CUDA-graph mode on another device becomes the default mode.
        """
        if self.backend != "inductor":
            return None
        if self.mode is None:
            return AUTO_CUDA_MODE if device.type == "cuda" else "default"
        if self.mode in CUDA_GRAPH_MODES and device.type != "cuda":
            return "default"
        return self.mode


def check_compile_mode(mode: str | None, cuda_graphs_allowed: bool, model: str) -> None:
    """Refuse an unknown ``compile_mode``, or CUDA graphs for a model whose step does not allow them.

    Raises:
        ValueError: Naming the accepted modes.

    """
    check_choice("compile_mode", mode, (None, *COMPILE_MODES))  # None (null): the automatic mode
    if mode in CUDA_GRAPH_MODES and not cuda_graphs_allowed:
        msg = (
            f"compile_mode={mode!r} captures CUDA graphs, which {model}'s training step does not allow (see its"
            f" README); use null (automatic: {AUTO_CUDA_MODE!r} on CUDA) or {AUTO_CUDA_MODE!r}."
        )
        raise ValueError(msg)


def is_tracing() -> bool:
    """Whether a tracer (``torch.export``, Dynamo, the TorchScript tracer) is running: then nothing is compiled."""
    return torch.compiler.is_exporting() or torch.compiler.is_compiling() or torch.jit.is_tracing()


def maybe_compiled(module: nn.Module, fn: Callable, device: torch.device) -> Callable:
    """``fn`` compiled for ``module`` when its ``compile_options`` ask for it, else ``fn`` itself.

    ``fn`` must be a module-level function (or an unbound method) taking the module as an argument, so
    that Dynamo's cache, which lives on ``fn``'s code, is shared by every call. Nothing is compiled while
    a tracer runs or while the module is ``read_only`` (export and the read-only pipeline stay eager).
    Under CUDA graphs each call starts a new step and returns copies of the outputs, so that an output
    kept past the next call (the memory items, logged losses, scores) is never overwritten.

    Args:
        module: The torch model; its ``compile_options`` (a :class:`CompileOptions` or ``None``) decide.
        fn: The pure tensor function.
        device: Where the inputs are (chooses the mode).

    Returns:
        The function to call with ``fn``'s arguments.

    """
    options = getattr(module, "compile_options", None)
    if options is None or is_tracing() or getattr(module, "read_only", False):
        return fn
    mode = options.mode_for(device)
    cache = _COMPILED.setdefault(module, {})
    key = (fn, mode, options.backend)
    if key not in cache:
        compiled = torch.compile(fn, backend=options.backend, mode=mode)
        if mode in CUDA_GRAPH_MODES:
            compiled = _own_outputs(compiled)
        cache[key] = compiled
    return cache[key]


def _own_outputs(compiled: Callable) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        torch.compiler.cudagraph_mark_step_begin()
        return tree_map(lambda value: value.clone() if isinstance(value, Tensor) else value, compiled(*args, **kwargs))

    return call


def adam_kwargs(parameters: Iterable[Tensor]) -> dict[str, Any]:
    """Extra arguments of ``torch.optim.Adam``/``AdamW``: ``fused=True`` when every parameter is on CUDA.

    The fused kernel updates all parameters in one launch; on a CPU PyTorch's default (``foreach``) is kept.
    """
    params = list(parameters)
    return {"fused": True} if params and all(p.is_cuda for p in params) else {}
