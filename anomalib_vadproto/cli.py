"""``anomalib-vadproto``: anomalib's CLI with the plugin registered, plus the plugin's own commands.

``anomalib-vadproto train|test|export|predict|fit ...`` is exactly ``anomalib ...`` with the five
models importable by their short names (the fallback where ``.pth`` files are not processed).
Plugin commands:

* ``anomalib-vadproto demo`` — generate the embedded synthetic dataset, train and test a lite model,
  export it to OpenVINO, check OpenVINO against PyTorch and print the AUCs.
* ``anomalib-vadproto make-synthetic ROOT`` — write the synthetic dataset in anomalib's UCSDped layout.
* ``anomalib-vadproto score MODEL VIDEO`` — score every frame of a video file, frame folder, stream or
  camera with an exported model; writes per-frame scores (CSV, JSON), a score curve and an overlay
  video (see :mod:`anomalib_vadproto.deploy.score`).
"""

from __future__ import annotations

import sys

PLUGIN_COMMANDS = ("demo", "make-synthetic", "score")


def main(argv: list[str] | None = None) -> None:
    """Dispatch to a plugin command or to anomalib's CLI."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        from anomalib_vadproto.demo import main as demo_main

        demo_main(args[1:])
        return
    if args and args[0] == "make-synthetic":
        from anomalib_vadproto.data.synthetic import main as synthetic_main

        synthetic_main(args[1:])
        return
    if args and args[0] == "score":
        from anomalib_vadproto.deploy.score import main as score_main

        status = score_main(args[1:])
        if status:
            sys.exit(status)
        return

    from anomalib.cli.cli import main as anomalib_main

    import anomalib_vadproto  # noqa: F401  - registers the models before anomalib parses --model

    sys.argv = [sys.argv[0], *args]
    anomalib_main()


if __name__ == "__main__":
    main()
