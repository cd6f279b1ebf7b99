"""How fast mlic runs on this machine: decode, tagging, training, start-up, host syncs.

    .venv/bin/python benchmarks/hardware.py [--images 200] [--train-images 48] [--epochs 2]
        [--device auto|cpu|cuda] [--keep DIR] [...]

On demo images (`engine.demo.generate_demo`, 224-288 x 192-256 px JPEGs) it prints:

1. decode only: images/s of `engine.inference.tagging.image_loader` (the loader `mlic tag` runs
   the model on: reduced-size decode and resize to the student's input, in worker processes)
   over the files, no model;
2. `mlic tag` end to end (the command in a fresh process, model load and suggestions included):
   images/s as the command reports it, and its fraction of (1);
3. training images/s of the teacher and the student (`engine.training.train`, the second epoch
   of each, warm, data loading included) and of a plain fine-tuning loop of the student's
   backbone at the same size, batch size and workers (torchvision model, PIL decode + resize,
   BCE, AdamW: what one would write by hand; its second epoch); the student's ratio to it; on
   CUDA the device's busy fraction sampled (every 0.1 s, `torch.cuda.utilization` or
   nvidia-smi) during each second epoch;
4. start-up: wall seconds of `mlic --version`, `mlic add-folder` (a re-scan of the folder),
   `mlic tag` of one image (best of 3), and the seconds `add-folder` spends importing;
5. host synchronisations per training step (`engine.training.syncs`, profiled over the third
   epoch of each stage, main-process data loading included).

The student and teacher train from random weights with the default `TrainConfig` unless told
otherwise (`--student-size`, `--teacher-size`, `--max-proposals`, `--proposals`); speed does not
depend on what they learn.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from engine.store import Store  # noqa: E402
from engine.training.api import StudentSettings, TrainCallbacks, TrainConfig  # noqa: E402
from engine.training.student_options import sized_for  # noqa: E402

MLIC = [sys.executable, "-m", "engine"]


# ------------------------------------------------------------------------------- (1) and (2)


def decode_rate(files: list[Path], size: int, device: torch.device, batch_size: int) -> float:
    from engine.inference.tagging import image_loader

    started = time.perf_counter()
    count = sum(len(indices) for indices, _, _ in image_loader(files, size, device, batch_size))
    return count / (time.perf_counter() - started)


def tag_rate(project: Path, folder: Path, device: torch.device, out: Path) -> float:
    result = subprocess.run([*MLIC, "--project", str(project), "tag", str(folder), "--out",
                             str(out), "--device", device.type], capture_output=True, text=True,
                            check=True)
    found = re.search(r"\(([\d.]+) images/s\)", result.stdout)
    if found is None:
        raise SystemExit(f"mlic tag printed no rate: {result.stdout[-500:]}")
    return float(found.group(1))


# ------------------------------------------------------------------------------- (3) and (5)


class BusySampler:
    """The GPU's utilisation sampled every 0.1 s in a thread while active (CUDA only)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _read() -> float | None:
        try:
            return float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001 - no pynvml: ask nvidia-smi
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits", "-i", "0"],
                                     capture_output=True, text=True, timeout=5).stdout
                return float(out.split()[0])
            except Exception:  # noqa: BLE001
                return None

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            value = self._read()
            if value is not None:
                self.samples.append(value / 100.0)

    @contextmanager
    def active(self):  # noqa: ANN201
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()

    @property
    def fraction(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


@contextmanager
def watched_epochs(device: torch.device, figures: dict[str, dict]):  # noqa: ANN201
    """While active, the loop's second epoch of each stage samples the GPU's busy fraction and
    its third counts host syncs per batch (into `figures[stage]`)."""
    from engine.training import loop
    from engine.training.syncs import count_host_syncs

    original = loop._train_epoch

    def watched(setup, epoch, dtype, scaler, callbacks):  # noqa: ANN001, ANN202
        stage = figures.setdefault(setup.stage, {})
        if epoch == 2:
            box = {}
            syncs = count_host_syncs(lambda: box.setdefault(
                "tally", original(setup, epoch, dtype, scaler, callbacks)))
            tally = box["tally"]
            stage["syncs_per_step"] = sum(syncs.values()) / max(1, tally.batches)
            stage["sync_ops"] = dict(syncs)
            return tally
        if epoch == 1 and device.type == "cuda":
            sampler = BusySampler()
            with sampler.active():
                tally = original(setup, epoch, dtype, scaler, callbacks)
            stage["busy"] = sampler.fraction
            return tally
        return original(setup, epoch, dtype, scaler, callbacks)

    loop._train_epoch = watched
    try:
        yield
    finally:
        loop._train_epoch = original


def train_rates(store: Store, config: TrainConfig, device: torch.device) -> dict[str, dict]:
    """Teacher, then student: second-epoch images/s, busy fraction (CUDA), syncs per step."""
    from engine.training import train

    figures: dict[str, dict] = {}
    reports = []
    with watched_epochs(device, figures):
        train(store, config, TrainCallbacks(on_epoch=reports.append))
    for report in reports:
        if report.epoch == 2:
            figures.setdefault(report.stage, {})["images_per_s"] = report.metrics["images_per_s"]
    return figures


class PlainImages(Dataset):
    """A hand-written multi-label dataset: PIL decode, resize to a square, uint8 CHW."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int) -> None:
        self.paths, self.labels, self.size = [str(p) for p in paths], labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        return pixels, torch.from_numpy(self.labels[index].astype(np.float32))


def plain_rate(store: Store, config: TrainConfig, device: torch.device, workers: int) -> float:
    """Images/s of the second epoch of a plain fine-tuning loop of the student's backbone, at
    the batch the student sizes for this training set (like with like)."""
    from plain_finetune import LR, PlainClassifier   # benchmarks/: the script's own folder

    matrix = store.tags.label_matrix("train")
    size = int(config.student_image_size)
    batch = sized_for(config, len(matrix.image_ids)).student.batch_size
    torch.manual_seed(0)
    model = PlainClassifier(config.student_backbone, len(matrix.class_names)).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(PlainImages(matrix.paths, matrix.labels, size), shuffle=True,
                        batch_size=batch, num_workers=workers, pin_memory=cuda,
                        multiprocessing_context="spawn" if workers else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(2):
        seconds = _plain_epoch(model, loader, optimizer, loss_fn, device)
    return len(loader.dataset) / seconds


def _plain_epoch(model, loader, optimizer, loss_fn, device: torch.device) -> float:  # noqa: ANN001
    cuda = device.type == "cuda"
    started = time.perf_counter()
    for images, labels in loader:
        images = images.to(device, non_blocking=cuda).float().div_(255.0)
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(model(images).float(), labels.to(device, non_blocking=cuda))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


# ------------------------------------------------------------------------------- (4)


def best_wall(argv: list[str], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def import_seconds(argv: list[str], runs: int) -> float:
    """Seconds the command spends importing (sum of `-X importtime` top-level modules), best of
    `runs`."""
    best = float("inf")
    for _ in range(runs):
        err = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], capture_output=True,
                             text=True, check=True).stderr
        total = sum(int(line.split("|")[1]) for line in err.splitlines()
                    if line.startswith("import time:") and re.match(r"\s[^\s]", line.split("|")[2])
                    and line.split("|")[1].strip().isdigit())
        best = min(best, total / 1e6)
    return best


# ------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images to decode and tag")
    parser.add_argument("--train-images", type=int, default=48,
                        help="demo images of the training project (70 %% land in split train)")
    parser.add_argument("--epochs", type=int, default=3, help="per stage (3: the second is "
                        "timed, the third counts host syncs)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="teacher batch (default: sized for the training set, as mlic train)")
    parser.add_argument("--student-size", type=int, default=defaults.student_image_size)
    parser.add_argument("--teacher-size", type=int, default=defaults.image_size)
    parser.add_argument("--max-proposals", type=int, default=defaults.max_proposals)
    parser.add_argument("--proposals", default=defaults.proposals)
    parser.add_argument("--workers", type=int, default=None,
                        help="training loader processes (default: per device, as mlic train)")
    parser.add_argument("--startup-runs", type=int, default=3,
                        help="runs of each command timed for (4), the best kept (default 3)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    return parser.parse_args()


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(stage="all", epochs=args.epochs, batch_size=args.batch_size,
                       image_size=args.teacher_size, student_image_size=args.student_size,
                       max_proposals=args.max_proposals, proposals=args.proposals,
                       device=args.device, num_workers=args.workers, seed=0,
                       kd="feature",     # the student's step with distillation, its costlier path
                       student=StudentSettings(views=1))


def print_training(figures: dict[str, dict], plain: float, device: torch.device) -> None:
    print("\n(3) training, second epoch (images/s)     " + ("busy" if device.type == "cuda"
                                                             else ""))
    for stage in ("teacher", "student"):
        stage_figures = figures.get(stage, {})
        busy = stage_figures.get("busy")
        shown = f"{busy:.0%}" if busy is not None else ("n/a" if device.type == "cuda" else "")
        print(f"    {stage:<36}{stage_figures.get('images_per_s', float('nan')):>8.2f}   {shown}")
    print(f"    {'plain fine-tuning loop, same backbone':<36}{plain:>8.2f}")
    student = figures.get("student", {}).get("images_per_s")
    if student:
        print(f"    plain / student: {plain / student:.2f}x (target <= 1.5x)")
    print("\n(5) host syncs per training step (third epoch)")
    for stage in ("teacher", "student"):
        stage_figures = figures.get(stage, {})
        print(f"    {stage:<36}{stage_figures.get('syncs_per_step', float('nan')):>8.2f}   "
              f"{stage_figures.get('sync_ops', {})}")


def print_startup(project: Path, folder: Path, one: Path, out: Path, device: torch.device,
                  runs: int) -> None:
    version = best_wall([*MLIC, "--version"], runs)
    add = [*MLIC, "--project", str(project), "add-folder", str(folder)]
    add_wall = best_wall(add, runs)
    tag = best_wall([*MLIC, "--project", str(project), "tag", str(one), "--out", str(out),
                     "--device", device.type], runs)
    print(f"\n(4) start-up (wall seconds, best of {runs})")
    print(f"    mlic --version{version:>30.2f}")
    print(f"    mlic add-folder (re-scan){add_wall:>19.2f}   importing: "
          f"{import_seconds(add, runs):.2f} s (target < 0.5 s)")
    print(f"    mlic tag, one image{tag:>25.2f}")


def main() -> None:
    args = parse_args()
    from engine.demo import generate_demo, import_demo
    from engine.device import resolve_device

    device = resolve_device(args.device)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mlic-hardware-"))
    try:
        demo = work / f"demo-{args.train_images}"
        if not (demo / "test.json").is_file():
            generate_demo(demo, n_images=args.train_images, seed=0)
        tag_folder = work / f"tag-{args.images}"
        if not tag_folder.is_dir():
            generate_demo(work / "tag-demo", n_images=args.images, seed=1)
            shutil.move(str(work / "tag-demo" / "images"), tag_folder)
        one = work / "one"
        one.mkdir(exist_ok=True)
        shutil.copy(next(iter(sorted(tag_folder.glob("*.jpg")))), one / "a.jpg")
        project = work / "project"
        shutil.rmtree(project, ignore_errors=True)
        store = Store.open(project)
        import_demo(store, demo)
        config = train_config(args)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        name = torch.cuda.get_device_name(0) if device.type == "cuda" else (
            platform.processor() or platform.machine())
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{device.type} ({name}), {cores} CPU cores (load average {load:.1f} at the "
              f"start), torch {torch.__version__}; student "
              f"{config.student_backbone} at {config.student_image_size} px, teacher "
              f"{config.backbone} at {config.image_size} px with {config.max_proposals} "
              f"{config.proposals} proposals, teacher batch "
              f"{config.batch_size or 'sized for the training set'}")
        figures = train_rates(store, config, device)
        plain = plain_rate(store, config, device,
                           args.workers if args.workers is not None else
                           (0 if device.type == "cpu" else min(8, max(1, cores // 2))))
        store.close()
        files = sorted(tag_folder.glob("*.jpg"))
        decode = decode_rate(files, config.student_image_size, device, 256 if
                             device.type == "cuda" else 64)
        tagged = tag_rate(project, tag_folder, device, work / "predictions.csv")
        print(f"\n(1) decode only, {len(files)} images at {config.student_image_size} px: "
              f"{decode:.1f} images/s")
        print(f"(2) mlic tag end to end: {tagged:.1f} images/s = {tagged / decode:.0%} of (1)"
              f"{' (target >= 80 %)' if device.type == 'cuda' else ''}")
        print_training(figures, plain, device)
        print_startup(project, tag_folder, one, work / "one.csv", device, args.startup_runs)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
