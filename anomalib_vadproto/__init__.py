"""anomalib-vadproto: five published video anomaly detection methods as anomalib 2.7 video models.

Importing the package registers the models with anomalib (they are direct ``AnomalibModule``
subclasses), so ``anomalib train --model Mnad`` and ``anomalib.models.get_model("mnad")`` work.
"""

from .data.datamodules import LocalUCSDped
from .data.video_datamodules import LocalAvenue, LocalShanghaiTech
from .models import Apn, Cdda, DlanAc, LgnNet, Mnad

__version__ = "0.1.0"

__all__ = [
    "Apn",
    "Cdda",
    "DlanAc",
    "LgnNet",
    "LocalAvenue",
    "LocalShanghaiTech",
    "LocalUCSDped",
    "Mnad",
    "__version__",
]
