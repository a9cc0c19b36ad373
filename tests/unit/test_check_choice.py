"""One check for every string option: :func:`anomalib_vadproto.errors.check_choice` and its one-line message."""

from __future__ import annotations

import pytest
from anomalib.data.datasets.base.video import VideoTargetFrame

from anomalib_vadproto import Apn, Cdda, DlanAc, LgnNet, Mnad
from anomalib_vadproto.components.clip import as_enum
from anomalib_vadproto.components.fast import check_compile_mode
from anomalib_vadproto.components.losses import gradient_loss
from anomalib_vadproto.components.memory import Memory
from anomalib_vadproto.data.synthetic_video import make_synthetic_avenue, render_synthetic_video
from anomalib_vadproto.data.video_io import write_video
from anomalib_vadproto.errors import InvalidArgumentError, UsageError, check_choice
from anomalib_vadproto.metrics import VideoProtocolAUC
from anomalib_vadproto.models.dlan_ac.som import AdaptiveClusterer, decay_factor
from anomalib_vadproto.models.lgn_net.st_lstm import SpatioTemporalStack

TINY = {"image_size": 32, "grayscale": True, "width": 4}


def test_returns_the_value_when_it_is_a_choice():
    assert check_choice("score", "pixelwise", ("product", "pixelwise")) == "pixelwise"
    assert check_choice("variant", "glo", {"lgn": 1, "glo": 2}) == "glo"  # a dict's keys are its choices
    assert check_choice("compile_mode", None, (None, "default")) is None


def test_the_message_names_the_argument_lists_the_choices_on_one_line():
    with pytest.raises(InvalidArgumentError) as caught:
        check_choice("score", "sum", ("product", "pixelwise"))
    assert str(caught.value) == "score must be one of ('product', 'pixelwise'), got 'sum'"
    assert "\n" not in str(caught.value)
    # a usage error (the CLI prints it on one line) that callers catching ValueError still catch
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, ValueError)


def test_any_iterable_of_choices_is_listed_in_its_order():
    with pytest.raises(ValueError, match=r"^mode must be one of \('b', 'a'\), got 'c'$"):
        check_choice("mode", "c", iter(["b", "a"]))


def test_as_enum_reports_a_bad_member_through_the_same_check():
    assert as_enum("target_frame", "LAST", VideoTargetFrame) is VideoTargetFrame.LAST
    with pytest.raises(InvalidArgumentError, match=r"target_frame must be one of \('first', 'last', 'mid', 'all'\)"):
        as_enum("target_frame", "middle", VideoTargetFrame)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Mnad(task="forecast", **TINY), "task must be one of ('prediction', 'reconstruction'), got 'forecast'"),
        (lambda: Mnad(test_update="per_video", **TINY), "test_update must be one of ('per_batch', 'per_clip')"),
        (lambda: LgnNet(variant="both", **TINY), "variant must be one of ('lgn', 'lgn_st', 'loc', 'glo'), got 'both'"),
        (lambda: LgnNet(frame_norm="none", **TINY), "frame_norm must be one of ('per_frame', 'pooled')"),
        (lambda: Apn(context_fusion="max", **TINY), "context_fusion must be one of ('sum', 'concat')"),
        (lambda: Apn(lr_schedule="step", **TINY), "lr_schedule must be one of ('constant', 'cosine')"),
        (lambda: DlanAc(stage2_init="copy", **TINY), "stage2_init must be one of ('continue', 'fresh')"),
        (lambda: DlanAc(gradient_border="mirror", **TINY), "gradient_border must be one of ('pad', 'zero')"),
        (lambda: DlanAc(som_backend="cuda", **TINY), "backend must be one of ('auto', 'host', 'triton')"),
        (lambda: Cdda(score="sum", **TINY), "score must be one of ('product', 'pixelwise'), got 'sum'"),
        (lambda: Cdda(attention="none", **TINY), "attention must be one of ('code', 'paper'), got 'none'"),
        (lambda: Cdda(cluster_distance="cosine", **TINY), "cluster_distance must be one of ('squared', 'euclidean')"),
        (lambda: Cdda(centre_step="all", **TINY), "centre_step must be one of ('centres', 'centres_and_projection')"),
        (lambda: Memory(4, 8, rescale="max"), "rescale must be one of ('code', 'paper'), got 'max'"),
        (lambda: SpatioTemporalStack(3, 4, cell="gru"), "cell must be one of ('st_lstm', 'conv_lstm'), got 'gru'"),
        (lambda: AdaptiveClusterer(4, 4, decay="step"), "decay must be one of ('asymptotic', 'linear')"),
        (lambda: decay_factor(1, 10, "step"), "decay must be one of ('asymptotic', 'linear'), got 'step'"),
        (lambda: gradient_loss(None, None, border="mirror"), "border must be one of ('pad', 'zero'), got 'mirror'"),
        (lambda: check_compile_mode("fast", True, "Mnad"), "compile_mode must be one of (None, 'default'"),
        (lambda: VideoProtocolAUC({"psnr": 1.0}, smoothing_mode="wrap"), "smoothing_mode must be one of ("),
        (lambda: render_synthetic_video("val", 0), "split must be one of ('train', 'test'), got 'val'"),
        (lambda: make_synthetic_avenue("unused", codec="h264"), "codec must be one of ('mjpeg', 'mpeg4', 'ffv1')"),
        (lambda: make_synthetic_avenue("unused", mask_format="jpg"), "mask_format must be one of ('mat', 'png')"),
        (lambda: write_video("unused.avi", [], codec="h264"), "codec must be one of ('ffv1', 'mjpeg', 'mpeg4')"),
    ],
)
def test_models_components_metrics_and_data_check_their_options_with_it(make, message):
    with pytest.raises(InvalidArgumentError) as caught:
        make()
    assert message in str(caught.value)
