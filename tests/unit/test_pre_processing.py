"""The video pre-processor: resize, then grey, then [-1, 1]; the same pixels as grey-then-resize."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import Compose, Grayscale, Normalize, Resize

from anomalib_vadproto.components.pre_processing import video_pre_processor


def test_grey_models_resize_then_convert_with_the_same_result_as_the_other_order():
    transform = video_pre_processor((16, 24), grayscale=True).transform
    assert [type(t) for t in transform.transforms] == [Resize, Grayscale, Normalize]
    clips = torch.rand(2, 3, 3, 40, 60, generator=torch.Generator().manual_seed(0))
    grey_first = [Grayscale(num_output_channels=1), Resize((16, 24), antialias=False)]
    reference = Compose([*grey_first, Normalize(mean=[0.5], std=[0.5])])(clips)
    ours = transform(clips)
    assert ours.shape == (2, 3, 1, 16, 24)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_known_answer_grey_weights_and_signed_range():
    # a constant RGB clip: grey = 0.2989 R + 0.587 G + 0.114 B (ITU-R 601-2), then [0, 1] -> [-1, 1]
    clip = torch.empty(1, 2, 3, 16, 16)
    clip[:, :, 0], clip[:, :, 1], clip[:, :, 2] = 1.0, 0.5, 0.0
    out = video_pre_processor((8, 8), grayscale=True).transform(clip)
    expected = 2 * (0.2989 * 1.0 + 0.587 * 0.5) - 1
    torch.testing.assert_close(out, torch.full((1, 2, 1, 8, 8), expected), rtol=0, atol=1e-3)


def test_rgb_models_keep_three_channels():
    out = video_pre_processor((8, 12), grayscale=False).transform(torch.zeros(1, 2, 3, 16, 24))
    assert out.shape == (1, 2, 3, 8, 12)
    assert torch.all(out == -1)


@pytest.mark.parametrize("size", [(8,), (8, 8, 8), (4, 16)])
def test_bad_image_sizes_are_refused(size):
    with pytest.raises(ValueError, match="image_size must be"):
        video_pre_processor(size)


@pytest.mark.parametrize("grayscale", [True, False])
def test_the_export_path_resizes_frames_as_channels_with_the_same_pixels(grayscale):
    pre_processor = video_pre_processor((16, 24), grayscale=grayscale)
    clips = torch.rand(2, 5, 3, 40, 60, generator=torch.Generator().manual_seed(1))
    exported = pre_processor(clips)  # forward: the graph that `anomalib export` traces
    hooks = pre_processor.transform(clips)  # what anomalib's batch hooks apply in the Lightning loops
    assert exported.shape == (2, 5, 1 if grayscale else 3, 16, 24)
    torch.testing.assert_close(exported, hooks, rtol=0, atol=1e-6)
    # a 4-D image batch goes through the transform unchanged in meaning
    torch.testing.assert_close(pre_processor(clips[:, 0]), pre_processor.transform(clips[:, 0]), rtol=0, atol=1e-6)


def test_the_pre_processor_keeps_a_checkpoint_safe_transform():
    from anomalib.pre_processing.utils.spec import spec_to_transform, transform_to_spec

    pre_processor = video_pre_processor((16, 24), grayscale=True)
    restored = spec_to_transform(transform_to_spec(pre_processor.transform))
    assert [type(t) for t in restored.transforms] == [type(t) for t in pre_processor.transform.transforms]
