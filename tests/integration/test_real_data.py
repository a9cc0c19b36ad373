"""Smoke test on the real UCSD Ped2 (the shared copy beside the checkout): one train and one test video."""

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PED2_COMPACT, clip_datamodule

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.slow,
    pytest.mark.skipif(not PED2_COMPACT.is_dir(), reason="shared UCSD Ped2 copy not found"),
]


def write_video(name: str, root, masks=None, max_frames=None):
    """Decode one compact mp4 into anomalib's UCSDped layout (grey .tif frames, .bmp masks)."""
    import av

    split = "Train" if name.startswith("Train") else "Test"
    folder = root / "UCSDped2" / split / name
    folder.mkdir(parents=True)
    with av.open(str(PED2_COMPACT / "videos" / f"{name}.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0), start=1):
            if max_frames and index > max_frames:
                break
            Image.fromarray(frame.to_ndarray(format="gray")).save(folder / f"{index:03d}.tif")
    if masks is not None:
        (folder.parent / f"{name}_gt").mkdir()
        for index, mask in enumerate(masks, start=1):
            Image.fromarray((mask > 0).astype(np.uint8) * 255).save(folder.parent / f"{name}_gt" / f"{index:03d}.bmp")
    return index


def test_ped2_protocol_alignment_on_real_frames(tmp_path):
    from anomalib.engine import Engine

    from anomalib_vadproto import Mnad

    masks = np.load(PED2_COMPACT / "masks.npz")["Test001"]
    write_video("Train001", tmp_path, max_frames=60)
    n_test = write_video("Test001", tmp_path, masks=masks)
    datamodule = clip_datamodule(tmp_path, category="UCSDped2", train_batch_size=8, eval_batch_size=16)
    model = Mnad(image_size=(64, 96), grayscale=True, width=4, seed=0)
    engine = Engine(max_epochs=1, default_root_dir=tmp_path / "run", logger=False, limit_train_batches=3)
    engine.fit(model=model, datamodule=datamodule)
    metrics = engine.test(model=model, datamodule=datamodule)[0]

    result = model.protocol_result
    labels = np.load(PED2_COMPACT / "frame_labels" / "Test001.npy").ravel()
    assert n_test == 180
    assert len(result.video_names) == 1 and result.video_names[0].endswith("Test001")
    assert result.num_frames == 180 - 4  # the first 4 frames of a video are never a target
    np.testing.assert_array_equal(result.frame_indices[0], np.arange(4, 180))
    np.testing.assert_array_equal(result.labels[0], labels[4:])  # anomalib's mask labels == the papers' labels
    assert 0.0 <= metrics["protocol_AUC_micro"] <= 1.0 and np.isfinite(metrics["image_AUROC"])


def test_ped2_frame_labels_from_full_size_masks_and_the_one_lost_at_64x64():
    """The papers' frame labels are the full-size masks' (every test frame); resizing a mask to 64 × 64 (anomalib's
    order, the lite APN's input) loses exactly one labelled frame: Test006's 0-based frame 158."""
    import torch
    from torchvision.transforms.v2 import Resize
    from torchvision.tv_tensors import Mask

    masks = np.load(PED2_COMPACT / "masks.npz")
    lost = []
    for video in sorted(masks.files):
        full = masks[video].reshape(len(masks[video]), -1).max(axis=1) > 0
        labels = np.load(PED2_COMPACT / "frame_labels" / f"{video}.npy").ravel().astype(bool)
        np.testing.assert_array_equal(full, labels)
        small = Resize((64, 64))(Mask(torch.from_numpy(masks[video]))).flatten(1).amax(dim=1).numpy() > 0
        lost += [(video, int(i)) for i in np.flatnonzero(full & ~small)]
    assert lost == [("Test006", 158)]
