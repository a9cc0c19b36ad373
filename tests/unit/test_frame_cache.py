"""The frame cache of ``LocalUCSDped``: the same items as anomalib's reader, each video decoded once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import clip_datamodule


@pytest.fixture(scope="module")
def datamodules(synthetic_root: Path):
    from anomalib_vadproto import LocalUCSDped

    plain = clip_datamodule(synthetic_root)
    cached = LocalUCSDped(
        cache_frames=True, root=synthetic_root, category="synthetic", clip_length_in_frames=5,
        frames_between_clips=1, num_workers=0,
    )  # fmt: skip
    plain.setup()
    cached.setup()
    return plain, cached


def test_cached_items_equal_anomalibs(datamodules) -> None:
    from anomalib_vadproto.data.ucsd_ped import CachedUCSDpedClipsIndexer

    plain, cached = datamodules
    for split in ("train_data", "test_data", "val_data"):
        a, b = getattr(plain, split), getattr(cached, split)
        assert isinstance(b.indexer, CachedUCSDpedClipsIndexer)
        assert len(a) == len(b) > 0
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert torch.equal(x.image, y.image), (split, i)
            assert x.image.dtype == y.image.dtype == torch.float32
            assert x.gt_label == y.gt_label
            assert x.video_path == y.video_path
            assert torch.equal(x.frames, y.frames)
            if x.gt_mask is None:
                assert y.gt_mask is None
            else:
                assert torch.equal(x.gt_mask, y.gt_mask)
                assert x.gt_mask.dtype == y.gt_mask.dtype


def test_each_video_decoded_once_and_val_shares_test_cache(datamodules, monkeypatch) -> None:
    from anomalib_vadproto.data import clips as dm

    _, cached = datamodules
    test = cached.test_data
    assert cached.val_data.indexer.cache is test.indexer.cache  # val is a deep copy of test: frames shared
    test.indexer.cache.clear()
    opened: list[str] = []
    real_open = dm.Image.open
    monkeypatch.setattr(dm.Image, "open", lambda path: (opened.append(str(path)), real_open(path))[1])
    for i in range(len(test)):
        test[i]
    frames = [p for p in opened if p.endswith(".tif")]
    assert len(frames) == len(set(frames))  # every frame decoded exactly once over the whole split
    n_frames = sum(len(list(Path(v).glob("*.tif"))) for v in test.indexer.video_paths)
    assert len(frames) == n_frames


def test_out_of_range_clip_raises(datamodules) -> None:
    _, cached = datamodules
    with pytest.raises(IndexError, match="out of range"):
        cached.train_data.indexer.get_clip(10_000)


def test_workers_share_a_cache_filled_at_setup(synthetic_root: Path, datamodules, monkeypatch) -> None:
    """With workers the cache is full after setup, and no worker decodes a frame: the batches are the same."""
    from anomalib_vadproto import LocalUCSDped
    from anomalib_vadproto.data import clips as dm

    _, single = datamodules
    workers = LocalUCSDped(
        cache_frames=True, root=synthetic_root, category="synthetic", clip_length_in_frames=5,
        frames_between_clips=1, num_workers=2,
    )  # fmt: skip
    workers.setup()
    for split in ("train_data", "test_data"):
        indexer = getattr(workers, split).indexer
        videos = {key for key in indexer.cache if key[1] == "*.tif"}
        assert len(videos) == len(indexer.video_paths), split
    assert any(key[1] == "*.bmp" for key in workers.test_data.indexer.cache)  # the masks too

    def no_decoding(path):  # noqa: ANN001, ANN202 - forked workers inherit this patch
        raise AssertionError(f"decoded {path} in a worker")

    monkeypatch.setattr(dm.Image, "open", no_decoding)
    for a, b in zip(single.test_dataloader(), workers.test_dataloader(), strict=True):
        assert torch.equal(a.image, b.image)
        assert torch.equal(a.gt_mask, b.gt_mask)
