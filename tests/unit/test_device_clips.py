"""``device_clips``: the training split as one device tensor gives exactly the frame cache's training batches."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torchvision.transforms.v2 import Resize

from anomalib_vadproto.data.device_clips import ClipIndexBatch, DeviceClips, DeviceClipsMixin
from tests.conftest import clip_datamodule

CPU = torch.device("cpu")
SMALL_VIDEOS = {"n_train": 2, "n_test": 1, "n_frames": 12, "height": 32, "width": 48, "codec": "ffv1"}
CLIPS = {"clip_length_in_frames": 5, "frames_between_clips": 1, "train_batch_size": 4, "num_workers": 0}


def ucsd(root: Path, **kwargs):
    from anomalib_vadproto import LocalUCSDped

    datamodule = LocalUCSDped(root=root, category="synthetic", **{**CLIPS, **kwargs})
    datamodule.setup()
    return datamodule


def epochs_of_batches(datamodule, epochs: int = 2, seed: int = 0) -> list:
    """The training batches of ``epochs`` epochs under ``seed``, as Lightning hands them to the model (on CPU)."""
    torch.manual_seed(seed)
    batches = []
    for _ in range(epochs):
        for batch in datamodule.train_dataloader():
            batches.append(datamodule.transfer_batch_to_device(batch, CPU, 0))
    return batches


def assert_same_batches(expected: list, actual: list) -> None:
    assert len(expected) == len(actual) > 0
    for number, (a, b) in enumerate(zip(expected, actual, strict=True)):
        assert type(a) is type(b)
        filled = {f.name for f in dataclasses.fields(a) if getattr(a, f.name) is not None}
        assert filled == {f.name for f in dataclasses.fields(b) if getattr(b, f.name) is not None}, number
        assert {"image", "original_image", "video_path", "frames", "last_frame"} <= filled
        for name in sorted(filled):
            x, y = getattr(a, name), getattr(b, name)
            if isinstance(x, torch.Tensor):
                assert x.dtype == y.dtype and x.shape == y.shape, (number, name)
                assert torch.equal(x, y), (number, name)  # bit-exact
            else:
                assert x == y, (number, name)


# ------------------------------------------------------------------------------------------ UCSDped
@pytest.mark.parametrize(
    ("extra", "augment"),
    [
        ({}, False),
        ({"target_frame": "mid"}, True),  # the model's Resize, which anomalib appends to the augmentations
        ({"clip_length_in_frames": 1, "train_batch_size": 5}, False),  # one-frame clips lose their frame axis
    ],
)
def test_ucsd_device_batches_equal_frame_cache_batches(synthetic_root: Path, extra: dict, augment: bool) -> None:
    augmentations = {"train_augmentations": Resize((24, 40), antialias=False)} if augment else {}
    expected = epochs_of_batches(ucsd(synthetic_root, cache_frames=True, **extra, **augmentations))
    actual = epochs_of_batches(ucsd(synthetic_root, device_clips=True, **extra, **augmentations))
    assert_same_batches(expected, actual)
    half = len(expected) // 2  # the two epochs are shuffled differently: the comparison covers the shuffle
    assert any(not torch.equal(a.frames, b.frames) for a, b in zip(expected[:half], expected[half:], strict=True))
    if augment:
        assert actual[0].image.shape[-2:] == (24, 40)


def test_other_seed_gives_other_batches(synthetic_root: Path) -> None:
    datamodule = ucsd(synthetic_root, device_clips=True)
    first, other = epochs_of_batches(datamodule, 1, seed=0), epochs_of_batches(datamodule, 1, seed=1)
    assert any(not torch.equal(a.image, b.image) for a, b in zip(first, other, strict=True))


def test_frames_built_once_moved_once_and_not_decoded_per_step(synthetic_root: Path, monkeypatch) -> None:
    from anomalib_vadproto.data import device_clips

    built, moved = [], []
    from_indexer, move = DeviceClips.from_indexer.__func__, DeviceClips._move
    monkeypatch.setattr(
        DeviceClips, "from_indexer", classmethod(lambda *a, **k: built.append(1) or from_indexer(*a, **k))
    )
    monkeypatch.setattr(DeviceClips, "_move", lambda self, device: moved.append(device) or move(self, device))
    datamodule = ucsd(synthetic_root, device_clips=True)
    indexer = datamodule.train_data.indexer
    epochs_of_batches(datamodule, epochs=1)
    store = datamodule.device_clip_store()
    assert built == [1] and moved == [CPU]
    assert store.frames.shape == (2 * 16, 3, 48, 64) and store.frames.dtype == torch.uint8
    assert store.on(CPU).frames.data_ptr() == store.frames.data_ptr()  # no copy on the CPU
    assert indexer.cache == {}  # the frame cache was emptied into the tensor: frames are not held twice

    def no_reading(*_):  # noqa: ANN002, ANN202
        raise AssertionError("a training step read frames")

    monkeypatch.setattr(indexer, "read_frames", no_reading)
    batches = epochs_of_batches(datamodule, epochs=2)
    assert len(batches) == 12
    assert built == [1] and moved == [CPU]  # two more epochs: nothing built or moved again
    assert all(isinstance(b, ClipIndexBatch) for b in datamodule.train_dataloader())

    copy = pickle.loads(pickle.dumps(store))  # spawned processes get the host tensor, not the device copies
    assert copy._devices == {} and torch.equal(copy.frames, store.frames)
    assert device_clips.target_index("last", 5) == -1


def test_index_loader_has_no_workers_and_keeps_batching(synthetic_root: Path) -> None:
    from torch.utils.data import RandomSampler

    workers = ucsd(synthetic_root, device_clips=True, num_workers=2, cache_frames=True)
    loader, usual = workers.train_dataloader(), super(DeviceClipsMixin, workers).train_dataloader()
    assert loader.num_workers == 0 and usual.num_workers == 2
    assert isinstance(loader.sampler, RandomSampler) and loader.batch_size == usual.batch_size == 4
    assert len(loader) == len(usual) == 6 and loader.drop_last == usual.drop_last
    test = workers.test_dataloader()
    assert test.num_workers == 2 and test.dataset is workers.test_data  # evaluation keeps the usual path
    assert "*.tif" in {key[1] for key in workers.test_data.indexer.cache}  # filled for the test workers
    assert workers.train_data.indexer.cache == {}  # not for training: its frames go to the device tensor
    torch.manual_seed(3)
    order = torch.cat([b.ids for b in loader])
    assert sorted(order.tolist()) == list(range(24)) and order.tolist() != list(range(24))


def test_distributed_sampler_splits_the_clips_between_ranks(synthetic_root: Path) -> None:
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    loader = ucsd(synthetic_root, device_clips=True).train_dataloader()
    ranks = []
    for rank in range(2):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        ranked = _update_dataloader(loader, sampler)  # what Lightning does under DDP
        assert ranked.batch_size == 4 and ranked.collate_fn is loader.collate_fn
        ranks.append(torch.cat([b.ids for b in ranked]).tolist())
    assert len(ranks[0]) == len(ranks[1]) == 12
    assert sorted(ranks[0] + ranks[1]) == list(range(24))


def test_store_indices_and_errors_from_a_small_indexer() -> None:
    """Global frame rows, metadata and target frames of a hand-made indexer; a video too short for a clip."""
    from torchvision.datasets.video_utils import unfold  # as VideoClips cuts clips: (0, T) when too short

    lengths = (4, 2, 3, 4)  # the second video is shorter than a clip: no clips, but its frames are kept
    videos = [torch.full((n, 3, 2, 2), 50 * v, dtype=torch.uint8) + torch.arange(n).view(-1, 1, 1, 1)
              for v, n in enumerate(lengths)]  # fmt: skip
    indexer = SimpleNamespace(
        read_frames=lambda v, frames: videos[v][frames], video_pts=[torch.arange(n) for n in lengths],
        clips=[unfold(torch.arange(n), 3, 1) for n in lengths], video_paths=["a", "b", "c", "d"],
    )  # fmt: skip
    store = DeviceClips.from_indexer(indexer, target=-1)
    assert store.num_clips == 5 and len(store.frames) == sum(lengths)
    assert store.clip_frames.tolist() == [[0, 1, 2], [1, 2, 3], [6, 7, 8], [9, 10, 11], [10, 11, 12]]
    batch = store.batch(torch.tensor([4, 2]), CPU)
    assert batch.video_path == ["d", "c"] and batch.frames.tolist() == [3, 2] and batch.last_frame.tolist() == [3, 2]
    assert torch.equal(batch.original_image[:, 0, 0, 0, 0], torch.tensor([153, 102], dtype=torch.uint8))
    assert torch.equal((batch.image[:, :, 0, 0, 0] * 255).round(), torch.tensor([[151.0, 152, 153], [100, 101, 102]]))
    first = DeviceClips.from_indexer(indexer, target=0).batch(torch.tensor([4]), CPU)
    assert first.frames.tolist() == [1] and int(first.original_image[0, 0, 0, 0, 0]) == 151
    videos[2] = torch.zeros((3, 3, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match="one frame size"):
        DeviceClips.from_indexer(indexer, target=-1)
    with pytest.raises(TypeError, match="ClipReaderMixin"):
        DeviceClips.from_indexer(SimpleNamespace(video_pts=[], clips=[]), target=-1)


# ---------------------------------------------------------------------------------- Avenue, ShanghaiTech
@pytest.fixture(scope="module")
def avenue_root(tmp_path_factory) -> Path:
    from anomalib_vadproto.data.synthetic_video import make_synthetic_avenue

    return make_synthetic_avenue(tmp_path_factory.mktemp("avenue_device"), **SMALL_VIDEOS)


@pytest.fixture(scope="module")
def sht_root(tmp_path_factory) -> Path:
    from anomalib_vadproto.data.synthetic_video import make_synthetic_shanghaitech

    return make_synthetic_shanghaitech(tmp_path_factory.mktemp("sht_device"), scenes=(1, 2), **SMALL_VIDEOS)


def test_avenue_device_batches_equal_frame_cache_batches(avenue_root: Path) -> None:
    from anomalib_vadproto import LocalAvenue

    def avenue(**kwargs):
        datamodule = LocalAvenue(root=avenue_root, gt_dir=avenue_root / "ground_truth_demo", **CLIPS, **kwargs)
        datamodule.setup()
        return datamodule

    expected = epochs_of_batches(avenue(cache_frames=True))
    assert_same_batches(expected, epochs_of_batches(avenue(cache_frames=True, device_clips=True)))


def test_shanghaitech_device_batches_equal_frame_cache_batches(sht_root: Path) -> None:
    from anomalib_vadproto import LocalShanghaiTech

    def shanghaitech(**kwargs):
        datamodule = LocalShanghaiTech(root=sht_root, scene="all", **CLIPS, **kwargs)
        datamodule.setup()
        return datamodule

    expected = epochs_of_batches(shanghaitech(cache_frames=True))
    actual = shanghaitech(device_clips=True)  # no frame cache: the videos are decoded straight into the tensor
    assert_same_batches(expected, epochs_of_batches(actual))
    assert len({Path(p).name[:2] for b in expected for p in b.video_path}) == 2  # both scenes trained on


# ------------------------------------------------------------------------------------------ Engine
def test_engine_fits_and_tests_a_tiny_mnad_with_device_clips(synthetic_root: Path, tmp_path: Path) -> None:
    from anomalib.data import VideoBatch
    from anomalib.engine import Engine
    from lightning.pytorch.callbacks import Callback

    from anomalib_vadproto import Mnad

    class TrainingBatches(Callback):
        def __init__(self) -> None:
            self.shapes: list[tuple[type, tuple[int, ...]]] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001, D102
            self.shapes.append((type(batch), tuple(batch.image.shape)))

    datamodule = clip_datamodule(synthetic_root)
    datamodule.device_clips = True
    seen = TrainingBatches()
    model = Mnad(image_size=(32, 32), grayscale=True, width=4, seed=0)
    engine = Engine(max_epochs=2, default_root_dir=tmp_path, logger=False, accelerator="cpu", callbacks=[seen])
    results = engine.train(model=model, datamodule=datamodule)  # fit, then test
    assert engine.trainer.current_epoch == 2 and len(seen.shapes) == 2 * 6  # 24 clips in batches of 4
    assert {kind for kind, _ in seen.shapes} == {VideoBatch}
    assert seen.shapes[0][1][:2] == (4, 5)
    assert 0.0 <= results[0]["image_AUROC"] <= 1.0
    assert torch.isfinite(model.post_processor._image_threshold)
    store = datamodule.device_clip_store()
    assert list(store._devices) == [CPU]  # the frames went to the training device once
