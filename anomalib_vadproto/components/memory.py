"""The MNAD memory: non-parametric, unit-norm items read by attention and updated by a rule.

Exact semantics (shared by MNAD and LGN-Net; the MNAD README's Choices lists where the paper and its code differ):

* ``M`` items of dimension ``C`` live in a **buffer** (saved in checkpoints, never given to the
  optimiser, never reached by a gradient). They start as ``norm(U[0,1)^C)``.
* **Read**: cosine similarities ``s = q pᵀ`` between unit queries and items; weights
  ``w = softmax_items(s)`` are detached; the read is ``p̂ = w p``.
* **Update** (after the losses, with the pre-update items): each query votes for its nearest item
  ``a(k)`` with weight ``v' = v / max v``, where ``v = softmax_queries(s)`` spans every query given
  (all ``B·K`` of a training batch, under DDP those of every rank's batch; the ``K`` of one clip at
  test time). The max runs over all queries ("code", default) or over the item's own voters ``U_m``
  ("paper"). Items become
  ``norm(p + Σ_{k∈U_m} v'_{k,m} q_k)``.
* **Test time**: the working copy of the items starts from the trained items at the beginning of
  every evaluation epoch, is updated after a clip only if its weighted regular score is below
  ``γ``, and persists across the test videos. A ``read_only`` module never updates (export).
  ``test_update="per_batch"`` (default) scores a batch with the items of its start, then applies the
  gated updates clip by clip; ``"per_clip"`` scores the clips of a batch one after another, each with
  the items updated by all clips before it: the reference's evaluation at batch 1, whatever the batch.

Every update is a pure function of tensors (:func:`memory_update`, :func:`gated_memory_update`): the
training step and the scoring compute the new items (compiled with ``compile``) and the modules only
store them, so no update reads a tensor value on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data import InferenceBatch
from torch import Tensor, nn

from anomalib_vadproto.components.fast import maybe_compiled
from anomalib_vadproto.components.losses import compactness_loss, intensity_loss, separateness_loss
from anomalib_vadproto.components.prototypes import prototype_read
from anomalib_vadproto.components.scores import error_map, feature_distance, psnr, regular_score
from anomalib_vadproto.errors import check_choice

RESCALE_MODES = ("code", "paper")
#: How the test-time update meets a batch (see the module docstring).
TEST_UPDATES = ("per_batch", "per_clip")


def memory_update(items: Tensor, queries: Tensor, rescale: str = "code") -> Tensor:
    """Return the items after one MNAD update with ``queries``.

    Args:
        items: ``(M, C)`` unit-norm items.
        queries: ``(N, C)`` unit-norm queries; the softmax over queries spans all ``N``.
        rescale: ``"code"`` divides ``v`` by its max over all queries, ``"paper"`` by the max over
            the queries whose nearest item is ``m`` (eq. 5 of the paper).

    Returns:
        ``(M, C)`` updated, unit-norm, detached items.

    """
    check_choice("rescale", rescale, RESCALE_MODES)
    # The items are state that outlives the step: update them in their own precision (FP32), also when
    # the step runs under mixed precision and the queries come in bf16.
    items, queries = items.detach(), queries.detach().to(items.dtype)
    with torch.autocast(items.device.type, enabled=False):
        scores = queries @ items.t()  # (N, M)
        # One-hot of the nearest item, (N, M); scatter rather than F.one_hot, which reads the indices' range on
        # the host on every device but CUDA.
        nearest = torch.zeros_like(scores).scatter_(1, scores.argmax(dim=1, keepdim=True), 1.0)
        votes = torch.softmax(scores, dim=0)  # over queries, per item
        if rescale == "code":
            votes = votes / votes.amax(dim=0, keepdim=True)
        else:
            own_max = (votes * nearest).amax(dim=0, keepdim=True)
            votes = votes / own_max.clamp_min(torch.finfo(votes.dtype).tiny)
        return F.normalize(items + (votes * nearest).t() @ queries, dim=1)


def gated_memory_update(items: Tensor, queries: Tensor, gate: Tensor, rescale: str = "code") -> Tensor:
    """Return the items after the test-time updates of a batch, clip by clip in batch order.

    Every clip's update is computed and kept where its ``gate`` is true (``torch.where``), so the
    result never depends on reading ``gate`` on the host.

    Args:
        items: ``(M, C)`` unit-norm items.
        queries: ``(B, K, C)`` unit-norm queries of each clip.
        gate: ``(B,)`` booleans, true where the clip updates the items.
        rescale: As in :func:`memory_update`.

    Returns:
        ``(M, C)`` items.

    """
    for index in range(queries.shape[0]):
        items = torch.where(gate[index], memory_update(items, queries[index], rescale), items)
    return items


class Memory(nn.Module):
    """MNAD memory items with attention read, rule update and a gated test-time copy.

    Args:
        num_items: Number of items ``M``.
        dim: Item dimension ``C`` (the encoder's output channels).
        rescale: Update rescaling, ``"code"`` (default, what produced the paper's numbers) or ``"paper"``.

    """

    def __init__(self, num_items: int, dim: int, rescale: str = "code") -> None:
        super().__init__()
        if num_items < 2:
            msg = f"The memory needs at least 2 items (nearest and second nearest), got {num_items}."
            raise ValueError(msg)
        self.rescale = check_choice("rescale", rescale, RESCALE_MODES)
        self.register_buffer("items", F.normalize(torch.rand(num_items, dim), dim=1))
        self._test_items: Tensor | None = None

    @property
    def num_items(self) -> int:
        """Number of items ``M``."""
        return self.items.shape[0]

    def current_items(self, test_time: bool) -> Tensor:
        """Items to read: the trained items, or the evolving test-time copy."""
        if not test_time:
            return self.items
        if self._test_items is None or self._test_items.device != self.items.device:
            self._test_items = self.items.clone()
        return self._test_items

    def reset_test_items(self) -> None:
        """Restart the test-time copy from the trained items (called at each evaluation epoch start)."""
        self._test_items = None

    def set_test_items(self, items: Tensor) -> None:
        """Store the test-time copy after an update computed elsewhere (:func:`gated_memory_update`)."""
        self._test_items = items

    @staticmethod
    def read(queries: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """Attention read with detached weights.

        Args:
            queries: ``(N, C)`` unit-norm queries.
            items: ``(M, C)`` items.

        Returns:
            ``(read (N, C), scores (N, M))`` where ``scores`` are the cosine similarities.

        """
        return prototype_read(queries, items, detach_weights=True)

    def update_(self, queries: Tensor) -> None:
        """Training update of the trained items with every query of the batch, ``(N, C)``."""
        self.items = memory_update(self.items, queries, self.rescale)

    def gated_update_(self, queries: Tensor, gate: Tensor) -> None:
        """Test-time update, clip by clip in batch order, for the clips whose ``gate`` is true.

        Args:
            queries: ``(B, K, C)`` unit-norm queries of each clip.
            gate: ``(B,)`` booleans, true where the clip's regular score is below ``γ``.

        """
        self._test_items = gated_memory_update(self.current_items(test_time=True), queries, gate, self.rescale)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super()._load_from_state_dict(*args, **kwargs)
        self._test_items = None


@dataclass
class MemoryTrainOutput:
    """What a training step needs for the memory losses and the memory update (MNAD, LGN-Net)."""

    prediction: Tensor  # (B, C, H, W) in [-1, 1]
    target: Tensor  # (B, C, H, W)
    queries: Tensor  # (B*K, D) unit-norm
    items: Tensor  # (M, D) items used for the read (pre-update)
    nearest: Tensor  # (B*K,) first nearest item
    second: Tensor  # (B*K,) second nearest item

    @classmethod
    def build(cls, prediction: Tensor, target: Tensor, read: MemoryRead, items: Tensor) -> MemoryTrainOutput:
        """Pick each query's nearest and second-nearest items from the read scores."""
        top2 = read.scores.topk(2, dim=1).indices
        return cls(prediction, target, read.queries, items, top2[:, 0], top2[:, 1])

    def updated_items(self, rescale: str = "code") -> Tensor:
        """Return the trained items after this batch's update (:func:`memory_update` with every query)."""
        return memory_update(self.items, self.queries, rescale)

    def weighted_loss(
        self, lambda_compact: float, lambda_separate: float, margin: float = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_pred + λ_c L_compact + λ_s L_separate`` and its terms (MNAD and LGN-Net)."""
        losses = self.losses(margin)
        return losses["pred"] + lambda_compact * losses["compact"] + lambda_separate * losses["separate"], losses

    def losses(self, margin: float = 1.0) -> dict[str, Tensor]:
        """Prediction (MSE), compactness and separateness losses, items detached (MNAD's training loss)."""
        return {
            "pred": intensity_loss(self.prediction, self.target),
            "compact": compactness_loss(self.queries, self.items, self.nearest),
            "separate": separateness_loss(self.queries, self.items, self.nearest, self.second, margin),
        }


class MemoryRead(NamedTuple):
    """A feature map read from the memory."""

    query_map: Tensor  # (B, D, h, w) unit-norm queries
    queries: Tensor  # (B*h*w, D) the same, flattened location-major
    read_map: Tensor  # (B, D, h, w) memory read p̂
    scores: Tensor  # (B*h*w, M) cosine similarities to the items


def read_feature_map(memory: Memory, features: Tensor, items: Tensor) -> MemoryRead:
    """L2-normalise a ``(B, D, h, w)`` encoder map into queries and read ``items`` at every location."""
    query_map = F.normalize(features, dim=1)
    b, d, h, w = query_map.shape
    queries = query_map.permute(0, 2, 3, 1).reshape(b * h * w, d)
    read, scores = memory.read(queries, items)
    return MemoryRead(query_map, queries, read.reshape(b, h, w, d).permute(0, 3, 1, 2), scores)


class MemoryModelMixin:
    """Evaluation behaviour shared by torch models with an MNAD memory (MNAD, LGN-Net).

    Place it before :class:`~anomalib_vadproto.components.torch_model.VideoTorchModel` in the bases: it
    provides that contract's :meth:`score` (with the gated test-time update) and :meth:`reset_test_state`.
    The model sets ``memory``, ``test_time_update``, ``test_update`` and ``gamma``, and implements
    ``_score_outputs(clip, items, update)`` (the pure scoring, see :meth:`memory_outputs`).
    """

    memory: Memory
    test_time_update: bool
    gamma: float
    read_only: bool
    training: bool
    #: ``"per_batch"`` or ``"per_clip"`` (see the module docstring).
    test_update: str = "per_batch"

    def reset_test_state(self) -> None:
        """Restart the test-time memory from the trained items."""
        self.memory.reset_test_items()

    def step_items(self) -> Tensor:
        """Items to read now: the trained items in training, the evolving test-time copy otherwise."""
        if self.training:
            return self.memory.items
        return self.memory.current_items(test_time=self.test_time_update and not self.read_only)

    @property
    def updates_memory_at_test_time(self) -> bool:
        """Whether scoring applies the gated test-time update (``test_time_update`` and not read-only)."""
        return self.test_time_update and not self.read_only

    def score(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        """Score a batch and, unless read-only, apply the gated test-time update (``test_update``).

        ``"per_batch"`` scores the batch with the items of its start; ``"per_clip"`` scores one clip after
        another (batch-1 semantics).

        Args:
            clip: ``(B, T, C, H, W)`` pre-processed clip in ``[-1, 1]``.

        Returns:
            ``InferenceBatch(pred_score=-PSNR, anomaly_map=squared error (B, 1, H, W))`` and the cues
            ``{"psnr": (B,), "feature_distance": (B,)}`` (:meth:`memory_outputs`).

        """
        if self.test_update == "per_clip" and self.updates_memory_at_test_time and clip.shape[0] > 1:
            return concat_scores([self._score_batch(part) for part in clip.split(1)])
        return self._score_batch(clip)

    def _score_batch(self, clip: Tensor) -> tuple[InferenceBatch, dict[str, Tensor]]:
        update = self.updates_memory_at_test_time
        score = maybe_compiled(self, type(self)._score_outputs, clip.device)  # type: ignore[attr-defined]
        batch, cues, items = score(self, clip, self.step_items(), update)
        if items is not None:
            self.memory.set_test_items(items)
        return batch, cues

    def memory_outputs(
        self, prediction: Tensor, target: Tensor, read: MemoryRead, items: Tensor, update: bool
    ) -> tuple[InferenceBatch, dict[str, Tensor], Tensor | None]:
        """PSNR and feature-distance cues and, with ``update``, the test-time items after the gated update.

        A pure function of its inputs: the caller stores the new items.

        Returns:
            ``InferenceBatch(pred_score=-PSNR, anomaly_map=squared error (B, 1, H, W))``, the cues
            ``{"psnr": (B,), "feature_distance": (B,)}`` for the papers' protocol, and the updated items
            (``None`` without ``update``).

        """
        b = prediction.shape[0]
        per_clip = read.queries.reshape(b, -1, read.queries.shape[-1])
        frame_psnr = psnr(prediction, target)
        distance = feature_distance(per_clip, items, read.scores.argmax(dim=1).reshape(b, -1))
        batch = InferenceBatch(pred_score=-frame_psnr, anomaly_map=error_map(prediction, target))
        new_items = None
        if update:
            gate = regular_score(prediction, target) < self.gamma
            new_items = gated_memory_update(items, per_clip.detach(), gate, self.memory.rescale)
        return batch, {"psnr": frame_psnr, "feature_distance": distance}, new_items


def concat_scores(
    parts: list[tuple[InferenceBatch, dict[str, Tensor]]],
) -> tuple[InferenceBatch, dict[str, Tensor]]:
    """Concatenate the ``(InferenceBatch, cues)`` of consecutive parts of a batch along the batch axis."""
    batches = [batch for batch, _ in parts]
    fields = {
        name: None if getattr(batches[0], name) is None else torch.cat([getattr(b, name) for b in batches])
        for name in InferenceBatch._fields
    }
    cues = {name: torch.cat([c[name] for _, c in parts]) for name in parts[0][1]}
    return InferenceBatch(**fields), cues
