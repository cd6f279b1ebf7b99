"""Teacher localisation on the demo data, trained from random init on the CPU.

    .venv/bin/python benchmarks/teacher.py [--images N] [--epochs E] [--proposals SRC] [--device D]

Generates the demo data (seed 0), imports it into a temporary project, trains with the same
budget and seed (1) WSDDN + OICR refinement (the default teacher) and (2) plain WSDDN
(`--no-refine`), and evaluates both through `engine.inference.evaluation` on the test split (held out) and
on the train split (CorLoc in the weakly-supervised literature is measured on the training
images). Prints CorLoc next to two trivial baselines on the same image-class pairs (the whole image
as the box; the centred box of half the width and height), box AP50, image-level mAP, training
time (wall-clock and CPU seconds of proposals + training; with `--threads 1` the CPU seconds are
the time an otherwise idle core would take).

Default budget (docs/teacher.md): 300 demo images (210 train), resnet18-C4 from random init,
selective-search proposals (150 per image), test scale 256 px (training 176-320), fc width 256,
8 epochs, batch 4, on the CPU. Two variants run one after the other; `--only` runs one.
`--pretrained --backbone efficientnet_lite0 --region-head dilated` measures the region heads of
pretrained teachers instead (the bundled ImageNet weights; `--region-head fc|trunk|dilated`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.demo import generate_demo, import_demo  # noqa: E402
from engine.inference.evaluation import evaluate
from engine.store import Store  # noqa: E402
from engine.training import TrainCallbacks, TrainConfig, train  # noqa: E402


def pct(value: float | None) -> str:
    return "   -  " if value is None or value != value else f"{100 * value:5.1f}%"


def main() -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="demo images (default 300)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--proposals", default="selective_search")
    parser.add_argument("--max-proposals", type=int, default=150)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--roi-op", default=defaults.roi_op)
    parser.add_argument("--region-head", default=defaults.region_head,
                        help=f"teacher region head (default {defaults.region_head})")
    parser.add_argument("--pretrained", action="store_true",
                        help="start from ImageNet weights (default: random init)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", choices=("refine", "plain"), help="train only one variant")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        demo = work / "demo"
        if not (demo / "test.json").exists():
            generate_demo(demo, n_images=args.images, seed=0)
        variants = [("WSDDN + OICR", True), ("WSDDN", False)]
        if args.only:
            variants = [v for v in variants if v[1] == (args.only == "refine")]
        rows = []
        baselines: dict[str, dict[str, float]] = {}
        for name, refine in variants:
            project = work / f"project-{'refine' if refine else 'plain'}"
            store = Store.open(project)
            if not store.images.count():
                import_demo(store, demo)
            if name == variants[0][0]:
                counts = store.images.counts_by_split()
                print(f"demo: {args.images} images (train {counts.get('train', 0)}, val "
                      f"{counts.get('val', 0)}, test {counts.get('test', 0)}), 12 classes; "
                      f"{args.backbone} from {'ImageNet' if args.pretrained else 'random init'}, "
                      f"{args.region_head} region head, {args.proposals} proposals "
                      f"(max {args.max_proposals}), image size {args.image_size}, "
                      f"{args.epochs} epochs, device {args.device}", flush=True)
            config = TrainConfig(
                epochs=args.epochs, image_size=args.image_size, proposals=args.proposals,
                max_proposals=args.max_proposals, backbone=args.backbone,
                batch_size=args.batch_size, lr=args.lr, hidden=args.hidden, roi_op=args.roi_op,
                device=args.device, seed=args.seed, refine=refine, pretrained=args.pretrained,
                region_head=args.region_head)
            started, cpu_started = time.perf_counter(), time.process_time()
            epochs = []

            def show(report, name=name, epochs=epochs):  # noqa: ANN001
                epochs.append(report)
                print(f"  {name:13s} epoch {report.epoch:2d}: loss {report.losses['loss']:.4f} "
                      f"val mAP {pct(report.metrics.get('val_mAP'))} "
                      f"{report.metrics['images_per_s']:.1f} img/s ({report.seconds:.0f} s)",
                      flush=True)

            runs = train(store, config, TrainCallbacks(on_epoch=show))
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            run = runs[0]
            figures = {}
            for split in ("test", "train"):
                report = evaluate(store, split, teacher_version=run.model_version,
                                  device=args.device, models=("teacher",))
                figures[split] = report
                baselines[split] = report.baselines
            rows.append((name, seconds, cpu_seconds, figures))
            store.close()

        print()
        print(f"{'model':16s} {'train s':>8s} {'cpu s':>6s} {'mAP test':>9s} {'CorLoc test':>12s} "
              f"{'CorLoc train':>13s} {'AP50 test':>10s}")
        for name, seconds, cpu_seconds, figures in rows:
            test, trainset = figures["test"].teacher, figures["train"].teacher
            print(f"{name:16s} {seconds:8.0f} {cpu_seconds:6.0f} {pct(test.report.mAP):>9s} "
                  f"{pct(test.corloc.corloc if test.corloc else None):>12s} "
                  f"{pct(trainset.corloc.corloc if trainset.corloc else None):>13s} "
                  f"{pct(test.box_ap.ap50 if test.box_ap else None):>10s}")
        for label, key in (("whole image", "whole_image"), ("centre box", "centre_box")):
            print(f"{label:16s} {'':>8s} {'':>6s} {'':>9s} {pct(baselines['test'].get(key)):>12s} "
                  f"{pct(baselines['train'].get(key)):>13s}")


if __name__ == "__main__":
    main()
