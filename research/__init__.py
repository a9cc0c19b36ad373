"""One-off investigations: each answered one question about a model or the export, and its results are cited.

Run from the repository's root as ``python -m research.<name>``; the scripts share the benchmarks'
helpers (``benchmarks.common``, ``benchmarks.speed``) and write their results files into
``benchmarks/results/`` with :func:`benchmarks.common.record`. ``research/README.md`` says what each
one asked and where its answer is cited. Their tests (``research/tests/``) are not part of the default
test run: ``python -m pytest research/tests``.
"""
