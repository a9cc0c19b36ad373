"""The module path of ``LocalUCSDped`` before 0.2 (now :mod:`anomalib_vadproto.data.ucsd_ped`).

Kept so that run folders written earlier, whose ``config.yaml`` names
``anomalib_vadproto.data.datamodules.LocalUCSDped``, still load.
"""

from anomalib_vadproto.data.clips import ClipReaderMixin, FrameCache, fill_caches_for_workers, read_image_files
from anomalib_vadproto.data.ucsd_ped import CachedUCSDpedClipsIndexer, LocalUCSDped, check_ucsd_layout

__all__ = [
    "CachedUCSDpedClipsIndexer",
    "ClipReaderMixin",
    "FrameCache",
    "LocalUCSDped",
    "check_ucsd_layout",
    "fill_caches_for_workers",
    "read_image_files",
]
