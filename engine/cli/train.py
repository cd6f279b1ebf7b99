"""`mlic train --stage teacher|student|all ...`: train models on the project's tagged images."""

from __future__ import annotations

import argparse
import sys

from engine.errors import UserError
from engine.training.api import StudentSettings, TrainCallbacks, TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train the teacher (weakly-supervised detector) and/or the student",
        description="Train on the images of split train that have tags; validate on split val "
                    "when it has tagged images. Prints progress and per-epoch losses, and stores "
                    "the run, its config and its checkpoint in the project. A completed run "
                    "becomes the active model of its stage.")
    _add_model_options(parser)
    _add_budget_options(parser)
    _add_start_options(parser)
    _add_student_options(parser)
    parser.set_defaults(handler=run)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from engine.training.api import (
        BACKBONES,
        PROPOSAL_SOURCES,
        RECOMMENDED_PROPOSALS,
        STAGES,
    )

    defaults = TrainConfig()
    parser.add_argument("--stage", choices=STAGES, default="teacher",
                        help="teacher, student, all (teacher then student), or quick (refit the "
                             "student's classifier on cached embeddings and re-score every image "
                             "in seconds); default teacher")
    parser.add_argument("--backbone", choices=BACKBONES, default=defaults.backbone,
                        help=f"teacher backbone (default {defaults.backbone})")
    parser.add_argument("--student-backbone", choices=BACKBONES, default=defaults.student_backbone,
                        help=f"student backbone (default {defaults.student_backbone})")
    parser.add_argument("--student-image-size", type=int, default=defaults.student_image_size,
                        metavar="N", help=f"student input size, square, in pixels "
                                          f"(default {defaults.student_image_size})")
    parser.add_argument("--teacher-version", metavar="VERSION",
                        help="student: distil from this teacher (default: the active teacher)")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, metavar="N",
                        help=f"teacher test scale, longest side in pixels; training uses scales "
                             f"around it (default {defaults.image_size})")
    parser.add_argument("--proposals", choices=PROPOSAL_SOURCES, default=RECOMMENDED_PROPOSALS,
                        metavar="SRC", help="proposal source: selective_search (default; best "
                        "localisation in benchmarks/teacher.py), edgeboxes (scored, faster) or "
                        "sliding (no OpenCV needed; weakest)")
    parser.add_argument("--max-proposals", type=int, default=defaults.max_proposals, metavar="N",
                        help=f"proposals per image (default {defaults.max_proposals})")
    parser.add_argument("--region-head", choices=("fc", "trunk"), default=defaults.region_head,
                        help="teacher: fc (two thin fc layers, random init; the default, "
                             "cheapest) or trunk (the backbone's own last stage with its "
                             "ImageNet weights, as torchvision's detectors; several times the "
                             "CPU cost per proposal)")
    parser.add_argument("--no-refine", action="store_true",
                        help="plain WSDDN, without the OICR refinement branches")


def _add_budget_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs, metavar="N",
                        help=f"epochs (default {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, metavar="N",
                        help=f"images per batch (default {defaults.batch_size})")
    parser.add_argument("--grad-accum", type=int, default=defaults.grad_accum, metavar="N",
                        help="batches per optimizer step, for small GPUs (default 1)")
    parser.add_argument("--lr", type=float, default=defaults.lr,
                        help=f"learning rate of the heads (default {defaults.lr})")
    parser.add_argument("--backbone-lr-mult", type=float, default=defaults.backbone_lr_mult,
                        metavar="X", help=f"the pretrained backbones learn at --lr times X "
                                          f"(default {defaults.backbone_lr_mult:g})")
    parser.add_argument("--frozen-bn", action=argparse.BooleanOptionalAction,
                        default=defaults.frozen_bn,
                        help="teacher: keep the backbone's BatchNorm statistics fixed, as "
                             "detectors do with batches of a few images (default on)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--seed", type=int, default=defaults.seed, metavar="S",
                        help="random seed (default 0)")


def _add_start_options(parser: argparse.ArgumentParser) -> None:
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", action="store_true",
                         help="start from ImageNet weights (the default; bundled with the "
                              "default backbone efficientnet_lite0, downloaded by torchvision "
                              "for the others)")
    weights.add_argument("--no-pretrained", action="store_true",
                         help="start from random weights (for experiments)")
    weights.add_argument("--weights", metavar="PATH",
                         help="start the backbone from a local state-dict file")
    parser.add_argument("--resume", action="store_true",
                        help="continue the latest unfinished run of the stage from its checkpoint")
    parser.add_argument("--init-from", metavar="VERSION",
                        help="warm-start from this model version")
    parser.add_argument("--round", action="store_true",
                        help="run one review-loop round exactly as the app does: give unassigned "
                             "tagged images a train/val split, warm-start from the previous "
                             "models when the classes are unchanged, train, calibrate the class "
                             "thresholds on val and evaluate there")


def _add_student_options(parser: argparse.ArgumentParser) -> None:
    defaults, own = TrainConfig(), StudentSettings()
    parser.add_argument("--kd", choices=("none", "feature", "prediction", "both"),
                        default=defaults.kd, help="student: which distillation (default both)")
    parser.add_argument("--no-kd", action="store_true", help="student: no distillation")
    parser.add_argument("--schedule", choices=("staged", "joint"), default=defaults.schedule,
                        help="student: joint (every loss from the first epoch; default) or "
                             "staged (the paper: feature distillation first)")
    parser.add_argument("--loss", choices=("bce", "asl"), default=defaults.loss,
                        help="student: classification loss")
    parser.add_argument("--student-epochs", type=int, metavar="N",
                        help="student: epochs (default: --epochs)")
    parser.add_argument("--student-lr", type=float, metavar="LR",
                        help="student: learning rate (default: --lr)")
    parser.add_argument("--student-batch-size", type=int, metavar="N",
                        help="student: images per batch (default: --batch-size)")
    parser.add_argument("--views", type=int, default=own.views, metavar="N",
                        help=f"student: views per image, the whole image and N - 1 random crops "
                             f"(default {own.views})")
    parser.add_argument("--kd-boxes", type=int, default=own.kd_boxes, metavar="N",
                        help=f"student: teacher boxes per view for feature distillation, 0 for "
                             f"all (default {own.kd_boxes})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        stage=args.stage, backbone=args.backbone, student_backbone=args.student_backbone,
        image_size=args.image_size, student_image_size=args.student_image_size,
        teacher_version=args.teacher_version, epochs=args.epochs, batch_size=args.batch_size,
        grad_accum=args.grad_accum, lr=args.lr, backbone_lr_mult=args.backbone_lr_mult,
        frozen_bn=args.frozen_bn, device=args.device, seed=args.seed,
        proposals=args.proposals, max_proposals=args.max_proposals, region_head=args.region_head,
        pretrained=not args.no_pretrained, weights=args.weights, refine=not args.no_refine,
        resume=args.resume, kd="none" if args.no_kd else args.kd, schedule=args.schedule,
        loss=args.loss, init_from=args.init_from,
        student=StudentSettings(epochs=args.student_epochs, lr=args.student_lr,
                                batch_size=args.student_batch_size, views=args.views,
                                kd_boxes=args.kd_boxes))


class ConsoleProgress:
    """tqdm bars per stage/phase on stderr, and one line per epoch on stdout."""

    def __init__(self) -> None:
        self.bar = None
        self.label = None

    def step(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None or self.label != stage:
            self.close()
            self.label = stage
            self.bar = tqdm(total=total, desc=stage, unit="batch" if stage in ("teacher", "student")
                            else "img", file=sys.stderr, leave=False, disable=None)
        self.bar.n = done
        self.bar.refresh()

    def epoch(self, report) -> None:  # noqa: ANN001
        losses = " ".join(f"{k}={v:.4f}" for k, v in report.losses.items())
        metrics = " ".join(f"{k}={v:.4g}" for k, v in report.metrics.items() if k != "lr")
        line = (f"{report.model_version} epoch {report.epoch}/{report.epochs}: {losses} "
                f"{metrics} ({report.seconds:.1f}s)")
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    from engine.cli.common import open_store

    if args.weights and args.pretrained:
        raise UserError("Use either --pretrained or --weights, not both.")
    config = config_from_args(args)
    console = ConsoleProgress()
    callbacks = TrainCallbacks(on_step=console.step, on_epoch=console.epoch,
                               on_message=console.message)
    try:
        with open_store(args) as store:
            runs, figures = _train(store, config, callbacks, args.round)
    finally:
        console.close()
    for run in runs:
        last = (run.metrics or {}).get("last", {})
        shown = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "lr")
        print(f"{run.model_version}: {run.status} ({shown}); checkpoint {run.checkpoint}")
    for version, figure in figures.items():
        print(f"{version} on {figure.split}: mAP={figure.mAP:.4g} CF1={figure.CF1:.4g} "
              f"OF1={figure.OF1:.4g} ({figure.n_images} images)")
    return 0 if all(run.status == "completed" for run in runs) else 1


def _train(store, config: TrainConfig, callbacks: TrainCallbacks,  # noqa: ANN001
           as_round: bool) -> tuple[list, dict]:
    """Plain training, or one round of the review loop (the app's Train button; a quick round is
    always one, since its point is the refreshed suggestions)."""
    if not as_round and config.stage != "quick":
        from engine.training import train

        return train(store, config, callbacks), {}
    from engine.review.rounds import train_round

    outcome = train_round(store, config, callbacks)
    return outcome.runs, outcome.figures
