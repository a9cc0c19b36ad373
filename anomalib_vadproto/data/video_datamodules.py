"""The module path of ``LocalAvenue`` and ``LocalShanghaiTech`` before 0.2.

They now live in :mod:`anomalib_vadproto.data.avenue` and :mod:`anomalib_vadproto.data.shanghaitech`;
this module is kept so that run folders written earlier, whose ``config.yaml`` names
``anomalib_vadproto.data.video_datamodules.LocalAvenue``, still load.
"""

from anomalib_vadproto.data.avenue import LocalAvenue
from anomalib_vadproto.data.shanghaitech import LocalShanghaiTech

__all__ = ["LocalAvenue", "LocalShanghaiTech"]
