"""Clip validation: bad input gets a clear error, good input is split as the papers do."""

import pytest
import torch

from anomalib_vadproto.components.clip import ClipShapeError, split_clip, stack_frames, validate_clip


def test_split_prediction_and_reconstruction():
    clip = torch.arange(5.0).view(1, 5, 1, 1, 1).expand(2, 5, 3, 8, 8)
    inputs, target = split_clip(clip, 4)
    assert inputs[0, :, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert target[0, 0, 0, 0].item() == 4
    inputs, target = split_clip(clip, 5)
    assert inputs.shape[1] == 5 and target[0, 0, 0, 0].item() == 4
    with pytest.raises(ClipShapeError, match="num_inputs"):
        split_clip(clip, 2)


def test_stack_frames_oldest_first():
    frames = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    stacked = stack_frames(frames)
    assert stacked.shape == (1, 12, 2, 2)
    assert stacked[0, :, 0, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 3, 32, 32), "5-D clip .* single images"),
        ((2, 3, 3, 32, 32), "3 frames \\(too few\\).*exactly 5"),
        ((2, 7, 3, 32, 32), "7 frames \\(too many\\)"),
        ((2, 5, 1, 32, 32), "3 channel\\(s\\).*got 1"),
        ((2, 5, 3, 4, 4), "too small"),
        ((32, 32), "5-D clip"),
    ],
)
def test_bad_shapes_are_rejected_clearly(shape, message):
    with pytest.raises(ClipShapeError, match=message):
        validate_clip(torch.zeros(shape), clip_length=5, channels=3)


def test_nan_and_non_tensor_are_rejected():
    clip = torch.zeros(1, 5, 3, 16, 16)
    clip[0, 2, 1, 3, 3] = float("nan")
    with pytest.raises(ClipShapeError, match="NaN"):
        validate_clip(clip, 5, 3)
    with pytest.raises(ClipShapeError, match="torch.Tensor"):
        validate_clip([[0.0]], 5, 3)


def test_single_frame_clips_accept_4d():
    assert validate_clip(torch.zeros(2, 3, 16, 16), clip_length=1, channels=3).shape == (2, 1, 3, 16, 16)


def test_argument_checks_name_the_argument():
    from anomalib_vadproto.components.clip import check_at_least, check_choice

    check_at_least("width", 1)
    check_choice("mode", "a", ("a", "b"))
    with pytest.raises(ValueError, match=r"width must be at least 1, got 0"):
        check_at_least("width", 0)
    with pytest.raises(ValueError, match=r"mode must be one of \('a', 'b'\), got 'c'"):
        check_choice("mode", "c", ("a", "b"))
