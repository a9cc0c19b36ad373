"""Clip buffer and clip inferencer: which frames score which frame, batching, frame conversion, checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import Resize
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype

from anomalib_vadproto.components.pre_processing import video_pre_processor
from anomalib_vadproto.deploy import ClipBuffer, ClipInferencer, ModelMetadata, to_model_input


class EchoModel:
    """A clip model whose outputs reveal which frames it was given (frame k is filled with the value k)."""

    def __init__(self, clip_length: int, input_size: tuple[int, int] | None = None) -> None:
        self.metadata = ModelMetadata(
            model="Echo", clip_length=clip_length, image_size=(4, 6), input_size=input_size, cue_weights={"x": 1.0}
        )
        self.batches: list[int] = []

    def __call__(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        assert clips.dtype == np.float32 and clips.ndim == 5 and clips.shape[1] == self.metadata.clip_length
        self.batches.append(clips.shape[0])
        values = np.round(clips.mean(axis=(2, 3, 4)) * 255)  # (N, T): the frame index of each clip frame
        return {"pred_score": values[:, -1], "cue_x": values[:, 0], "clip_frames": values}


def frames(count: int, size: tuple[int, int] = (4, 6)) -> list[np.ndarray]:
    return [np.full((*size, 3), k, dtype=np.uint8) for k in range(count)]


def test_clip_buffer_keeps_the_last_frames_oldest_first():
    buffer = ClipBuffer(3)
    assert [buffer.push(np.array([k])) for k in range(5)] == [False, False, True, True, True]
    assert buffer.clip().ravel().tolist() == [2, 3, 4]
    buffer.reset()
    assert not buffer.full and buffer.count == 0
    with pytest.raises(RuntimeError, match="needs 3 frames"):
        buffer.clip()


def test_clip_buffer_rejects_a_frame_of_another_shape():
    buffer = ClipBuffer(2)
    buffer.push(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"frame 1 has shape \(3, 2\)"):
        buffer.push(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least 1"):
        ClipBuffer(0)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_frame_k_is_scored_from_frames_k_minus_t_plus_1_to_k(batch_size):
    model = EchoModel(clip_length=4)
    results = list(ClipInferencer(model).run(frames(11), batch_size=batch_size))
    assert [r.index for r in results] == list(range(11))
    assert [r.scored for r in results] == [False] * 3 + [True] * 8
    for result in results[3:]:
        k = result.index
        assert result.outputs["clip_frames"].tolist() == [k - 3, k - 2, k - 1, k]
        assert result.outputs["pred_score"] == k
    assert sum(model.batches) == 8 and max(model.batches) == min(batch_size, 8)


def test_outputs_can_be_restricted_and_images_kept():
    inferencer = ClipInferencer(EchoModel(clip_length=2), outputs={"pred_score"})
    results = list(inferencer.run(frames(3), keep_images=True))
    assert set(results[2].outputs) == {"pred_score"}
    assert results[0].image is not None and results[0].image[0, 0, 0] == 0 and results[2].image[0, 0, 0] == 2


def test_to_model_input_matches_the_training_reader_and_pre_processor_resize(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 36), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "001.tif")
    # anomalib's read path: PIL convert("RGB") -> uint8 tensor -> to_dtype(float32, scale=True)
    reference = to_dtype(pil_to_tensor(Image.open(tmp_path / "001.tif").convert("RGB")), torch.float32, scale=True)
    ours = to_model_input(np.asarray(Image.open(tmp_path / "001.tif").convert("RGB")))
    np.testing.assert_array_equal(ours, reference.numpy())
    np.testing.assert_array_equal(to_model_input(image), ours)  # a (H, W) grey frame: the same three channels
    # resized to (16, 16) exactly as the resize step of the models' RGB pre-processor
    resize = video_pre_processor((16, 16), grayscale=False).transform.transforms[0]
    assert isinstance(resize, Resize)
    np.testing.assert_array_equal(to_model_input(image, (16, 16)), resize(reference[None])[0].numpy())


def test_frames_are_resized_to_the_input_size_unless_disabled():
    model = EchoModel(clip_length=2, input_size=(4, 6))
    results = list(ClipInferencer(model).run(frames(3, size=(8, 12))))
    assert results[2].outputs["clip_frames"].tolist() == [1, 2]  # constant frames stay constant when resized
    with pytest.raises(ValueError, match=r"do not match the model's input size \(4, 6\)"):
        list(ClipInferencer(model, resize=False).run(frames(3, size=(8, 12))))


def test_a_frame_size_change_within_a_source_is_an_error():
    sequence = frames(2) + frames(1, size=(5, 6))
    with pytest.raises(ValueError, match=r"frame size changed from \(4, 6\) to \(5, 6\)"):
        list(ClipInferencer(EchoModel(clip_length=2)).run(sequence))
    with pytest.raises(ValueError, match="must be"):
        list(ClipInferencer(EchoModel(clip_length=2)).run([np.zeros((4, 6, 2), dtype=np.uint8)]))
    with pytest.raises(ValueError, match="batch_size"):
        list(ClipInferencer(EchoModel(clip_length=2)).run(frames(2), batch_size=0))
