"""Known-answer tests for the papers' evaluation protocol (per-video min-max, fusion, APN's smoothing)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anomalib_vadproto.metrics import (
    ProtocolResult,
    VideoProtocolAUC,
    fuse_cues,
    gaussian_kernel,
    minmax_per_video,
    per_video_auc,
    protocol_auc,
    smooth_per_video,
)

MNAD_WEIGHTS = {"psnr": 0.6, "distance": 0.4}

# Three test videos with hand-computed per-video normalisation and MNAD fusion
# S = 0.6 * (1 - g(PSNR)) + 0.4 * g(D).
#   a: g(P) = [1, .8, 0, .9, 1], g(D) = [0, .5, 1, 0, 0]  -> S = [0, .32, 1, .06, 0]
#   b: g(P) = [1, .5, 0, 1],     g(D) = [0, .5, 1, 0]     -> S = [0, .5, 1, 0]
#   c: g(P) = [1, .5, 0],        D constant -> 0          -> S = [0, .3, .6]   (all normal)
VIDEOS = np.array(["a"] * 5 + ["b"] * 4 + ["c"] * 3)
FRAMES = np.array([4, 5, 6, 7, 8, 4, 5, 6, 7, 4, 5, 6])
LABELS = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0])
PSNR = np.array([30.0, 28, 20, 29, 30, 40, 36, 32, 40, 33, 31, 29])
DISTANCE = np.array([0.1, 0.3, 0.5, 0.1, 0.1, 2, 4, 6, 2, 1, 1, 1])
FUSED = np.array([0, 0.32, 1, 0.06, 0, 0, 0.5, 1, 0, 0, 0.3, 0.6])
MICRO = 28 / 32  # 4 anomalous x 8 normal frames: 16 + 7 + 5 correctly ordered pairs
MACRO = (5 / 6 + 1.0) / 2  # video c (one class) is skipped


def _feed(metric: VideoProtocolAUC, index: np.ndarray | slice = slice(None)) -> None:
    metric.update(
        video_paths=list(VIDEOS[index]),
        frames=torch.as_tensor(FRAMES[index]),
        labels=torch.as_tensor(LABELS[index]).bool(),
        cues={"psnr": torch.as_tensor(PSNR[index]), "distance": torch.as_tensor(DISTANCE[index])},
    )


def _apn_reference_taps() -> np.ndarray:
    """APN code taps: (1 / (sqrt(2 pi) 2)) exp(-(i - 7)^2 / 8), i = 0..14 (not normalised)."""
    i = np.arange(15)
    return np.exp(-((i - 7) ** 2) / 8) / (np.sqrt(2 * np.pi) * 2)


# ---------------------------------------------------------------------------------------------------
# numpy functions
# ---------------------------------------------------------------------------------------------------
def test_minmax_per_video_hand_computed_with_constant_video() -> None:
    values = np.array([1.0, 3.0, 2.0, 5.0, 5.0, 10.0, 0.0, 2.5])
    video = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    expected = np.array([0.0, 1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.25])
    np.testing.assert_allclose(minmax_per_video(values, video), expected)


def test_minmax_per_video_interleaved_videos_and_single_frame() -> None:
    values = np.array([4.0, 10.0, 2.0, 20.0, 3.0, 7.0])
    video = np.array(["x", "y", "x", "y", "x", "z"])  # z has one frame -> constant -> 0
    expected = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.0])
    out = minmax_per_video(values, video)
    np.testing.assert_allclose(out, expected)
    assert not np.isnan(out).any()


def test_fuse_cues_matches_hand_computed_mnad_fusion() -> None:
    fused = fuse_cues({"psnr": PSNR, "distance": DISTANCE}, VIDEOS, MNAD_WEIGHTS, normal_cues=("psnr",))
    np.testing.assert_allclose(fused, FUSED, atol=1e-12)


def test_fuse_cues_orientation_and_constant_cue() -> None:
    # A normality cue is inverted, an anomaly cue is not; a constant cue contributes 0 either way.
    video = np.zeros(3, dtype=int)
    np.testing.assert_allclose(fuse_cues({"s": [1.0, 2.0, 3.0]}, video, {"s": 1.0}, normal_cues=()), [0, 0.5, 1])
    np.testing.assert_allclose(fuse_cues({"s": [1.0, 2.0, 3.0]}, video, {"s": 1.0}, normal_cues=("s",)), [1, 0.5, 0])
    np.testing.assert_allclose(fuse_cues({"s": [7.0, 7.0, 7.0]}, video, {"s": 1.0}, normal_cues=("s",)), [0, 0, 0])


def test_protocol_auc_micro_and_macro_match_sklearn() -> None:
    micro, macro = protocol_auc(LABELS, FUSED, VIDEOS)
    assert micro == pytest.approx(roc_auc_score(LABELS, FUSED))
    assert micro == pytest.approx(MICRO)
    per_video = [roc_auc_score(LABELS[VIDEOS == v], FUSED[VIDEOS == v]) for v in ("a", "b")]
    assert macro == pytest.approx(np.mean(per_video))
    assert macro == pytest.approx(MACRO)
    videos, aucs = per_video_auc(LABELS, FUSED, VIDEOS)
    assert videos.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(aucs[:2], per_video)
    assert math.isnan(aucs[2])


def test_per_video_normalisation_changes_the_auc() -> None:
    # Video "easy" is predicted well everywhere (high PSNR), video "hard" badly everywhere. Pooled raw
    # scores rank all of "hard"'s normal frames above "easy"'s anomalous ones; per-video
    # normalisation removes the offset and separates both videos perfectly.
    video = np.array(["easy"] * 4 + ["hard"] * 4)
    labels = np.array([0, 0, 1, 0, 0, 1, 0, 0])
    psnr = np.array([40.0, 39.0, 35.0, 40.0, 25.0, 20.0, 25.0, 24.0])
    pooled = roc_auc_score(labels, -psnr)
    micro, macro = protocol_auc(labels, fuse_cues({"psnr": psnr}, video, {"psnr": 1.0}), video)
    assert pooled == pytest.approx(0.75)  # easy's anomaly (35 dB) only beats easy's normal frames
    assert micro == pytest.approx(1.0)
    assert macro == pytest.approx(1.0)


def test_gaussian_kernel_matches_apn_taps_up_to_normalisation() -> None:
    reference = _apn_reference_taps()
    assert reference.sum() == pytest.approx(0.9998, abs=1e-4)  # the un-normalised Gaussian density
    kernel = gaussian_kernel(15, 2.0)
    assert kernel.shape == (15,)
    assert kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel, reference / reference.sum())
    np.testing.assert_allclose(kernel, kernel[::-1])
    np.testing.assert_allclose(gaussian_kernel(1, 2.0), [1.0])


@pytest.mark.parametrize("mode", ["nearest", "reflect", "hold"])
def test_smoothing_keeps_constant_sequences_and_length(mode: str) -> None:
    scores = np.concatenate([np.full(30, 0.7), np.full(5, 0.2), np.full(1, 0.9)])
    video = np.repeat([0, 1, 2], [30, 5, 1])
    out = smooth_per_video(scores, video, taps=15, sigma=2.0, mode=mode)
    assert out.shape == scores.shape
    np.testing.assert_allclose(out, scores, atol=1e-12)


@pytest.mark.parametrize("mode", ["nearest", "reflect", "hold"])
def test_smoothing_spreads_an_impulse_with_the_gaussian_weights(mode: str) -> None:
    scores = np.zeros(41)
    scores[20] = 1.0
    out = smooth_per_video(scores, np.zeros(41, dtype=int), taps=15, sigma=2.0, mode=mode)
    kernel = gaussian_kernel(15, 2.0)
    assert out.shape == (41,)
    np.testing.assert_allclose(out[13:28], kernel, atol=1e-12)
    np.testing.assert_allclose(out[13:28], out[13:28][::-1], atol=1e-12)  # symmetric
    np.testing.assert_allclose(out[:13], 0.0, atol=1e-12)
    np.testing.assert_allclose(out[28:], 0.0, atol=1e-12)
    assert out.sum() == pytest.approx(1.0)  # sum preserved away from the borders


def test_smoothing_border_modes_hand_computed() -> None:
    k = gaussian_kernel(3, 1.0)  # [w, c, w]
    w, c = k[0], k[1]
    x = np.array([1.0, 0.0, 0.0, 0.0])
    video = np.zeros(4, dtype=int)
    # nearest: pad with edge values  [1 | 1 0 0 0 | 0]
    np.testing.assert_allclose(smooth_per_video(x, video, 3, 1.0, mode="nearest"), [w + c, w, 0, 0])
    # reflect (d c b a | a b c d): same as nearest for one-sample padding
    np.testing.assert_allclose(smooth_per_video(x, video, 3, 1.0, mode="reflect"), [w + c, w, 0, 0])
    # hold: valid outputs [w, 0], border outputs copy the nearest valid one
    np.testing.assert_allclose(smooth_per_video(x, video, 3, 1.0, mode="hold"), [w, w, 0, 0])
    # reflect differs from nearest with a wider kernel: pad 2 -> [0 1 | 1 0 0 0 | 0 0]
    k5 = gaussian_kernel(5, 1.0)
    expected_reflect0 = k5[1] * 1 + k5[2] * 1 + k5[3] * 0 + k5[4] * 0 + k5[0] * 0
    expected_nearest0 = k5[0] + k5[1] + k5[2]
    assert smooth_per_video(x, video, 5, 1.0, mode="reflect")[0] == pytest.approx(expected_reflect0)
    assert smooth_per_video(x, video, 5, 1.0, mode="nearest")[0] == pytest.approx(expected_nearest0)


def test_smoothing_never_mixes_videos() -> None:
    # Interleave two videos (each in temporal order); each must be smoothed as if it were alone.
    rng = np.random.default_rng(0)
    a, b = rng.random(20), rng.random(25)
    in_a = np.zeros(45, dtype=bool)
    in_a[rng.choice(45, size=20, replace=False)] = True
    scores = np.empty(45)
    scores[in_a], scores[~in_a] = a, b
    video = np.where(in_a, "a", "b")
    out = smooth_per_video(scores, video, taps=15, sigma=2.0)
    np.testing.assert_allclose(out[in_a], smooth_per_video(a, np.zeros(20), taps=15, sigma=2.0))
    np.testing.assert_allclose(out[~in_a], smooth_per_video(b, np.zeros(25), taps=15, sigma=2.0))


# ---------------------------------------------------------------------------------------------------
# VideoProtocolAUC
# ---------------------------------------------------------------------------------------------------
def test_metric_known_answer_mnad() -> None:
    metric = VideoProtocolAUC(cue_weights=MNAD_WEIGHTS)
    _feed(metric)
    out = metric.compute()
    assert set(out) == {"protocol_AUC_micro", "protocol_AUC_macro"}
    assert float(out["protocol_AUC_micro"]) == pytest.approx(MICRO, abs=1e-6)
    assert float(out["protocol_AUC_macro"]) == pytest.approx(MACRO, abs=1e-6)

    result = metric.result()
    assert isinstance(result, ProtocolResult)
    assert result.video_names == ("a", "b", "c")
    assert [f.tolist() for f in result.frame_indices] == [[4, 5, 6, 7, 8], [4, 5, 6, 7], [4, 5, 6]]
    np.testing.assert_allclose(np.concatenate(result.scores), FUSED, atol=1e-12)
    np.testing.assert_array_equal(result.all_labels, LABELS)
    np.testing.assert_allclose(result.video_auc[:2], [5 / 6, 1.0])
    assert math.isnan(result.video_auc[2])
    assert result.micro == pytest.approx(MICRO)
    assert result.macro == pytest.approx(MACRO)
    assert result.num_frames == 12
    np.testing.assert_allclose(result.cue_anomaly["distance"][2], 0.0)  # constant cue in video c
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.micro = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        result.scores[0][0] = 1.0


def test_result_cue_auc_known_answer() -> None:
    # PSNR alone, 1 - g(P): a [0, .2, 1, .1, 0], b [0, .5, 1, 0], c [0, .5, 1]; g(D): a [0, .5, 1, 0, 0],
    # b [0, .5, 1, 0], c constant -> 0. Ties count one half.
    metric = VideoProtocolAUC(cue_weights=MNAD_WEIGHTS)
    _feed(metric)
    aucs = metric.result().cue_auc()
    assert set(aucs) == {"psnr", "distance"}
    assert aucs["psnr"] == pytest.approx((26.5 / 32, (5 / 6 + 1.0) / 2))
    # In floating point a's (0.3 - 0.1) / 0.4 is just under b's 0.5, so that pair is ordered, not tied.
    assert aucs["distance"] == pytest.approx((27.5 / 32, (4 / 6 + 1.0) / 2))


def test_metric_prefix() -> None:
    metric = VideoProtocolAUC(cue_weights=MNAD_WEIGHTS, prefix="paper_")
    _feed(metric)
    assert set(metric.compute()) == {"paper_AUC_micro", "paper_AUC_macro"}


def test_metric_is_invariant_to_batch_order() -> None:
    reference = VideoProtocolAUC(cue_weights=MNAD_WEIGHTS, smoothing=True, smoothing_taps=3, smoothing_sigma=1.0)
    _feed(reference)
    expected = reference.result()

    shuffled = VideoProtocolAUC(cue_weights=MNAD_WEIGHTS, smoothing=True, smoothing_taps=3, smoothing_sigma=1.0)
    perm = np.random.default_rng(1).permutation(len(VIDEOS))
    for batch in np.array_split(perm, 4):
        _feed(shuffled, batch)
    got = shuffled.result()

    assert got.video_names == expected.video_names
    for g, e in zip(got.scores, expected.scores, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-12)
    for g, e in zip(got.frame_indices, expected.frame_indices, strict=True):
        np.testing.assert_array_equal(g, e)
    assert got.micro == pytest.approx(expected.micro)
    assert got.macro == pytest.approx(expected.macro)
    # Smoothing on sorted frames really changed the scores (so order mattered and was restored).
    assert not np.allclose(np.concatenate(got.scores), FUSED)


def test_metric_smoothing_matches_apn_reference_pipeline() -> None:
    # APN code: per video, min-max normalise each normality cue, smooth each with the raw 15-tap
    # Gaussian (valid mode, borders hold the nearest computed value), fuse 0.5/0.5, AUC vs 1 - label.
    rng = np.random.default_rng(3)
    lengths, names = [40, 33, 50], ["v0", "v1", "v2"]
    taps = _apn_reference_taps()
    metric = VideoProtocolAUC({"psnr": 0.5, "psnr_fea": 0.5}, normal_cues=("psnr", "psnr_fea"), smoothing=True)
    metric_hold = VideoProtocolAUC(
        {"psnr": 0.5, "psnr_fea": 0.5}, normal_cues=("psnr", "psnr_fea"), smoothing=True, smoothing_mode="hold"
    )
    all_normality, all_labels = [], []
    for name, length in zip(names, lengths, strict=True):
        labels = np.zeros(length, dtype=int)
        labels[length // 2 : length // 2 + 8] = 1
        psnr = 30 - 3 * labels + rng.normal(0, 1.5, length)
        psnr_fea = 20 - 2 * labels + rng.normal(0, 1.5, length)
        smoothed = []
        for cue in (psnr, psnr_fea):
            g = (cue - cue.min()) / (cue.max() - cue.min())
            valid = np.convolve(g, taps, mode="valid")
            smoothed.append(np.concatenate([np.full(7, valid[0]), valid, np.full(7, valid[-1])]))
        all_normality.append(0.5 * smoothed[0] + 0.5 * smoothed[1])
        all_labels.append(labels)
        for m in (metric, metric_hold):
            m.update(
                [name] * length,
                torch.arange(4, 4 + length),
                torch.as_tensor(labels),
                {"psnr": torch.as_tensor(psnr), "psnr_fea": torch.as_tensor(psnr_fea)},
            )
    reference = roc_auc_score(1 - np.concatenate(all_labels), np.concatenate(all_normality))
    assert metric_hold.result().micro == pytest.approx(reference)
    # The default border mode ("nearest") differs only in the first/last 7 frames of each video.
    assert metric.result().micro == pytest.approx(reference, abs=0.05)


def test_smoothing_fused_equals_fusing_smoothed_cues() -> None:
    rng = np.random.default_rng(2)
    video = np.repeat([0, 1], [30, 22])
    p, d = rng.random(52), rng.random(52)
    weights = {"psnr": 0.3, "distance": 0.7}
    fused_then_smoothed = smooth_per_video(fuse_cues({"psnr": p, "distance": d}, video, weights), video)
    smoothed_then_fused = 0.3 * smooth_per_video(1 - minmax_per_video(p, video), video) + 0.7 * smooth_per_video(
        minmax_per_video(d, video), video
    )
    np.testing.assert_allclose(fused_then_smoothed, smoothed_then_fused, atol=1e-12)


def test_metric_reset_clears_everything() -> None:
    metric = VideoProtocolAUC(cue_weights=MNAD_WEIGHTS)
    _feed(metric)
    metric.compute()
    metric.reset()
    assert metric._paths == {}
    assert metric._result is None
    assert metric.video_ids == [] and metric.cue_0 == [] and metric.cue_1 == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        with pytest.raises(ValueError, match="without any data"):
            metric.compute()
    # New data after a reset is evaluated on its own (video "b" only).
    mask = VIDEOS == "b"
    _feed(metric, mask)
    result = metric.result()
    assert result.video_names == ("b",)
    assert result.micro == pytest.approx(1.0)


def test_metric_merge_state() -> None:
    left, right = VideoProtocolAUC(MNAD_WEIGHTS), VideoProtocolAUC(MNAD_WEIGHTS)
    _feed(left, VIDEOS != "b")
    _feed(right, VIDEOS == "b")
    left.merge_state(right)
    result = left.result()
    assert result.video_names == ("a", "b", "c")
    assert result.micro == pytest.approx(MICRO)


def test_metric_forward_only_accumulates() -> None:
    metric = VideoProtocolAUC(MNAD_WEIGHTS)
    assert (
        metric(
            list(VIDEOS),
            torch.as_tensor(FRAMES),
            torch.as_tensor(LABELS),
            {"psnr": torch.as_tensor(PSNR), "distance": torch.as_tensor(DISTANCE)},
        )
        is None
    )
    assert metric.result().micro == pytest.approx(MICRO)


# ---------------------------------------------------------------------------------------------------
# Errors and undefined AUCs
# ---------------------------------------------------------------------------------------------------
def test_nan_cue_names_cue_and_video() -> None:
    metric = VideoProtocolAUC(MNAD_WEIGHTS)
    psnr = torch.tensor([30.0, float("nan")])
    with pytest.raises(ValueError, match=r"cue 'psnr' has a non-finite value \(nan\) for video 'clip_07', frame 5"):
        metric.update(
            ["clip_07", "clip_07"],
            torch.tensor([4, 5]),
            torch.tensor([0, 1]),
            {"psnr": psnr, "distance": torch.tensor([0.1, 0.2])},
        )
    with pytest.raises(ValueError, match=r"cue 'distance' .*non-finite.*video 'v'"):
        metric.update(
            ["v", "v"],
            torch.tensor([4, 5]),
            torch.tensor([0, 1]),
            {"psnr": torch.tensor([1.0, 2.0]), "distance": torch.tensor([0.1, float("inf")])},
        )
    with pytest.raises(ValueError, match=r"cue 'psnr' contains 1 non-finite.*video 'b'"):
        fuse_cues({"psnr": [1.0, np.nan]}, ["a", "b"], {"psnr": 1.0})


def test_cue_names_must_match_weights() -> None:
    metric = VideoProtocolAUC(MNAD_WEIGHTS)
    with pytest.raises(ValueError, match=r"missing \['distance'\], unexpected \[\]"):
        metric.update(["v"], torch.tensor([4]), torch.tensor([0]), {"psnr": torch.tensor([1.0])})
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['ssim'\]"):
        metric.update(
            ["v"],
            torch.tensor([4]),
            torch.tensor([0]),
            {"psnr": torch.tensor([1.0]), "distance": torch.tensor([1.0]), "ssim": torch.tensor([1.0])},
        )
    with pytest.raises(ValueError, match=r"missing \['distance'\]"):
        fuse_cues({"psnr": [1.0]}, [0], MNAD_WEIGHTS)


def test_mismatched_lengths() -> None:
    metric = VideoProtocolAUC(MNAD_WEIGHTS)
    with pytest.raises(ValueError, match="Mismatched lengths"):
        metric.update(
            ["v", "v"],
            torch.tensor([4, 5]),
            torch.tensor([0, 1]),
            {"psnr": torch.tensor([1.0, 2.0, 3.0]), "distance": torch.tensor([1.0, 2.0])},
        )
    with pytest.raises(ValueError, match="Mismatched lengths"):
        metric.update(
            ["v"],
            torch.tensor([4, 5]),
            torch.tensor([0, 1]),
            {"psnr": torch.tensor([1.0, 2.0]), "distance": torch.tensor([1.0, 2.0])},
        )
    with pytest.raises(ValueError, match="Mismatched lengths"):
        protocol_auc([0, 1], [0.1, 0.2, 0.3], [0, 0])
    with pytest.raises(ValueError, match="Mismatched lengths"):
        minmax_per_video([1.0, 2.0], [0])
    with pytest.raises(ValueError, match="sequence of strings"):
        metric.update(
            "v", torch.tensor([4]), torch.tensor([0]), {"psnr": torch.tensor([1.0]), "distance": torch.tensor([1.0])}
        )


def test_compute_without_data() -> None:
    metric = VideoProtocolAUC(MNAD_WEIGHTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        with pytest.raises(ValueError, match="without any data"):
            metric.compute()
    with pytest.raises(ValueError, match="at least one frame"):
        protocol_auc([], [], [])


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"psnr": -0.1, "distance": 1.0}, "non-negative"),
        ({"psnr": 0.0, "distance": 0.0}, "positive sum"),
        ({"psnr": float("nan")}, "finite and non-negative"),
        ({}, "non-empty"),
    ],
)
def test_bad_weights(weights: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VideoProtocolAUC(cue_weights=weights)
    with pytest.raises(ValueError, match=match):
        fuse_cues({k: [1.0] for k in weights}, [0], weights)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match=r"normal_cues \['PSNR'\] are not among the weighted cues"):
        VideoProtocolAUC({"psnr": 1.0}, normal_cues=("PSNR",))
    with pytest.raises(ValueError, match=r"normal_cues \['psnr'\].*normal_cues=\(\)"):
        VideoProtocolAUC({"distance": 1.0})  # default normal_cues=("psnr",) without a psnr cue
    with pytest.raises(ValueError, match="positive odd integer"):
        VideoProtocolAUC({"psnr": 1.0}, smoothing_taps=14)
    with pytest.raises(ValueError, match="sigma must be positive"):
        smooth_per_video([0.0], [0], taps=15, sigma=0.0)
    with pytest.raises(ValueError, match="smoothing_mode must be one of"):
        VideoProtocolAUC({"psnr": 1.0}, smoothing_mode="wrap")


def test_bad_labels_and_frames() -> None:
    metric = VideoProtocolAUC({"psnr": 1.0})
    with pytest.raises(ValueError, match="labels must be binary"):
        metric.update(["v", "v"], torch.tensor([4, 5]), torch.tensor([0, 2]), {"psnr": torch.tensor([1.0, 2.0])})
    with pytest.raises(ValueError, match="integer frame indices"):
        metric.update(["v"], torch.tensor([4.5]), torch.tensor([0]), {"psnr": torch.tensor([1.0])})
    with pytest.raises(ValueError, match="labels must be binary"):
        protocol_auc([0, 2], [0.1, 0.2], [0, 0])


def test_duplicate_frames_raise() -> None:
    metric = VideoProtocolAUC(MNAD_WEIGHTS)
    _feed(metric)
    _feed(metric, VIDEOS == "b")  # the same frames of video b a second time
    with pytest.raises(ValueError, match=r"Frame 4 of video 'b' was fed more than once \(4 duplicate"):
        metric.compute()


def test_crc32_collision_raises() -> None:
    metric = VideoProtocolAUC({"psnr": 1.0})
    with pytest.raises(ValueError, match="same CRC-32 id"):
        metric.update(
            ["plumless", "buckeroo"], torch.tensor([0, 0]), torch.tensor([0, 1]), {"psnr": torch.tensor([1.0, 2.0])}
        )


def test_single_class_gives_nan_micro_with_warning() -> None:
    metric = VideoProtocolAUC({"psnr": 1.0})
    metric.update(
        ["v"] * 3 + ["w"] * 2,
        torch.tensor([0, 1, 2, 0, 1]),
        torch.zeros(5, dtype=torch.bool),
        {"psnr": torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])},
    )
    with pytest.warns(UserWarning, match="AUC is undefined"):
        out = metric.compute()
    assert math.isnan(float(out["protocol_AUC_micro"]))
    assert math.isnan(float(out["protocol_AUC_macro"]))
    with pytest.warns(UserWarning, match="AUC is undefined"):
        micro, macro = protocol_auc([1, 1], [0.1, 0.2], [0, 1])
    assert math.isnan(micro) and math.isnan(macro)


def test_macro_nan_when_no_video_has_both_classes() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    video = np.array([0, 0, 1, 1])
    with pytest.warns(UserWarning, match="macro"):
        micro, macro = protocol_auc(labels, scores, video)
    assert micro == pytest.approx(1.0)
    assert math.isnan(macro)
