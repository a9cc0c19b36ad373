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

PLUGIN_COMMANDS = {
    "demo": "synthetic data -> train -> test -> OpenVINO export -> parity check and AUCs (no download)",
    "make-synthetic": "write the synthetic video dataset in anomalib's UCSDped layout",
    "score": "score a video file, frame folder, stream or camera with an exported model",
}
HELP_OPTIONS = ("-h", "--help")


def usage() -> str:
    """Return the short help of ``anomalib-vadproto`` itself: the plugin commands, then anomalib's."""
    width = max(len(name) for name in PLUGIN_COMMANDS) + 2
    commands = "\n".join(f"  {name:<{width}}{text}" for name, text in PLUGIN_COMMANDS.items())
    return (
        "usage: anomalib-vadproto COMMAND [ARGS ...]\n\n"
        "anomalib's CLI with the plugin's video models (Mnad, DlanAc, LgnNet, Apn, Cdda) and datamodules\n"
        "(LocalUCSDped, LocalAvenue, LocalShanghaiTech) registered, plus the plugin's own commands.\n\n"
        f"plugin commands:\n{commands}\n\n"
        "Every other command is anomalib's (train, test, fit, validate, predict, export, benchmark, ...),\n"
        "run exactly as `anomalib COMMAND ...`, e.g. `anomalib-vadproto train --model Mnad --data LocalUCSDped`.\n\n"
        "`anomalib-vadproto COMMAND --help` shows a command's options (anomalib's help for anomalib's commands);\n"
        "`anomalib --help` lists anomalib's commands.\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Dispatch to a plugin command or to anomalib's CLI; print the short help without a command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in HELP_OPTIONS:
        print(usage(), end="")
        return
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

    import anomalib_vadproto

    anomalib_vadproto.register()  # the models and datamodules, before anomalib parses --model / --data
    check_model_name(args)

    sys.argv = [sys.argv[0], *args]
    anomalib_main()


def _option_value(args: list[str], option: str) -> str | None:
    """Return the value of the last ``option VALUE`` or ``option=VALUE`` in ``args`` (``None`` if absent)."""
    value = None
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(option + "="):
            value = arg[len(option) + 1 :]
    return value


def check_model_name(args: list[str]) -> None:
    """Refuse ``--model NAME`` in one line, with the valid names, when no model class is called ``NAME``.

    jsonargparse resolves ``--model`` by class name (``DlanAc``), not by the snake-case name anomalib's
    ``get_model`` also accepts (``dlan_ac``), and refuses other names with a ten-line message that lists
    no valid name. That message is printed by jsonargparse's ``ArgumentParser.error`` while parsing,
    before any plugin code runs, so the plugin cannot shorten it under the ``anomalib`` executable
    without patching jsonargparse; ``anomalib-vadproto`` checks the name here, before handing the
    arguments to anomalib. Only a bare identifier is checked: dotted class paths, config files and
    inline JSON/YAML are left to jsonargparse, and so is any name a subclass of ``AnomalibModule`` has.
    Exits with status 2, as jsonargparse does for parse errors.

    Args:
        args: The command line after the program name.

    """
    from pathlib import Path

    value = _option_value(args, "--model")
    if value is None or not value.isidentifier() or any(arg in HELP_OPTIONS for arg in args) or Path(value).exists():
        return
    from anomalib.models import AnomalibModule, list_models

    classes, pending = set(), [AnomalibModule]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass not in classes:
                classes.add(subclass)
                pending.append(subclass)
    if value in {cls.__name__ for cls in classes}:
        return
    ours = sorted(cls.__name__ for cls in classes if cls.__module__.startswith("anomalib_vadproto."))
    theirs = sorted(set(list_models(case="pascal")) - set(ours))
    valid = ours + theirs
    key = value.replace("_", "").replace("-", "").lower()
    match = next((name for name in valid if name.lower() == key), None)
    hint = f"use --model {match}" if match else "model names are class names"
    sys.stderr.write(
        f"error: --model {value} is not a model class name; {hint}. Video models: {', '.join(ours)};"
        f" anomalib's: {', '.join(theirs)}; or a dotted class path.\n"
    )
    sys.exit(2)


if __name__ == "__main__":
    main()
