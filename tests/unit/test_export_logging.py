"""The ONNX exporter's INFO records are hidden during our export call only, and the loggers restored after."""

from __future__ import annotations

import logging

import pytest

from anomalib_vadproto.components.export import EXPORTER_LOGGERS, quiet_onnx_exporter

#: A logger the exporter writes one INFO record per deduplicated initializer to.
DEDUPLICATION = "onnx_ir.passes.common.initializer_deduplication"


@pytest.fixture
def info_root():
    """Root at INFO (as anomalib's CLI sets it); every logger touched here is restored afterwards."""
    names = ["", *EXPORTER_LOGGERS, DEDUPLICATION, "anomalib_vadproto.components.export"]
    levels = {name: logging.getLogger(name).level for name in names}
    logging.getLogger().setLevel(logging.INFO)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_quiet_inside_and_restored_after(info_root) -> None:
    child = logging.getLogger(DEDUPLICATION)
    assert child.isEnabledFor(logging.INFO)
    with quiet_onnx_exporter() as quiet:
        assert quiet
        assert not child.isEnabledFor(logging.INFO)
        assert child.isEnabledFor(logging.WARNING)
        assert [logging.getLogger(name).level for name in EXPORTER_LOGGERS] == [logging.WARNING] * 3
    assert child.isEnabledFor(logging.INFO)
    assert [logging.getLogger(name).level for name in EXPORTER_LOGGERS] == [logging.NOTSET] * 3


def test_restored_when_the_export_fails(info_root) -> None:
    with pytest.raises(RuntimeError, match="export failed"), quiet_onnx_exporter():
        raise RuntimeError("export failed")
    assert logging.getLogger(DEDUPLICATION).isEnabledFor(logging.INFO)


def test_a_level_the_user_set_is_kept(info_root) -> None:
    logging.getLogger("onnx_ir").setLevel(logging.INFO)
    with quiet_onnx_exporter():
        assert logging.getLogger(DEDUPLICATION).isEnabledFor(logging.INFO)
        assert logging.getLogger("onnxscript").level == logging.WARNING
    assert logging.getLogger("onnx_ir").level == logging.INFO


def test_nothing_is_hidden_at_debug(info_root) -> None:
    logging.getLogger("anomalib_vadproto.components.export").setLevel(logging.DEBUG)
    with quiet_onnx_exporter() as quiet:
        assert not quiet
        assert logging.getLogger(DEDUPLICATION).isEnabledFor(logging.INFO)
