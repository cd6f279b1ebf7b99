"""Batch-tagging speed: `mlic tag`'s path against a naive loop, and the student against the teacher.

    .venv/bin/python benchmarks/tagging.py [--images 1000] [--device cpu|cuda|all] [--keep DIR]

On N demo images (`engine.demo.generate_demo`, 224-288 x 192-256 px JPEGs) it measures, per device:

- naive loop: PIL full decode, torchvision transforms (Resize to the square input, ToTensor), the
  student on one image at a time under `torch.no_grad()`;
- `mlic tag`'s path: `engine.inference.tagging.tag_paths` end to end (model load, registration
  check, parallel reduced-size decode, batched inference, suggestions stored in the project), in
  float32 and with the default precision ('auto': bfloat16 on CPUs that run it natively, float16 on
  CUDA);
- the teacher: `engine.inference.detect.detect_paths` end to end, proposals included (computed
  afresh: the proposal cache is emptied first), regions not stored;

and prints images/s, the speed-up over the naive loop, the student/teacher ratio and the largest
probability difference between the naive loop and each fast path (same weights, so it shows what
the reduced-size decode and the precision change).

The models are random-init networks built exactly as training builds them from the default
`TrainConfig` (student resnet18 at 224 px; teacher resnet18 WSDDN + OICR at 320 px with 300
sliding-window proposals): speed does not depend on the weights, and the benchmark trains nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.store import Store  # noqa: E402


def install_models(store: Store) -> tuple[str, str]:
    """Completed random-init student and teacher runs built from the default TrainConfig."""
    from engine.models.checkpoint import save_checkpoint
    from engine.models.student import Student
    from engine.models.wsddn import WSDDN
    from engine.training.api import TrainConfig

    config = TrainConfig()
    names = store.classes.names()
    torch.manual_seed(0)
    student = Student(config.student_backbone, len(names), image_size=config.student_image_size)
    teacher = WSDDN(len(names), config.backbone, hidden=config.hidden, roi_op=config.roi_op,
                    refine_branches=config.refine_branches if config.refine else 0)
    versions = []
    for stage, model, meta in (
            ("student", student, {"class_names": names, "image_size": config.student_image_size}),
            ("teacher", teacher, {"class_names": names, "image_size": config.image_size,
                                  "proposals": config.proposals,
                                  "max_proposals": config.max_proposals, "box_scores": False})):
        run = store.runs.create(stage, config.to_dict(), names)
        path = store.paths.models_dir / f"{run.model_version}.pt"
        save_checkpoint(path, {"model": model.state_dict(), "model_config": model.config,
                               "meta": meta, "class_names": names, "stage": stage,
                               "run_id": run.id})
        store.runs.update(run.id, status="completed", finished=True,
                          checkpoint=str(path.relative_to(store.paths.root)))
        versions.append(run.model_version)
    return versions[0], versions[1]


def naive_loop(store: Store, files: list[Path], device: torch.device) -> tuple[float, np.ndarray]:
    """PIL full decode + torchvision transforms + one image at a time: (seconds, probabilities)."""
    from PIL import Image
    from torchvision import transforms

    from engine.models.registry import load_model

    started = time.perf_counter()
    model, _ = load_model(store, "student", device=device)
    size = model.image_size
    transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    rows = []
    with torch.no_grad():
        for path in files:
            image = Image.open(path).convert("RGB")
            x = transform(image).unsqueeze(0).to(device)
            rows.append(torch.sigmoid(model(x)).cpu().numpy()[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, np.stack(rows)


def fast_path(store: Store, files: list[Path], device: torch.device, precision: str,
              batch_size: int) -> tuple[float, np.ndarray]:
    from engine.inference.tagging import tag_paths

    started = time.perf_counter()
    result = tag_paths(store, files, batch_size=batch_size, device=str(device),
                       precision=precision)
    seconds = time.perf_counter() - started
    if len(result.paths) != len(files):
        raise SystemExit(f"tag_paths skipped {len(files) - len(result.paths)} images")
    return seconds, result.probabilities


def teacher_path(store: Store, files: list[Path], device: torch.device) -> float:
    from engine.inference.detect import detect_paths

    cache = store.paths.proposals_cache
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = detect_paths(store, files, device=str(device), store_regions=False)
    seconds = time.perf_counter() - started
    if len(result) != len(files):
        raise SystemExit(f"detect_paths skipped {len(files) - len(result)} images")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--device", default="all", choices=("all", "cpu", "cuda"),
                        help="all: the CPU, and CUDA when available (default)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--teacher-images", type=int, default=None,
                        help="time the teacher on the first N of the images (default: all; "
                             "0 skips it)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (demo images "
                                                  "there are reused)")
    args = parser.parse_args()

    from engine.demo import generate_demo, import_demo
    from engine.device import autocast_dtype, cpu_has_native_bf16
    from engine.intake import scan_folder

    work = args.keep or Path(tempfile.mkdtemp(prefix="mlic-tagging-"))
    demo_dir = work / f"demo-{args.images}"
    try:
        if not (demo_dir / "test.json").is_file():
            started = time.perf_counter()
            generate_demo(demo_dir, n_images=args.images, seed=0)
            print(f"generated {args.images} demo images in {time.perf_counter() - started:.0f} s")
        project = work / "project"
        shutil.rmtree(project, ignore_errors=True)
        store = Store.open(project)
        import_demo(store, demo_dir)
        scan_folder(store, demo_dir / "images")
        student_version, teacher_version = install_models(store)
        files = sorted((demo_dir / "images").glob("*.jpg"))[:args.images]
        teacher_files = files[:args.teacher_images] if args.teacher_images is not None else files

        devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
        if args.device in ("all", "cuda"):
            if torch.cuda.is_available():
                devices.append(torch.device("cuda"))
            elif args.device == "cuda":
                raise SystemExit("CUDA is not available on this machine.")

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"{len(files)} demo images; {cores} CPU cores ({platform.processor() or platform.machine()}"
              f", native bfloat16: {'yes' if cpu_has_native_bf16() else 'no'}), torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads")
        print(f"student {student_version}: resnet18 at 224 px; teacher {teacher_version}: resnet18 "
              f"WSDDN + OICR at 320 px, 300 sliding-window proposals")
        print("random-init networks built as training builds them: speed only, nothing trained\n")
        header = (f"{'device':<7}{'path':<46}{'images/s':>10}{'vs naive':>10}"
                  f"{'max |dp|':>10}")
        print(header)
        print("-" * len(header))
        for device in devices:
            if device.type == "cuda":
                print(f"{'':<7}({torch.cuda.get_device_name(0)})")
            # warm-up: imports, kernels, the first model load
            naive_loop(store, files[:8], device)
            fast_path(store, files[:8], device, "fp32", args.batch_size)
            naive_s, naive_p = naive_loop(store, files, device)
            naive_rate = len(files) / naive_s
            print(f"{device.type:<7}{'naive loop (PIL full decode, 1 image at a time)':<46}"
                  f"{naive_rate:>10.1f}{'1.00x':>10}{'-':>10}")
            rates = {}
            variants = [("fp32", "mlic tag path, float32")]
            auto = autocast_dtype(device, "auto")
            if auto is not None:
                variants.append(("auto", f"mlic tag path, default ({str(auto).split('.')[-1]})"))
            for precision, label in variants:
                seconds, probs = fast_path(store, files, device, precision, args.batch_size)
                rates[precision] = len(files) / seconds
                diff = float(np.abs(probs - naive_p).max())
                print(f"{device.type:<7}{label:<46}{rates[precision]:>10.1f}"
                      f"{rates[precision] / naive_rate:>9.2f}x{diff:>10.4f}")
            best = max(rates.values())
            if not teacher_files:
                print(f"{device.type:<7}best fast path vs naive: {best / naive_rate:.2f}x "
                      f"(teacher skipped)")
                continue
            teacher_s = teacher_path(store, teacher_files, device)
            teacher_rate = len(teacher_files) / teacher_s
            label = f"teacher (proposals + WSDDN), {len(teacher_files)} images"
            print(f"{device.type:<7}{label:<46}"
                  f"{teacher_rate:>10.1f}{teacher_rate / naive_rate:>9.2f}x{'-':>10}")
            print(f"{device.type:<7}student (mlic tag path, default) / teacher: "
                  f"{rates.get('auto', rates['fp32']) / teacher_rate:.1f}x "
                  f"(float32: {rates['fp32'] / teacher_rate:.1f}x); best fast path vs naive: "
                  f"{best / naive_rate:.2f}x")
        store.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
