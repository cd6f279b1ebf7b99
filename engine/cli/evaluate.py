"""`mlic evaluate`: the teacher's and the student's figures on one split, side by side."""

from __future__ import annotations

import argparse

from engine.cli.common import output_file, progress_bar
from engine.errors import UserError
from engine.files import write_json_atomic


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="image-level mAP and more for the teacher and the student on a split",
        description="Evaluate the active teacher and student on a split: image-level mAP, "
                    "CP/CR/CF1, OP/OR/OF1 and top-3 variants for both; teacher CorLoc and box "
                    "AP/AP50 where the split has ground-truth boxes.")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "unassigned"),
                        help="split to evaluate on (default: test)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    parser.add_argument("--teacher", metavar="VERSION", help="teacher model version (default: active)")
    parser.add_argument("--student", metavar="VERSION", help="student model version (default: active)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="score threshold for CP/CR/CF1 and OP/OR/OF1 (default: 0.5)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--batch-size", type=int, default=32, help="student batch size")
    parser.add_argument("--per-class", action="store_true", help="also print the AP of each class")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.cli.common import open_store
    from engine.inference.evaluation import evaluate, format_report

    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"The threshold must be between 0 and 1, not {args.threshold}.")
    out = output_file(args.json) if args.json else None
    with open_store(args) as store, progress_bar("evaluating") as progress:
        report = evaluate(store, split=args.split, teacher_version=args.teacher,
                          student_version=args.student, device=args.device,
                          batch_size=args.batch_size, threshold=args.threshold,
                          progress=progress)
    print(format_report(report, per_class=args.per_class))
    if out is not None:
        write_json_atomic(out, report.to_dict(), indent=2)
    return 0
