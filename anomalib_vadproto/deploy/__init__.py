"""Inference with exported models (OpenVINO IR) on clips."""

from .openvino import OpenVINOClipModel

__all__ = ["OpenVINOClipModel"]
