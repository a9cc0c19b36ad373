"""The package and its configs read on their own: no file points at documents outside the repository."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("anomalib_vadproto", "configs")
SUFFIXES = {".py", ".yaml", ".md"}
#: References to files that only exist beside a development checkout, never in the repository.
FORBIDDEN = ("spec/methods.md", "methods.md", "../shared", "shared/tools")


def test_no_file_points_outside_the_repository() -> None:
    files = [
        path
        for folder in SCANNED
        for path in sorted((REPO / folder).rglob("*"))
        if path.suffix in SUFFIXES and path.is_file() and "__pycache__" not in path.parts
    ]
    assert len(files) > 50, "the scan found too few files: wrong repository root?"
    offending = [
        f"{path.relative_to(REPO)}:{number}: {needle!r} in {line.strip()!r}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        for needle in FORBIDDEN
        if needle in line
    ]
    assert not offending, "files refer to documents outside the repository:\n" + "\n".join(offending)
