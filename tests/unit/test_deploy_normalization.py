"""Deployment normalisers on hand-made sequences: known answers, causality, equality with the protocol."""

from __future__ import annotations

import numpy as np
import pytest

from anomalib_vadproto.deploy import (
    ModelMetadata,
    OfflineNormalizer,
    RunningMinMaxNormalizer,
    RunningStdNormalizer,
    ValidationNormalizer,
    fuse_with_bounds,
    make_normalizer,
)
from anomalib_vadproto.metrics.protocol import fuse_cues, smooth_per_video

MNAD_LIKE = ModelMetadata(
    model="Mnad", clip_length=5, image_size=(8, 8), cue_weights={"psnr": 0.6, "distance": 0.4}, normal_cues=("psnr",)
)
PSNR = np.array([30.0, 32.0, 28.0, 35.0, 20.0, 31.0, 25.0])
DISTANCE = np.array([0.1, 0.3, 0.2, 0.1, 0.9, 0.2, 0.5])


def cues(end: int | None = None) -> dict[str, np.ndarray]:
    return {"psnr": PSNR[:end], "distance": DISTANCE[:end]}


def test_fuse_with_bounds_known_answers():
    # psnr 30 within [20, 40] -> g = 0.5 -> anomaly 0.5; distance 0.75 within [0.5, 1.0] -> 0.5; fused 0.5
    # psnr 45 above the bounds -> g = 1 -> 0; distance 0.0 below -> 0; psnr constant bounds 30 == 30 -> 0
    fused = fuse_with_bounds(
        {"psnr": [30.0, 45.0, 30.0], "distance": [0.75, 0.0, 1.0]},
        {"psnr": [20.0, 20.0, 30.0], "distance": [0.5, 0.5, 0.0]},
        {"psnr": [40.0, 40.0, 30.0], "distance": [1.0, 1.0, 1.0]},
        {"psnr": 0.6, "distance": 0.4},
        ("psnr",),
    )
    np.testing.assert_allclose(fused, [0.5, 0.0, 0.4])


def test_offline_is_the_papers_fusion_and_smooths_when_the_protocol_does():
    np.testing.assert_allclose(
        OfflineNormalizer(MNAD_LIKE).normalize(cues(), None),
        fuse_cues(cues(), np.zeros(7), {"psnr": 0.6, "distance": 0.4}, ("psnr",)),
    )
    # frame 4 has the lowest PSNR and the largest distance: the maximum anomaly 1.0
    assert OfflineNormalizer(MNAD_LIKE).normalize(cues(), None)[4] == pytest.approx(1.0)
    smoothed = ModelMetadata(**{**MNAD_LIKE.__dict__, "smoothing": True, "smoothing_taps": 3, "smoothing_sigma": 1.0})
    fused = fuse_cues(cues(), np.zeros(7), {"psnr": 0.6, "distance": 0.4}, ("psnr",))
    np.testing.assert_allclose(
        OfflineNormalizer(smoothed).normalize(cues(), None), smooth_per_video(fused, np.zeros(7), 3, 1.0)
    )
    with pytest.raises(ValueError, match="needs the whole video"):
        OfflineNormalizer(MNAD_LIKE).update(cues(), None)


def test_running_min_max_known_answers():
    metadata = ModelMetadata(model="M", clip_length=2, image_size=(8, 8), cue_weights={"d": 1.0})
    scores = RunningMinMaxNormalizer(metadata, warmup=0).normalize({"d": [2.0, 4.0, 3.0, 1.0, 5.0, 4.0]}, None)
    # bounds so far: [2,2] const -> 0; [2,4] -> 1; [2,4] -> 0.5; [1,4] -> 0; [1,5] -> 1; [1,5] -> 0.75
    np.testing.assert_allclose(scores, [0.0, 1.0, 0.5, 0.0, 1.0, 0.75])
    windowed = RunningMinMaxNormalizer(metadata, warmup=0, window=2).normalize({"d": [2.0, 4.0, 3.0, 1.0, 5.0]}, None)
    # windows {2}, {2,4}, {4,3}, {3,1}, {1,5}
    np.testing.assert_allclose(windowed, [0.0, 1.0, 0.0, 0.0, 1.0])


def test_running_min_max_matches_offline_on_the_last_frame_of_the_video():
    # after the whole video the running bounds are the video's bounds: the last frame agrees with offline
    running = RunningMinMaxNormalizer(MNAD_LIKE, warmup=0).normalize(cues(), None)
    offline = OfflineNormalizer(MNAD_LIKE).normalize(cues(), None)
    assert running[-1] == pytest.approx(offline[-1])
    assert not np.allclose(running, offline)


@pytest.mark.parametrize(
    "normalizer",
    [
        RunningMinMaxNormalizer(MNAD_LIKE, warmup=2),
        RunningMinMaxNormalizer(MNAD_LIKE, warmup=0, window=3),
        RunningStdNormalizer(MNAD_LIKE, warmup=1),
        ValidationNormalizer(MNAD_LIKE),
    ],
    ids=["running", "running-window", "running-std", "validation"],
)
def test_streaming_normalisers_never_use_future_frames(normalizer):
    pred = np.linspace(0.1, 0.9, 7)
    full = normalizer.normalize(cues(), pred)
    for end in range(1, 7):  # scores of a prefix do not change when frames are appended
        np.testing.assert_array_equal(normalizer.normalize(cues(end), pred[:end]), full[:end])
    # frame by frame, and in uneven chunks, gives the same as the whole sequence
    normalizer.reset()
    step = [normalizer.update({n: v[k : k + 1] for n, v in cues().items()}, pred[k : k + 1]) for k in range(7)]
    np.testing.assert_allclose(np.concatenate(step), full, equal_nan=True)
    normalizer.reset()
    chunks = [normalizer.update({n: v[a:b] for n, v in cues().items()}, pred[a:b]) for a, b in ((0, 3), (3, 4), (4, 7))]
    np.testing.assert_allclose(np.concatenate(chunks), full, equal_nan=True)


def test_warmup_frames_have_no_score():
    scores = RunningMinMaxNormalizer(MNAD_LIKE, warmup=3).normalize(cues(), None)
    assert np.isnan(scores[:3]).all() and np.isfinite(scores[3:]).all()
    assert np.isnan(RunningStdNormalizer(MNAD_LIKE, warmup=7).normalize(cues(), None)).all()


def test_running_std_bounds_known_answer():
    metadata = ModelMetadata(model="M", clip_length=2, image_size=(8, 8), cue_weights={"d": 1.0})
    # after [0, 2]: mean 1, population std 1, bounds [1 - 1, 1 + 1] = [0, 2] with k_sigma = 1 -> x = 2 gives 1.0
    # then 1: values [0, 2, 1], mean 1, std sqrt(2/3), bounds 1 +- 0.816 -> x = 1 gives 0.5
    scores = RunningStdNormalizer(metadata, warmup=0, k_sigma=1.0).normalize({"d": [0.0, 2.0, 1.0]}, None)
    np.testing.assert_allclose(scores, [0.0, 1.0, 0.5])
    # large offsets (PSNR in dB) do not lose precision
    shifted = RunningStdNormalizer(metadata, warmup=0, k_sigma=1.0).normalize({"d": [1e6, 1e6 + 2, 1e6 + 1]}, None)
    np.testing.assert_allclose(shifted, [0.0, 1.0, 0.5], atol=1e-9)


def test_validation_passes_pred_score_through():
    pred = np.array([0.2, 0.7, 1.0])
    np.testing.assert_array_equal(ValidationNormalizer(MNAD_LIKE).normalize({}, pred), pred)


def test_make_normalizer_and_errors():
    assert isinstance(make_normalizer("running", MNAD_LIKE, warmup=0, window=4), RunningMinMaxNormalizer)
    assert make_normalizer("running-std", MNAD_LIKE).causal and not make_normalizer("offline", MNAD_LIKE).causal
    with pytest.raises(ValueError, match="unknown normalization 'minmax'"):
        make_normalizer("minmax", MNAD_LIKE)
    with pytest.raises(ValueError, match=r"lack the cues \['distance'\]"):
        RunningMinMaxNormalizer(MNAD_LIKE).normalize({"psnr": PSNR}, None)
    no_fusion = ModelMetadata(model="X", clip_length=2, image_size=(8, 8))
    with pytest.raises(ValueError, match="--normalization validation"):
        OfflineNormalizer(no_fusion).normalize({}, None)
    with pytest.raises(ValueError, match="non-finite"):
        RunningMinMaxNormalizer(MNAD_LIKE).normalize({"psnr": [np.nan], "distance": [0.0]}, None)
    with pytest.raises(ValueError, match="window"):
        RunningMinMaxNormalizer(MNAD_LIKE, window=0)
