"""Train and test one paper profile on UCSD Ped2 in one GPU command; write the results file and a log.

The GPU windows this project gets are short (15 minutes of device time, 10 minutes per command, 64 MiB
uploaded), so a paper run is one prepared command that fits them:

1. ``--prepare`` (here, once per checkout) copies the near-lossless device copy of Ped2
   (``../shared/data/ucsd_ped2_device``, 34 MiB) into the git-ignored ``.device_data/`` and downloads the
   wheels the GPU machine lacks into the git-ignored ``.whl/`` (pure-Python or small: anomalib and the
   parts of its stack the device image does not hold), then prints the size of what travels.
2. On the GPU machine, one command per model (``$OUT`` is the folder whose files come back)::

       python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \\
         && export PYTHONPATH=/tmp/site:$PWD \\
         && python3 -m benchmarks.gpu_paper_run --model mnad --out $OUT --commit <sha>

   with ``carry=[".device_data", ".whl"]`` and ``timeout_s`` 600. The run checks its imports first (one
   line naming what is missing), prints its time estimate, lays Ped2 out from the device copy (decoded
   with PyAV, or OpenCV where PyAV is absent: the same grey levels), trains the paper profile for its
   full fixed epochs with the fast path (``--fast``: the options that change speed, not the
   mathematics), tests once under the papers' protocol and writes the results file and ``gpu_run.log``
   into ``--out`` (and ``benchmarks/results/``).

The estimate: from the newest ``speed_gpu_paper_*.json`` (the eager training step at the paper batch),
the run refuses to start when even a 4x faster step could not finish inside ``--budget-minutes``;
during training a guard extrapolates the measured step rate after the first epoch and stops the run,
writing a results file that says so with the measured rate, when the rest would not fit. A run that was
stopped is never tested: its numbers would not be the paper profile's.

    python -m benchmarks.gpu_paper_run --prepare                      # here: data and wheels to carry
    python -m benchmarks.gpu_paper_run --model mnad --out $OUT        # on the GPU machine
    python -m benchmarks.gpu_paper_run --model mnad --profile lite --epochs 1 \
        --device-data ../shared/data/ucsd_ped2_device --out /tmp/gpu_smoke          # CPU smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, RESULTS, SHARED, configured_epochs

logger = logging.getLogger("gpu_paper_run")

DEVICE_COPY = SHARED / "data" / "ucsd_ped2_device"
CARRIED_DATA = REPO / ".device_data" / "ucsd_ped2_device"
WHEELS = REPO / ".whl"
#: Ped2's training clips of 5 frames (16 videos, stride 1).
PED2_TRAIN_CLIPS = 2486
#: Packages the GPU image lacks that a run imports, pinned to the versions the tests run on.
DEVICE_WHEELS = (
    "anomalib==2.7.0",
    "jsonargparse==4.46.0",
    "docstring-parser==0.18.0",
    "typeshed-client==2.15.0",
    "kornia==0.9.0",
    "kornia-rs==0.2.0",
    "omegaconf==2.4.0",
    "antlr4-python3-runtime==4.9.3",
    "FrEIA==0.2",
    "rich-argparse==1.8.0",
    "lazy-loader==0.6",
)
#: Modules a run imports; checked before anything else so a missing one costs seconds, not minutes.
REQUIRED_MODULES = ("torch", "lightning", "anomalib", "jsonargparse", "kornia", "omegaconf", "PIL", "numpy", "yaml")
UPLOAD_LIMIT_MIB = 64


# ---------------------------------------------------------------------- here: what travels
def prepare(python_version: str = "3.12") -> int:
    """Copy the device copy of Ped2 and download the wheels to carry; print the size that travels."""
    if not DEVICE_COPY.is_dir():
        raise SystemExit(f"No device copy of Ped2 at {DEVICE_COPY}.")
    if CARRIED_DATA.exists():
        shutil.rmtree(CARRIED_DATA)
    shutil.copytree(DEVICE_COPY, CARRIED_DATA)
    WHEELS.mkdir(exist_ok=True)
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28)] + ["--platform=manylinux2014_x86_64"]
    for requirement in DEVICE_WHEELS:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             f"--python-version={python_version}", "--implementation=cp", *platforms, "-d", str(WHEELS), requirement],
            check=True,
        )  # fmt: skip
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = [REPO / name for name in tracked.decode().split("\0") if name]
    size = sum(p.stat().st_size for p in files if p.is_file())
    size += sum(p.stat().st_size for p in (REPO / ".device_data").rglob("*") if p.is_file())
    size += sum(p.stat().st_size for p in WHEELS.glob("*.whl"))
    print(f"travels: {size / 2**20:.1f} MiB of {UPLOAD_LIMIT_MIB} (checkout, .device_data, .whl)")  # noqa: T201
    return 0 if size < UPLOAD_LIMIT_MIB * 2**20 else 1


# ---------------------------------------------------------------------- there: the run
def missing_modules(modules: tuple[str, ...] | None = None) -> list[str]:
    """The modules of ``modules`` (default :data:`REQUIRED_MODULES`) that cannot be imported here."""
    return [name for name in modules or REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def decode_grey(path: Path):  # noqa: ANN201
    """The grey frames of a video ``(N, H, W)`` ``uint8``, with PyAV or, without it, OpenCV (same levels)."""
    import numpy as np

    if importlib.util.find_spec("av") is not None:
        import av

        with av.open(str(path)) as container:
            return np.stack([frame.to_ndarray(format="gray") for frame in container.decode(video=0)])
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., 1])  # the device copy is grey: B = G = R = Y
    capture.release()
    if not frames:
        raise SystemExit(f"Could not decode {path}.")
    return np.stack(frames)


def lay_out_ped2(compact: Path, root: Path) -> Path:
    """Write anomalib's UCSDped layout (``.tif`` frames, ``_gt`` ``.bmp`` masks) from a compact copy of Ped2."""
    import numpy as np
    from PIL import Image

    marker = root / "UCSDped2" / "Test" / "Test012_gt"
    if marker.is_dir() and len(list(marker.glob("*.bmp"))) == 180:
        return root
    masks = np.load(compact / "masks.npz")
    for video in sorted((compact / "videos").glob("*.mp4")):
        split = "Train" if video.stem.startswith("Train") else "Test"
        folder = root / "UCSDped2" / split / video.stem
        folder.mkdir(parents=True, exist_ok=True)
        frames = decode_grey(video)
        for index, frame in enumerate(frames, 1):
            Image.fromarray(frame).save(folder / f"{index:03d}.tif")
        if split == "Test":
            video_masks = masks[video.stem]
            if len(video_masks) != len(frames):
                raise SystemExit(f"{video.name}: {len(frames)} frames but {len(video_masks)} masks.")
            gt = folder.parent / f"{video.stem}_gt"
            gt.mkdir(exist_ok=True)
            for index, mask in enumerate(video_masks, 1):
                Image.fromarray((mask > 0).astype(np.uint8) * 255).save(gt / f"{index:03d}.bmp")
    return root


def eager_estimate_minutes(model: str, epochs: int) -> float | None:
    """Minutes of training steps at the newest measured eager fp32 step rate (paper batch), or ``None``."""
    files = sorted(RESULTS.glob("speed_gpu_paper_*.json"))
    for path in reversed(files):
        entry = json.loads(path.read_text()).get("models", {}).get(model, {})
        rate = ((entry.get("training") or {}).get("32") or {}).get("clips_per_second")
        if rate:
            return epochs * PED2_TRAIN_CLIPS / rate / 60
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="here: copy the data and download the wheels to carry")
    parser.add_argument("--model", default="mnad", help="snake name: mnad, dlan_ac, lgn_net, apn, cdda")
    parser.add_argument("--profile", default="paper", choices=["paper", "lite"], help="lite: CPU smoke runs only")
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs (smoke runs)")
    parser.add_argument("--device-data", type=Path, default=CARRIED_DATA, help="compact or device copy of Ped2")
    parser.add_argument("--data-root", type=Path, default=Path("/tmp/ucsd_ped2"), help="where Ped2 is laid out")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", RESULTS)), help="results and log")
    parser.add_argument("--budget-minutes", type=float, default=9.0, help="the whole command, start-up included")
    parser.add_argument("--commit", default=None, help="the commit that runs (no git on the GPU machine)")
    parser.add_argument("--precision", default=None, help="Lightning training precision (default: the config's)")
    parser.add_argument("--no-fast", action="store_true", help="eager steps, host batches (the baseline)")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log_file = logging.FileHandler(args.out / "gpu_run.log")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    root_logger = logging.getLogger()
    root_logger.addHandler(log_file)
    root_logger.setLevel(min(root_logger.level or logging.INFO, logging.INFO))
    try:
        return run(args)
    finally:
        root_logger.removeHandler(log_file)
        log_file.close()


def run(args: argparse.Namespace) -> int:
    """Check, estimate, lay out, train, test (see the module docstring); the exit status."""
    start = time.perf_counter()
    missing = missing_modules()
    if missing:
        logger.error("missing modules: %s (carry their wheels: python -m benchmarks.gpu_paper_run --prepare)", missing)
        return 2
    epochs = args.epochs or configured_epochs(args.model, args.profile)
    estimate = eager_estimate_minutes(args.model, epochs) if args.profile == "paper" else None
    if estimate is None:
        logger.info("%s %s, %d epochs: no GPU step rate measured yet; the guard decides after epoch 1",
                    args.model, args.profile, epochs)  # fmt: skip
    else:
        logger.info("%s %s, %d epochs: %.1f min of steps at the measured eager rate, %.1f min if 4x faster;"
                    " budget %.1f min", args.model, args.profile, epochs, estimate, estimate / 4,
                    args.budget_minutes)  # fmt: skip
        if not args.no_fast and estimate / 4 > args.budget_minutes:
            logger.error("refused: even a 4x faster step needs %.1f min, over the budget", estimate / 4)
            return 3
    if not args.device_data.is_dir():
        raise SystemExit(f"No Ped2 copy at {args.device_data}: run --prepare here and carry .device_data.")
    root = lay_out_ped2(args.device_data, args.data_root)
    logger.info("Ped2 laid out from %s in %.0f s", args.device_data, time.perf_counter() - start)

    from benchmarks.ped2_accuracy import main as accuracy_main

    remaining = args.budget_minutes - (time.perf_counter() - start) / 60
    accuracy_args = [
        "--model", args.model, "--profile", args.profile, "--data-root", str(root), "--out", str(args.out),
        "--budget-minutes", f"{remaining:.2f}", "--data-copy", args.device_data.name,
    ]  # fmt: skip
    if args.epochs:
        accuracy_args += ["--epochs", str(args.epochs)]
    if args.precision:
        accuracy_args += ["--precision", args.precision]
    if args.commit:
        accuracy_args += ["--commit", args.commit]
    if not args.no_fast:
        accuracy_args.append("--fast")
    accuracy_main(accuracy_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
