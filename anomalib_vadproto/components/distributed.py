"""Training on several devices or nodes (Lightning's DDP): the state that is not a gradient, kept in step.

DDP averages the gradients, so the weights stay identical on every rank; nothing else is synchronised. Each
model's other training state is made identical on every rank with the semantics of its method, as if one
process had seen the whole global batch (the per-model choices are in the README's *Training on several
GPUs or nodes*):

* MNAD and LGN-Net update their memory items with the queries of every rank (:func:`all_gather_cat`, then
  the one-process update);
* DLAN-AC fits its Adaptive Clusterer on rank 0 with the feature maps of every rank and broadcasts it
  (:func:`broadcast_tensors_`);
* CDDA runs k-means on rank 0 with the codes gathered from every rank and broadcasts the centres; the centre
  step is then a DDP gradient step like any other.

Evaluation (validation, test, predict) is *replicated* (:func:`replicate_evaluation`): every rank scores the
whole evaluation set in its order with the same state, and computes its metrics locally, so every rank holds
the single-process numbers. Sharding it instead would count Lightning's padding frames twice, and break the
test-time memory updates, which run in each video's order and carry from one test video to the next. Giving
the other ranks nothing to do is not an option in Lightning 2.6: it refuses a rank whose evaluation loader is
empty, and where allowed (``allow_zero_length_dataloader_with_multiple_devices``) that rank skips the loop and
its hooks, so the checkpoint's barrier that the others enter.

Every helper is a no-op in a single process (:func:`is_distributed` is false), without touching a tensor:
the single-process path gains no host synchronisation and its results stay bitwise the same.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

logger = logging.getLogger(__name__)

T = TypeVar("T")


# ---------------------------------------------------------------------- the process group
def is_distributed() -> bool:
    """Whether this process is one of several ranks of an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Return the number of ranks (1 in a single process)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """Return the global rank of this process (0 in a single process)."""
    return dist.get_rank() if is_distributed() else 0


# ---------------------------------------------------------------------- collectives
def all_gather_cat(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` of every rank along dim 0, in rank order; the ranks' sizes along dim 0 may differ.

    Every rank must call it, with tensors of the same trailing shape and dtype. The sizes are exchanged first
    (a small collective whose result is read on the host), then the tensors, padded to the largest.

    Args:
        tensor: ``(N_r, ...)`` on this rank (on the device of the process group's backend: CUDA for NCCL).

    Returns:
        ``(sum_r N_r, ...)``; ``tensor`` itself in a single process.

    """
    if not is_distributed():
        return tensor
    tensor = tensor.contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device))
    counts = [int(size) for size in torch.cat(sizes).tolist()]
    largest = max(counts)
    if largest == 0:
        return tensor.new_empty((0, *tensor.shape[1:]))
    padded = tensor
    if tensor.shape[0] < largest:
        padded = torch.cat([tensor, tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))])
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s; returns it (unchanged in a single process).

    Every rank must call it with a tensor of the same shape and dtype.
    """
    if not is_distributed():
        return tensor
    if tensor.is_contiguous():
        dist.broadcast(tensor, src)
    else:
        copy = tensor.contiguous()
        dist.broadcast(copy, src)
        tensor.copy_(copy)
    return tensor


def broadcast_tensors_(tensors: Iterable[Tensor], src: int = 0) -> None:
    """Overwrite every tensor in place with rank ``src``'s, one broadcast per dtype and device.

    Every rank must call it with tensors of the same shapes and dtypes, in the same order.
    """
    if not is_distributed():
        return
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for tensor in tensors:
        if tensor.numel():
            groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for group in groups.values():
        with torch.no_grad():
            flat = torch.cat([tensor.detach().reshape(-1) for tensor in group])
            dist.broadcast(flat, src)
            offset = 0
            for tensor in group:
                tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
                offset += tensor.numel()


def broadcast_module_(module: nn.Module, parameters: bool = True, src: int = 0) -> None:
    """Give every rank rank ``src``'s buffers (and, with ``parameters``, weights) of ``module``."""
    if not is_distributed():
        return
    tensors = list(module.buffers())
    if parameters:
        tensors += [parameter.data for parameter in module.parameters()]
    broadcast_tensors_(tensors, src)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Return rank ``src``'s ``obj`` (any picklable object) on every rank; ``obj`` in a single process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def mean_over_ranks(tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over the ranks (a new tensor; ``tensor`` itself in a single process)."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


# ---------------------------------------------------------------------- anomalib's run folder
def share_run_folder(root_dir: str | Path) -> None:
    """Keep one run folder under DDP: rank 0's, where the checkpoint and the images go.

    anomalib's ``Engine`` creates a new version folder (``v<N>``) in every process and points ``latest`` at
    it, so ``latest`` ends at another rank's empty folder. Each other rank removes its own folder (when empty),
    and rank 0 points ``latest`` back at its own. Every rank must call it (from ``setup``, before anything is
    written); nothing happens in a single process or when ``root_dir`` is not a version folder.

    Args:
        root_dir: This rank's ``trainer.default_root_dir``.

    """
    if not is_distributed():
        return
    own = Path(root_dir).absolute()
    main = Path(broadcast_object(str(own)))
    versioned = re.fullmatch(r"v\d+", main.name) is not None
    if versioned and own != main and own.parent == main.parent and re.fullmatch(r"v\d+", own.name):
        with contextlib.suppress(OSError):  # not empty, or already gone: leave it
            own.rmdir()
    dist.barrier()
    latest = main.parent / "latest"
    if rank() == 0 and versioned and latest.is_symlink() and latest.resolve() != main.resolve():
        latest.unlink()
        latest.symlink_to(main, target_is_directory=True)
    dist.barrier()


# ---------------------------------------------------------------------- replicated evaluation
class ReplicatedSampler(DistributedSampler):
    """Every rank iterates the whole wrapped sampler, in its order: a replicated, not a sharded, evaluation.

    A :class:`~torch.utils.data.DistributedSampler`, so Lightning keeps it instead of injecting its own
    (which shards the set and pads it with repeated samples).

    Args:
        sampler: The evaluation loader's own sampler (usually sequential).

    """

    def __init__(self, sampler: Sampler) -> None:
        super().__init__(sampler, num_replicas=1, rank=0, shuffle=False)  # type: ignore[arg-type]
        self.sampler = sampler

    def __iter__(self) -> Iterator[Any]:
        """Iterate the wrapped sampler."""
        return iter(self.sampler)

    def __len__(self) -> int:
        """Length of the wrapped sampler."""
        return len(self.sampler)  # type: ignore[arg-type]


def replicated_loader(loader: T) -> T:
    """Return ``loader`` rebuilt with a :class:`ReplicatedSampler` (as it is when not a plain ``DataLoader``)."""
    if not isinstance(loader, DataLoader) or isinstance(loader.sampler, ReplicatedSampler):
        return loader
    if loader.batch_sampler is not None and loader.batch_size is None:
        logger.warning(
            "An evaluation dataloader with its own batch_sampler is not replicated across the DDP ranks: Lightning"
            " shards it, and the evaluation is not the single-process one."
        )
        return loader
    from lightning.pytorch.utilities.data import _update_dataloader

    return _update_dataloader(loader, ReplicatedSampler(loader.sampler))


@functools.cache
def _replicated_source_class() -> type:
    from lightning.pytorch.trainer.connectors.data_connector import _DataLoaderSource
    from lightning.pytorch.utilities import CombinedLoader
    from lightning_utilities.core.apply_func import apply_to_collection

    class ReplicatedSource(_DataLoaderSource):
        """A Lightning data source whose dataloaders are replicated on every rank under DDP."""

        def dataloader(self) -> Any:  # noqa: ANN401
            loaders = super().dataloader()
            if not is_distributed():
                return loaders
            if isinstance(loaders, CombinedLoader):
                loaders.flattened = [replicated_loader(loader) for loader in loaders.flattened]
                return loaders
            return apply_to_collection(loaders, DataLoader, replicated_loader)

    return ReplicatedSource


def evaluation_loops(trainer: Any) -> list[Any]:  # noqa: ANN401
    """Lightning's four evaluation loops of ``trainer`` (fit's validation, validate, test, predict)."""
    return [trainer.fit_loop.epoch_loop.val_loop, trainer.validate_loop, trainer.test_loop, trainer.predict_loop]


def replicate_evaluation(trainer: Any, metrics: Sequence[Any] = ()) -> bool:  # noqa: ANN401
    """Under DDP, make every rank evaluate the whole evaluation set in order and compute ``metrics`` locally.

    Each evaluation loop's data source is wrapped so that its dataloaders carry a :class:`ReplicatedSampler`
    (Lightning then injects no sharding sampler); the ``metrics`` (torchmetrics) stop synchronising their
    states, which every rank already holds whole. Call it from the LightningModule's ``setup`` (after the
    data is attached, before any dataloader is requested). Does nothing in a single process.

    Args:
        trainer: The Lightning trainer.
        metrics: torchmetrics ``Metric`` objects to compute locally (the model's evaluation metrics).

    Returns:
        Whether the evaluation is now replicated (``False`` in a single process, or when Lightning's loops
        are not laid out as in Lightning 2.6, which is logged).

    """
    if not is_distributed():
        return False
    source_class = _replicated_source_class()
    try:
        loops = evaluation_loops(trainer)
        sources = [loop._data_source for loop in loops]  # noqa: SLF001 - Lightning has no public hook for this
        origins = [(source.instance, source.name) for source in sources]
    except AttributeError:
        logger.warning(
            "Could not replicate the evaluation over the DDP ranks (unknown Lightning loop layout): Lightning"
            " shards it, and the evaluation is not the single-process one."
        )
        return False
    for loop, source, (instance, name) in zip(loops, sources, origins, strict=True):
        if not isinstance(source, source_class):
            loop._data_source = source_class(instance, name)  # noqa: SLF001
    for metric in metrics:
        metric.distributed_available_fn = _never
    return True


def _never() -> bool:
    """Say "not distributed" (a torchmetrics ``distributed_available_fn``: compute on this rank's states alone)."""
    return False


def on_rank_zero(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and return its result (a picklable object) on every rank; ``fn()`` alone."""
    if not is_distributed():
        return fn()
    return broadcast_object(fn() if rank() == 0 else None)
