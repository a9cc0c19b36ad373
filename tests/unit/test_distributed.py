"""The DDP helpers: no-ops in one process; gather, broadcast and the protocol metric over 2 gloo processes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from anomalib_vadproto.components import distributed
from anomalib_vadproto.metrics import VideoProtocolAUC


# ---------------------------------------------------------------------- one process
def test_single_process_helpers_change_nothing():
    assert not distributed.is_distributed()
    assert (distributed.world_size(), distributed.rank()) == (1, 0)
    tensor = torch.arange(6.0).reshape(3, 2)
    assert distributed.all_gather_cat(tensor) is tensor
    before = tensor.clone()
    assert distributed.broadcast_(tensor) is tensor
    distributed.broadcast_tensors_([tensor])
    distributed.broadcast_module_(torch.nn.BatchNorm1d(2))
    assert torch.equal(tensor, before)
    assert distributed.mean_over_ranks(tensor) is tensor
    box = {"a": 1}
    assert distributed.broadcast_object(box) is box
    assert distributed.on_rank_zero(lambda: 42) == 42
    assert not distributed.replicate_evaluation(object())  # nothing to replicate, the trainer is not even read
    distributed.share_run_folder("/nonexistent/v0")


def test_replicated_sampler_iterates_the_whole_wrapped_sampler_in_order():
    order = [3, 1, 2, 0]
    sampler = distributed.ReplicatedSampler(order)  # any sampler: here a plain list of indices
    assert isinstance(sampler, DistributedSampler)  # so Lightning keeps it and injects no sharding sampler
    assert list(sampler) == order and len(sampler) == 4
    sampler.set_epoch(3)
    assert list(sampler) == order


def test_replicated_loader_keeps_the_batches():
    dataset = list(range(10))
    loader = DataLoader(dataset, batch_size=4, shuffle=False, collate_fn=torch.tensor)
    replicated = distributed.replicated_loader(loader)
    assert isinstance(replicated.sampler, distributed.ReplicatedSampler)
    assert isinstance(replicated.sampler.sampler, SequentialSampler)
    assert [batch.tolist() for batch in replicated] == [batch.tolist() for batch in loader]
    assert distributed.replicated_loader(replicated) is replicated
    assert distributed.replicated_loader([1, 2]) == [1, 2]  # not a DataLoader: as it is


# ---------------------------------------------------------------------- two gloo processes
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _protocol() -> VideoProtocolAUC:
    return VideoProtocolAUC({"psnr": 0.6, "distance": 0.4})


#: Six frames of two videos: (video, frame, label, psnr, distance).
FRAMES = [
    ("v01", 4, 0, 35.0, 0.1),
    ("v01", 5, 1, 34.0, 0.2),
    ("v01", 6, 1, 30.0, 0.5),
    ("v02", 4, 0, 31.0, 0.3),
    ("v02", 5, 1, 28.0, 0.4),
    ("v02", 6, 0, 33.0, 0.6),
]


def _feed(metric: VideoProtocolAUC, frames: list[tuple]) -> None:
    if frames:
        videos, indices, labels, psnr, distance = zip(*frames, strict=True)
        cues = {"psnr": torch.tensor(psnr), "distance": torch.tensor(distance)}
        metric.update(list(videos), torch.tensor(indices), torch.tensor(labels), cues)


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results = {}
        # uneven sizes (3 rows and 1), an empty rank, a trailing shape
        rows = torch.full((3 if rank == 0 else 1, 2), float(rank + 1))
        results["gather"] = distributed.all_gather_cat(rows)
        results["gather_empty"] = distributed.all_gather_cat(torch.arange(rank * 3, dtype=torch.long))
        results["broadcast"] = distributed.broadcast_(torch.full((2, 3), float(rank)).t(), src=1)  # non-contiguous
        tensors = [torch.full((2,), float(rank)), torch.full((3,), rank, dtype=torch.long), torch.tensor(rank * 1.5)]
        distributed.broadcast_tensors_(tensors)
        results["broadcast_tensors"] = tensors
        results["object"] = distributed.broadcast_object({"rank": rank})
        results["mean"] = distributed.mean_over_ranks(torch.tensor(float(rank)))
        results["on_rank_zero"] = distributed.on_rank_zero(lambda: f"fitted on rank {distributed.rank()}")
        # the protocol metric synchronised ("cat") with every frame on rank 0 and none on rank 1 ...
        metric = _protocol()
        _feed(metric, FRAMES if rank == 0 else [])
        results["protocol_rank0_only"] = metric.compute()
        results["has_data_after"] = metric.has_data
        # ... and with the frames split across the ranks: the paths of the other rank are named
        metric = _protocol()
        _feed(metric, FRAMES[rank::2])
        results["protocol_split"] = metric.compute()
        results["protocol_split_videos"] = metric.result().video_names
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_helpers_and_protocol_over_two_gloo_processes(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    metric = _protocol()
    _feed(metric, FRAMES)
    expected = metric.compute()
    for rank, results in enumerate(ranks):
        assert torch.equal(results["gather"], torch.tensor([[1.0, 1.0]] * 3 + [[2.0, 2.0]]))
        assert torch.equal(results["gather_empty"], torch.arange(3))  # rank 0 sends none, rank 1 three
        assert torch.equal(results["broadcast"], torch.full((3, 2), 1.0))
        first, second, third = results["broadcast_tensors"]
        assert torch.equal(first, torch.zeros(2)) and torch.equal(second, torch.zeros(3, dtype=torch.long))
        assert float(third) == 0.0
        assert results["object"] == {"rank": 0}
        assert float(results["mean"]) == 0.5
        assert results["on_rank_zero"] == "fitted on rank 0"
        for key in ("protocol_rank0_only", "protocol_split"):
            assert results[key].keys() == expected.keys()
            for name, value in expected.items():
                assert float(results[key][name]) == pytest.approx(float(value), abs=1e-7), (rank, key, name)
        assert results["has_data_after"] is (rank == 0)  # the sync leaves the local states as they were
        assert results["protocol_split_videos"] == ("v01", "v02")
