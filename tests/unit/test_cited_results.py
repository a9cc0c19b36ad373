"""Every results file the documentation cites by name exists under ``benchmarks/results/``."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
#: A results file's name: a stem, a UTC stamp, an optional figure index (``…_0.png``).
CITED = re.compile(r"(?<![\w…])([A-Za-z][\w\-.]*_\d{8}T\d{6}(?:_\d+)?\.(?:json|png))")


def documents() -> list[Path]:
    """The user-facing and analysis documents that cite results."""
    return [
        REPO / "README.md",
        REPO / "CHANGELOG.md",
        *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "anomalib_vadproto" / "models").glob("*/README.md")),
        *sorted((REPO / "research").glob("*.md")),
    ]


def test_the_pattern_finds_full_names_and_skips_abbreviations() -> None:
    text = "see `accuracy_cdda_lite_ped2_20261205T152950.json`, `…_seed43_20261205T095933.json` and a_1.json"
    assert CITED.findall(text) == ["accuracy_cdda_lite_ped2_20261205T152950.json"]


def test_every_cited_results_file_exists() -> None:
    stored = {path.name for path in RESULTS.rglob("*") if path.is_file()}
    missing = {
        f"{document.relative_to(REPO)}: {name}"
        for document in documents()
        for name in CITED.findall(document.read_text(encoding="utf-8"))
        if name not in stored
    }
    assert len(documents()) > 8
    assert not missing, sorted(missing)
