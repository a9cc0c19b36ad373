"""Datamodules that check local data instead of trying to download it.

anomalib's ``UCSDped`` starts a download whenever ``root/<category>`` is missing; offline, or with
a typo in the path, that surfaces as a network error. :class:`LocalUCSDped` is the same datamodule
(same arguments, same layout, same batches) that never downloads and says exactly what is missing.
"""

from __future__ import annotations

from pathlib import Path

from anomalib.data import UCSDped


def check_ucsd_layout(root: Path | str, category: str) -> Path:
    """Check ``root/category`` holds the UCSDped layout anomalib reads, and return it.

    Raises:
        FileNotFoundError: With the missing path and how to create the data.

    """
    folder = Path(root) / category
    how = (
        "Create it with `anomalib-vadproto make-synthetic <root>` (synthetic data, category 'synthetic'), or"
        " lay out UCSD Ped2 there (for the shared copy: python shared/tools/materialize_ucsd_ped2.py"
        " shared/data/ucsd_ped2_compact <root>)."
    )
    if not folder.is_dir():
        msg = f"No dataset at {folder}: expected {folder}/Train/Train001/*.tif and {folder}/Test/Test001/*.tif. {how}"
        raise FileNotFoundError(msg)
    for split in ("Train", "Test"):
        videos = [p for p in (folder / split).glob(f"{split}*") if p.is_dir() and not p.name.endswith("_gt")]
        if not videos or not any(any(v.glob("*.tif")) for v in videos):
            msg = f"{folder / split} has no video folders of .tif frames ({split}001/001.tif, ...). {how}"
            raise FileNotFoundError(msg)
    return folder


class LocalUCSDped(UCSDped):
    """anomalib's :class:`~anomalib.data.UCSDped` for data already on disk: never downloads.

    Takes exactly ``UCSDped``'s arguments. ``prepare_data`` checks the layout and raises a
    ``FileNotFoundError`` naming what is missing.
    """

    def prepare_data(self) -> None:
        """Check the local layout (no download)."""
        check_ucsd_layout(self.root, self.category)
