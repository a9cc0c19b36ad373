"""Every command written in the README runs, so a dependency release cannot break the documented path unnoticed.

The README's commands are read from the README itself (its ``bash`` blocks and the inline code that
starts a command) and each is exercised by its kind:

* the quick start and the other ``anomalib``/``anomalib-vadproto`` commands run in a workspace laid out
  like the repository's root: ``configs/`` copied, and beside it a ``../shared`` whose UCSD Ped2 compact
  copy is a small synthetic stand-in in the same form (mp4 videos, ``masks.npz``, frame labels), which the
  real ``materialize_ucsd_ped2.py`` lays out. Commands that name a lite config run verbatim; commands
  that train a paper-sized network get arguments appended that make it tiny (the verbatim line is
  parsed and instantiated by anomalib's CLI first);
* ``anomalib-vadproto demo`` runs verbatim;
* the benchmark commands (``python -m benchmarks.<name>``) and the investigations' (``python -m
  research.<name>``) are checked to parse (a run takes from minutes to hours), and so is each command
  that a results file recorded and a generated table prints (``python benchmarks/<name>.py``, the
  form before the benchmarks became a package), as the module it names now;
* a live source (a stream URL or a camera) is checked to parse: there is no camera here;
* the own-camera walkthrough (the commands that name its folder ``my_videos``: generate the stand-in,
  train on it with ``VideoFolder``, export, score a recording) runs verbatim, in order, in a workspace of
  its own (:func:`test_the_own_camera_walkthrough_runs_in_order`);
* ``pip install ...`` and ``python -m pytest`` are CI's own command (``.ci/run``), and the wheel that
  ``pip install .`` builds is checked to carry the autoload hook.

A README command that matches none of these kinds fails :func:`test_every_readme_command_is_exercised`.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, SHARED, run_cli

README = REPO / "README.md"
RUN = "results/Mnad/LocalUCSDped/UCSDped2/latest"
EXPORT_XML = "results/weights/openvino/model.xml"
#: Placeholders of the README's prose commands and what they stand for in the workspace.
PLACEHOLDERS = {"<run>": RUN, "<export>": "results", "<model>": "mnad", "<profile>": "lite", "ROOT": "generated"}
#: Appended to a command that would train a paper-sized network: tiny and one epoch.
TINY = ["--model.image_size", "[32,32]", "--model.width", "4", "--trainer.max_epochs", "1"]
TINY_EXTRA = {"DlanAc": ["--model.som_iterations", "100"], "Cdda": ["--model.kmeans_restarts", "1"]}


def readme_commands() -> list[str]:
    """The README's commands: lines of its ``bash`` blocks and inline code that starts a command, in order."""
    text = README.read_text()
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s#\s", f" {line} ")[0].strip()
            commands.extend(part.strip() for part in line.split("&&") if part.strip())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        tokens = span.split()
        is_script = tokens[0] == "python" and len(tokens) >= 2 and (tokens[1].endswith(".py") or tokens[1] == "-m")
        if is_script or (tokens[0] in ("anomalib", "anomalib-vadproto", "pip") and len(tokens) >= 3):
            commands.append(span.strip())
    return list(dict.fromkeys(" ".join(c.split()) for c in commands))


def kind(command: str) -> str:
    """How a README command is exercised (``"unknown"``: by nothing, a test failure)."""
    rules = [
        (r"pip install ", "ci"),
        (r"python -m pytest", "ci"),
        (r"anomalib-vadproto demo$", "demo"),
        (r"python -m benchmarks\.\w+", "benchmark"),
        (r"python -m research\.\w+", "research"),
        (r"python benchmarks/\w+\.py", "recorded"),
        (r"anomalib-vadproto score \S+ (rtsp|rtmp|https?)://|anomalib-vadproto score \S+ /dev/video", "live"),
        (r"(anomalib|anomalib-vadproto|python -m anomalib_vadproto\.data\.synthetic_video) .*\bmy_videos\b", "camera"),
        (r"python -m anomalib_vadproto\.data\.synthetic_video ", "generator"),
        (r"anomalib-vadproto make-synthetic ", "generator"),
        (r"python \.\./shared/tools/materialize_ucsd_ped2\.py ", "workspace"),
        (r"(anomalib|anomalib-vadproto) (train|fit|test|export|predict|score) ", "workspace"),
    ]
    return next((name for pattern, name in rules if re.match(pattern, command)), "unknown")


def expand(command: str) -> list[list[str]]:
    """Substitute placeholders and expand ``a|b`` alternatives into separate argument lists."""
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    variants = [[]]
    for token in shlex.split(command):
        options = token.split("|") if re.fullmatch(r"[\w.-]+(\|[\w.-]+)+", token) else [token]
        variants = [[*v, option] for v in variants for option in options]
    return variants


def test_every_readme_command_is_exercised():
    commands = readme_commands()
    unknown = [c for c in commands if kind(c) == "unknown"]
    assert not unknown, f"README commands that no test exercises (add them to this module's kinds): {unknown}"
    kinds = {kind(c) for c in commands}
    assert {"ci", "demo", "benchmark", "workspace", "generator", "camera", "live"} <= kinds
    # the quick start is in the README: lay out, train, test, export, score
    quick = [c for c in commands if kind(c) == "workspace"]
    assert [c.split()[1] for c in quick[:5]] == [
        "../shared/tools/materialize_ucsd_ped2.py", "train", "test", "export", "score",
    ]  # fmt: skip


def test_the_readme_install_and_test_commands_are_cis():
    first, second = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert first.endswith("&& pip install . && anomalib-vadproto demo")
    assert second in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_the_wheel_carries_the_autoload_hook(tmp_path):
    """``pip install .`` (the README's first command) installs the ``.pth`` hook that registers the models."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("anomalib_vadproto-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"anomalib_vadproto.pth", "_anomalib_vadproto_autoload.py", "anomalib_vadproto/__init__.py"} <= names


# ---------------------------------------------------------------------- the workspace
def _stand_in_compact_copy(compact: Path, scratch: Path) -> None:
    """A tiny UCSD Ped2 'compact copy' (videos/*.mp4, masks.npz, frame_labels/*.npy) from the synthetic data."""
    from anomalib_vadproto.data import make_synthetic_ucsd
    from anomalib_vadproto.data.video_io import write_video

    folder = make_synthetic_ucsd(scratch, category="UCSDped2", n_train=2, n_test=4, n_frames=16, height=48, width=64)
    masks = {}
    for split in ("Train", "Test"):
        for video in sorted(p for p in (folder / split).glob(f"{split}*") if not p.name.endswith("_gt")):
            frames = [np.asarray(Image.open(p).convert("L")) for p in sorted(video.glob("*.tif"))]
            write_video(compact / "videos" / f"{video.name}.mp4", frames, codec="mpeg4", quality=1)
            if split == "Test":
                gt = sorted((video.parent / f"{video.name}_gt").glob("*.bmp"))
                masks[video.name] = np.stack([np.asarray(Image.open(p).convert("L")) > 0 for p in gt])
                (compact / "frame_labels").mkdir(parents=True, exist_ok=True)
                np.save(compact / "frame_labels" / f"{video.name}.npy", masks[video.name].any(axis=(1, 2)))
    np.savez_compressed(compact / "masks.npz", **masks)
    (compact / "UCSDped2.m").write_text("% stand-in\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The repository's root as the README sees it: ``configs/`` and a ``../shared`` beside it."""
    if not (SHARED / "tools" / "materialize_ucsd_ped2.py").is_file():
        pytest.skip("needs ../shared/tools beside the checkout (the README's first quick-start step runs its tool)")
    base = tmp_path_factory.mktemp("readme")
    work = base / "main"
    shutil.copytree(REPO / "configs", work / "configs")
    shutil.copytree(SHARED / "tools", base / "shared" / "tools")
    _stand_in_compact_copy(base / "shared" / "data" / "ucsd_ped2_compact", base / "scratch")
    return work


def _run_in_workspace(argv: list[str], work: Path) -> subprocess.CompletedProcess:
    program, args = argv[0], argv[1:]
    if program == "python":
        return run_cli(args, cwd=work, command=[sys.executable])
    if program == "anomalib-vadproto":
        return run_cli(args, cwd=work, command=[sys.executable, "-m", "anomalib_vadproto.cli"])
    return run_cli(args, cwd=work)


def _model_name(argv: list[str], work: Path) -> str:
    """The model class a command trains: its ``--model``, or the ``class_path`` of its ``--config``."""
    if "--model" in argv:
        return argv[argv.index("--model") + 1].split(".")[-1]
    import yaml

    config = yaml.safe_load((work / argv[argv.index("--config") + 1]).read_text())
    return config["model"]["class_path"].split(".")[-1]


def _needs_tiny(argv: list[str], work: Path) -> list[str]:
    """Arguments that make a paper-sized training tiny (none for a lite config, which runs verbatim)."""
    if argv[1] not in ("train", "fit") or any(a.endswith("_lite.yaml") for a in argv):
        return []
    return [*TINY, *TINY_EXTRA.get(_model_name(argv, work), [])]


@pytest.mark.slow
def test_the_readme_commands_run_in_order(workspace):
    """The quick start and every other ``anomalib``/``anomalib-vadproto`` command, in the README's order."""
    from anomalib.cli.cli import AnomalibCLI

    import anomalib_vadproto  # noqa: F401  - registers the models for the in-process parse

    work = workspace
    ran = []
    for command in (c for c in readme_commands() if kind(c) == "workspace"):
        for argv in expand(command):
            tiny = _needs_tiny(argv, work)
            if tiny:  # the verbatim line must parse and build its model and data (paper-sized: not trained)
                with pytest.MonkeyPatch.context() as patch:
                    patch.chdir(work)
                    cli = AnomalibCLI(argv[1:], run=False)
                assert type(cli.model).__name__ == _model_name(argv, work)
            _run_in_workspace([*argv, *tiny], work)
            ran.append(argv[1])
    assert (work / "datasets/ucsd/UCSDped2/Test/Test001").is_dir()
    assert (work / RUN / "weights/lightning/model.ckpt").is_file()
    assert (work / EXPORT_XML).is_file()
    assert list(work.glob("scores/**/scores.csv"))
    assert ran.count("train") >= 3 and {"test", "export", "score"} <= set(ran)


@pytest.mark.slow
def test_the_demo_runs_verbatim(tmp_path):
    proc = run_cli(["demo"], cwd=tmp_path, command=[sys.executable, "-m", "anomalib_vadproto.cli"])
    summary = json.loads((tmp_path / "vadproto_demo" / "demo_summary.json").read_text())
    assert summary["openvino_vs_torch_max_abs_diff"] < 1e-3
    assert "papers' protocol AUC micro" in proc.stdout


@pytest.mark.slow
def test_the_data_generators_run(tmp_path):
    for command in (c for c in readme_commands() if kind(c) == "generator"):
        for argv in expand(command):
            _run_in_workspace(argv, tmp_path)
    assert (tmp_path / "datasets/synthetic_ucsd/synthetic/Train").is_dir()
    assert (tmp_path / "generated").is_dir()


#: Where the own-camera walkthrough's training run lands (anomalib: <model>/<datamodule>/<root folder's name>).
CAMERA_RUN = "results/Mnad/VideoFolder/my_videos/latest"


@pytest.mark.slow
def test_the_own_camera_walkthrough_runs_in_order(tmp_path):
    """Record (a generated stand-in), lay out, train the lite MNAD, export, score: the README's lines, verbatim."""
    work = tmp_path / "main"
    shutil.copytree(REPO / "configs", work / "configs")
    commands = [c for c in readme_commands() if kind(c) == "camera"]
    steps = [c.split()[2] if c.startswith("python") else c.split()[1] for c in commands]
    assert steps == ["anomalib_vadproto.data.synthetic_video", "train", "export", "score"], commands
    for command in commands:
        for argv in expand(command):
            _run_in_workspace(argv, work)
    assert (work / "my_videos" / "ground_truth").is_dir()
    assert (work / CAMERA_RUN / "weights/lightning/model.ckpt").is_file()
    assert len(list((work / CAMERA_RUN / "images/score_curves").glob("*.png"))) == 4  # one per test video
    assert (work / "my_export/weights/openvino/model.xml").is_file()
    scores = work / "my_scores" / "test_03"
    assert {"scores.csv", "score_curve.png", "overlay.mp4"} <= {p.name for p in scores.iterdir()}


# ---------------------------------------------------------------------- commands checked to parse
_PARSE_ONLY = r"""
import argparse, importlib.util, json, runpy, sys

class Parsed(Exception):
    pass

def parse(self, args=None, namespace=None):
    original(self, args, namespace)
    raise Parsed

original = argparse.ArgumentParser.parse_args
argparse.ArgumentParser.parse_args = parse
failures = {}
for module, *args in json.loads(sys.argv[1]):
    if not args:  # no arguments to check: the module must compile (running it would do the work)
        origin = importlib.util.find_spec(module).origin
        compile(open(origin).read(), origin, "exec")
        continue
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except Parsed:
        continue
    except SystemExit as exc:
        failures[" ".join(sys.argv)] = f"exit {exc.code}"
    else:
        failures[" ".join(sys.argv)] = "finished without parsing its arguments"
print(json.dumps(failures))
"""


def module_argv(argv: list[str]) -> list[str]:
    """``[module, *args]`` of a benchmark or research command: ``python -m <module> ...``, or a recorded
    ``python benchmarks/<name>.py ...`` as the module that script is now (``benchmarks.<name>``, or
    ``research.<name>`` for an investigation that moved there)."""
    if argv[1] == "-m":
        return argv[2:]
    name = Path(argv[1]).stem
    package = next((p for p in ("benchmarks", "research") if (REPO / p / f"{name}.py").is_file()), "benchmarks")
    return [f"{package}.{name}", *argv[2:]]


def test_recorded_commands_map_to_the_modules_of_today():
    assert module_argv(["python", "-m", "benchmarks.speed", "--auc"]) == ["benchmarks.speed", "--auc"]
    assert module_argv(["python", "benchmarks/ped2_accuracy.py", "--model", "mnad"]) == [
        "benchmarks.ped2_accuracy", "--model", "mnad",
    ]  # fmt: skip
    assert module_argv(["python", "benchmarks/int8_scope.py", "--model", "apn"]) == [
        "research.int8_scope", "--model", "apn",
    ]  # fmt: skip


@pytest.mark.slow
def test_the_benchmark_commands_parse():
    """Each benchmark, research or recorded command of the README names a module that exists and accepts its
    arguments."""
    runnable = ("benchmark", "research", "recorded")
    argvs = [module_argv(argv) for c in readme_commands() if kind(c) in runnable for argv in expand(c)]
    assert argvs
    assert {kind(c) for c in readme_commands()} >= {"benchmark", "research"}
    for module, *_ in argvs:
        assert (REPO / f"{module.replace('.', '/')}.py").is_file(), module
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE_ONLY, json.dumps(argvs)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}, proc.stderr[-3000:]


def test_the_live_source_commands_parse(monkeypatch):
    """A stream URL or a camera cannot be opened here; the command line itself must be accepted."""
    import argparse

    from anomalib_vadproto.deploy import score

    class Parsed(Exception):
        pass

    original = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):  # noqa: ANN001, ANN202
        original(self, args, namespace)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    live = [argv for c in readme_commands() if kind(c) == "live" for argv in expand(c)]
    assert live
    for argv in live:
        with pytest.raises(Parsed):
            score.main(argv[2:])
