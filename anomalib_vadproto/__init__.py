"""anomalib-vadproto: five published video anomaly detection methods as anomalib 2.7 video models.

Importing the package is cheap: the models and datamodules below are imported on first access (PEP 562),
so ``anomalib-vadproto score`` and ``make-synthetic`` start without torch models or anomalib's data stack.

anomalib's ``get_model``/``list_models`` and jsonargparse's short names (``--model Mnad``, ``--data
LocalUCSDped``, ``--model.visualizer VideoVisualizer``) only see classes that were imported, so
:func:`register` imports them all. The ``.pth``
hook (``_anomalib_vadproto_autoload``) calls it as soon as ``anomalib.models`` is imported, so ``anomalib
train --model Mnad`` and ``anomalib.models.get_model("mnad")`` work without importing anything by hand.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from .data.avenue import LocalAvenue
    from .data.shanghaitech import LocalShanghaiTech
    from .data.ucsd_ped import LocalUCSDped
    from .data.video_folder import VideoFolder
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
    "VideoFolder",
    "__version__",
    "register",
]

_SOURCES = {
    "Apn": ".models",
    "Cdda": ".models",
    "DlanAc": ".models",
    "LgnNet": ".models",
    "Mnad": ".models",
    "LocalUCSDped": ".data.ucsd_ped",
    "LocalAvenue": ".data.avenue",
    "LocalShanghaiTech": ".data.shanghaitech",
    "VideoFolder": ".data.video_folder",
}
#: Modules :func:`register` imports: the classes anomalib's CLI should know by their short names.
_REGISTERED = (
    ".models",
    ".data.ucsd_ped",
    ".data.avenue",
    ".data.shanghaitech",
    ".data.video_folder",
    ".visualization.video_visualizer",
)

#: Deprecation warnings that every start (anomalib 2.7's image models import deprecated timm and anomalib
#: modules) or every training run (Lightning's pytree helper) emits; they concern code this plugin neither
#: uses nor can change.
#: ``(category, message regex)``, matched against the start of the message only.
THIRD_PARTY_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, r"Importing from timm\.models\.layers is deprecated"),
    (FutureWarning, r"The anomalib\.models\.components\.dinov2 package is deprecated"),
    # Lightning 2.6 builds torch's deprecated LeafSpec on every training step under torch 2.14.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)


def _filter_third_party_warnings() -> None:
    """Ignore exactly :data:`THIRD_PARTY_WARNINGS`; every other warning is shown as before."""
    for category, message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


_filter_third_party_warnings()


def register() -> None:
    """Import the models, datamodules and visualizer, registering them with anomalib and jsonargparse.

    anomalib's ``get_model``/``list_models`` look the models up among the imported direct subclasses of
    ``AnomalibModule`` and jsonargparse resolves ``--model Mnad``, ``--data LocalUCSDped`` and
    ``--model.visualizer VideoVisualizer`` among imported subclasses, so a class that was never imported
    is unknown to both. Idempotent.
    """
    for module in _REGISTERED:
        importlib.import_module(module, __name__)


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
