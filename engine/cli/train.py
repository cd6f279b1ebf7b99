"""`mlic train --stage teacher|student|all ...`: train models on the project's tagged images."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from engine.cli.launch import add_launch_options, relaunch, wants_launch
from engine.errors import UserError
from engine.files import strict_json_dumps
from engine.training.api import REGION_HEADS, StudentSettings, TrainCallbacks, TrainConfig


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
    add_launch_options(parser)
    _add_label_options(parser)
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
    parser.add_argument("--fast-proposals", action="store_true",
                        help="the fast preset (instead of --proposals): selective search on images "
                             "reduced to 256 px, about 2.5x less CPU per image (see README)")
    parser.add_argument("--max-proposals", type=int, default=defaults.max_proposals, metavar="N",
                        help=f"proposals per image (default {defaults.max_proposals})")
    parser.add_argument("--region-head", choices=REGION_HEADS, default=defaults.region_head,
                        help="teacher: dilated (the default: the whole pretrained trunk run "
                             "once per image at stride 16, each region the mean of its cells; "
                             "classifies best on photographs), fc (two thin fc layers, random "
                             "init; about half the CPU of dilated, localises better, classifies "
                             "worse) or trunk (the backbone's own last stage with its ImageNet "
                             "weights, run per proposal, as torchvision's detectors; about 10x "
                             "the CPU of dilated); figures in docs/teacher.md")
    parser.add_argument("--no-refine", action="store_true",
                        help="plain WSDDN, without the OICR refinement branches")


def _add_budget_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs, metavar="N",
                        help=f"epochs (default {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="teacher: images per batch (default: one per 32 training images, "
                             "4 to 16); the student's least batch (see --student-batch-size)")
    parser.add_argument("--grad-accum", type=int, default=defaults.grad_accum, metavar="N",
                        help="batches per optimizer step, for small GPUs (default 1)")
    parser.add_argument("--lr", type=float,
                        help="teacher: learning rate of the heads (default: 1e-3 at batch 4, "
                             "scaled by the square root of the batch: 2e-3 at 16); the "
                             "student's: --student-lr")
    parser.add_argument("--backbone-lr-mult", type=float, default=defaults.backbone_lr_mult,
                        metavar="X", help=f"the pretrained backbones learn at --lr times X "
                                          f"(default {defaults.backbone_lr_mult:g})")
    parser.add_argument("--frozen-bn", action=argparse.BooleanOptionalAction,
                        default=defaults.frozen_bn,
                        help="teacher: keep the backbone's BatchNorm statistics fixed, as "
                             "detectors do with batches of a few images (default off: trained "
                             "statistics won on the photo benchmark)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="processes that load and augment the images (default: none on the "
                             "CPU, where the model needs the cores; up to 8 with a GPU)")
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
    parser.add_argument("--no-warm-start", action="store_true",
                        help="with --round: train from scratch, not from the previous models")
    parser.add_argument("--config", metavar="JSON",
                        help="a whole training config as a JSON file (as the app writes it for "
                             "a run of several processes); replaces the other model options")
    parser.add_argument("--progress", choices=("bar", "jsonl"), default="bar",
                        help="bar: tqdm bars and a line per epoch (default); jsonl: one JSON "
                             "object per line on stdout (step, epoch, message, outcome)")


def _add_student_options(parser: argparse.ArgumentParser) -> None:
    defaults, own = TrainConfig(), StudentSettings()
    parser.add_argument("--kd", choices=("auto", "none", "feature", "prediction", "both"),
                        default=defaults.kd,
                        help=f"student: which distillation (default {defaults.kd}: the teacher's "
                             f"region features when the teacher validates above the project's "
                             f"student, else none: distilling from a weaker teacher cost 19.5 "
                             f"mAP on photographs; feature: always, the best mode measured)")
    parser.add_argument("--no-kd", action="store_true", help="student: no distillation")
    parser.add_argument("--schedule", choices=("staged", "joint"), default=defaults.schedule,
                        help="student: joint (every loss from the first epoch; default) or "
                             "staged (the paper: feature distillation first)")
    parser.add_argument("--loss", choices=("bce", "asl"), default=defaults.loss,
                        help="student: classification loss, the asymmetric loss (default; it "
                             "won on the photo benchmark) or binary cross-entropy")
    parser.add_argument("--student-epochs", type=int, metavar="N",
                        help="student: epochs (default: --epochs)")
    parser.add_argument("--student-lr", type=float, metavar="LR",
                        help="student: learning rate (default: 2e-3 at batch 32, scaled by "
                             "the square root of its batch size)")
    parser.add_argument("--student-batch-size", type=int, metavar="N",
                        help="student: images per batch (default: one per 32 training "
                             "images, from --batch-size or 4 up to 32)")
    parser.add_argument("--views", type=int, default=own.views, metavar="N",
                        help="student: views per image, the whole image and N - 1 random crops "
                             "(default 8; 2 where the teacher's targets of each view are cached "
                             "on disk: distillation on the CPU)")
    parser.add_argument("--ema-decay", type=float, default=own.ema_decay, metavar="D",
                        help=f"student: keep an exponential moving average of the weights with "
                             f"this decay (warmed up; e.g. 0.998) and use it as the model; 0 "
                             f"for none (default {own.ema_decay:g})")
    parser.add_argument("--distil-pairs", choices=("unknown", "all"), default=own.distil_pairs,
                        help="student: the pairs prediction distillation covers: those no tag "
                             "decides (default; on a decided pair the tag is the better signal) "
                             "or all of them, as the paper")
    parser.add_argument("--kd-boxes", type=int, default=own.kd_boxes, metavar="N",
                        help=f"student: teacher boxes per view for feature distillation, 0 for "
                             f"all (default {own.kd_boxes})")
    parser.add_argument("--feature-weight", type=float, default=own.feature_weight, metavar="W",
                        help=f"student: weight of the feature-distillation loss beside the tags' "
                             f"(default {own.feature_weight:g}, measured on photographs: 1 "
                             f"crowds out the tags; docs/distillation.md)")


def _add_label_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--untagged-as-negative", action="store_true",
                        help="count every class an image has no tag for as a negative at full "
                             "weight (the behaviour before three label states; default: an "
                             "untagged class is unknown, see docs/label-states.md)")
    parser.add_argument("--unknown-weight", type=float, default=defaults.unknown_weight,
                        metavar="W", help=f"weight of an unknown (untagged) class as a negative "
                                          f"in the tag loss, 0 to ignore it; distillation "
                                          f"covers it in any case (default "
                                          f"{defaults.unknown_weight})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.config:
        try:
            return TrainConfig.from_dict(json.loads(Path(args.config).read_text("utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(f"Cannot read the training config {args.config}: {exc}") from exc
    from engine.training.api import FAST_PROPOSALS

    proposals, proposal_params = ((FAST_PROPOSALS[0], dict(FAST_PROPOSALS[1]))
                                  if args.fast_proposals else (args.proposals, {}))
    return TrainConfig(
        stage=args.stage, backbone=args.backbone, student_backbone=args.student_backbone,
        image_size=args.image_size, student_image_size=args.student_image_size,
        teacher_version=args.teacher_version, epochs=args.epochs, batch_size=args.batch_size,
        grad_accum=args.grad_accum, lr=args.lr, backbone_lr_mult=args.backbone_lr_mult,
        frozen_bn=args.frozen_bn, device=args.device, seed=args.seed, num_workers=args.workers,
        proposals=proposals, proposal_params=proposal_params, max_proposals=args.max_proposals,
        region_head=args.region_head,
        pretrained=not args.no_pretrained, weights=args.weights, refine=not args.no_refine,
        resume=args.resume, kd="none" if args.no_kd else args.kd, schedule=args.schedule,
        loss=args.loss, init_from=args.init_from,
        untagged_as_negative=args.untagged_as_negative, unknown_weight=args.unknown_weight,
        student=StudentSettings(epochs=args.student_epochs, lr=args.student_lr,
                                batch_size=args.student_batch_size, views=args.views,
                                kd_boxes=args.kd_boxes, ema_decay=args.ema_decay,
                                distil_pairs=args.distil_pairs,
                                feature_weight=args.feature_weight))


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
        metrics = format_figures(report.metrics)
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


class JsonProgress:
    """`--progress jsonl`: one JSON object per line on stdout, for a program that follows the run
    (the app's runs of several processes): {"step": [stage, done, total]}, {"epoch": report},
    {"message": text}, and at the end {"outcome": {"runs", "figures", "waiting"}}."""

    @staticmethod
    def emit(**event: object) -> None:
        print(strict_json_dumps(event), flush=True)    # an unmeasured NaN figure is null

    def step(self, stage: str, done: int, total: int) -> None:
        self.emit(step=[stage, done, total])

    def epoch(self, report) -> None:  # noqa: ANN001
        self.emit(epoch=report.to_dict())

    def message(self, text: str) -> None:
        self.emit(message=text)

    def close(self) -> None:
        """Nothing to close (the console's bars need it)."""


def run(args: argparse.Namespace) -> int:
    from engine.cli.common import open_store

    if args.weights and args.pretrained:
        raise UserError("Use either --pretrained or --weights, not both.")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"Workers must be 0 or more, not {args.workers}.")
    config = config_from_args(args)
    if wants_launch(args):
        if config.stage == "quick":
            raise UserError("A quick round runs in one process; leave out --nproc.")
        with open_store(args):        # a wrong project is one line here, not one per process
            pass
        return relaunch(args)
    from engine import distributed

    config = replace(config, device=distributed.init_distributed(config.device))
    try:
        return _run(args, config, distributed.is_main())
    finally:
        distributed.close_distributed()


def _run(args: argparse.Namespace, config: TrainConfig, main: bool) -> int:
    """Train in this process (one rank of a job, or alone); only rank 0 reports."""
    from engine.cli.common import open_store

    console = (JsonProgress() if args.progress == "jsonl" else ConsoleProgress()) if main else None
    callbacks = (TrainCallbacks(on_step=console.step, on_epoch=console.epoch,
                                on_message=console.message) if console else TrainCallbacks())
    try:
        with open_store(args) as store:
            runs, figures, waiting = _train(store, config, callbacks, args.round,
                                            not args.no_warm_start)
    finally:
        if console is not None:
            console.close()
    if main:
        _report(runs, figures, waiting, args.progress == "jsonl")
    return 0 if all(run.status == "completed" for run in runs) else 1


def _report(runs: list, figures: dict, waiting: str, as_json: bool) -> None:
    if as_json:
        JsonProgress.emit(outcome={
            "runs": [{"model_version": run.model_version, "status": run.status} for run in runs],
            "figures": {version: figure.to_dict() for version, figure in figures.items()},
            "waiting": waiting})
        return
    for run in runs:
        last = (run.metrics or {}).get("last", {})
        print(f"{run.model_version}: {run.status} ({format_figures(last)}); "
              f"checkpoint {run.checkpoint}")
    for version, figure in figures.items():
        print(f"{version} on {figure.split}: "
              f"{format_figures({'mAP': figure.mAP, 'CF1': figure.CF1, 'OF1': figure.OF1})} "
              f"({figure.n_images} images)")
    if any(_unmeasured((run.metrics or {}).get("last", {}).get("val_mAP", 0.0)) for run in runs):
        from engine.metrics import UNMEASURED_WHY

        print(f"val_mAP n/a: no class could be measured on split val; {UNMEASURED_WHY}.")


def format_figures(values: dict) -> str:
    """`name=value` pairs of a run's figures (not the learning rate); a figure that could not
    be measured (NaN, stored as null) reads n/a."""
    return " ".join(f"{k}={'n/a' if _unmeasured(v) else format(v, '.4g')}"
                    for k, v in values.items() if k != "lr")


def _unmeasured(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _train(store, config: TrainConfig, callbacks: TrainCallbacks,  # noqa: ANN001
           as_round: bool, warm_start: bool) -> tuple[list, dict, str]:
    """Plain training, or one round of the review loop (the app's Train button; a quick round is
    always one, since its point is the refreshed suggestions)."""
    if not as_round and config.stage != "quick":
        from engine.training import train

        return train(store, config, callbacks), {}, ""
    from engine.review.rounds import train_round

    outcome = train_round(store, config, callbacks, warm_start=warm_start)
    return outcome.runs, outcome.figures, outcome.waiting
