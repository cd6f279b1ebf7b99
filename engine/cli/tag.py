"""`mlic tag DIR --out predictions.csv`: batch tagging with the student."""

from __future__ import annotations

import argparse

from engine.cli.common import existing_folder, output_file, print_skipped, progress_bar
from engine.cli.launch import add_launch_options, relaunch, wants_launch
from engine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tag", help="run the student on every image under a folder, write a CSV of probabilities",
        description="Run the student on every image under DIR (recursive). Writes a CSV with a "
                    "header `path,<class 1>,...` and one row per image (path relative to DIR, each "
                    "cell the probability in [0, 1]), and stores the probabilities in the project "
                    "as suggestions of the model version. Tags are never changed. Unreadable files "
                    "are listed on stderr and skipped.")
    parser.add_argument("folder", metavar="DIR", help="folder of images")
    parser.add_argument("--out", required=True, metavar="CSV", help="predictions CSV to write")
    parser.add_argument("--raw-csv", action="store_true",
                        help="write names starting with = + - @ as they are (by default they get "
                             "a leading ' so spreadsheets do not run them as formulas)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: 256 on a GPU, 64 on the CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--model", metavar="VERSION", help="student model version (default: active)")
    parser.add_argument("--workers", type=int, default=None,
                        help="image-loading processes (default: chosen for this machine)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="auto: float16 on CUDA, bfloat16 on CPUs that run it natively, else "
                             "float32 (default: auto)")
    add_launch_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine import distributed
    from engine.cli.common import open_store

    folder = existing_folder(args.folder)
    out = output_file(args.out)
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"Batch size must be at least 1, not {args.batch_size}.")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"Workers must be 0 or more, not {args.workers}.")
    if wants_launch(args):
        from engine.models.registry import resolve_run

        with open_store(args) as store:         # a clear error here, not one per process
            resolve_run(store, "student", args.model)
        return relaunch(args)
    device = distributed.init_distributed(args.device)
    try:
        return _run(args, folder, out, device, distributed.is_main())
    finally:
        distributed.close_distributed()


def _run(args: argparse.Namespace, folder, out, device: str, main: bool) -> int:  # noqa: ANN001
    """Tag in this process (one rank of a job, or alone); rank 0 writes the CSV and reports."""
    from engine.cli.common import open_store
    from engine.inference.tagging import tag_folder, write_predictions_csv

    with open_store(args) as store, progress_bar("tagging") as progress:
        _, result = tag_folder(store, folder, model_version=args.model,
                               progress=progress if main else None, batch_size=args.batch_size,
                               device=device, num_workers=args.workers, precision=args.precision)
    if not main:
        return 0
    write_predictions_csv(result, out, relative_to=folder, raw=args.raw_csv)
    print_skipped(result.unreadable, folder)
    print(f"Tagged {len(result.paths)} image(s) with {result.model_version} "
          f"({result.images_per_second:.1f} images/s); {len(result.unreadable)} unreadable "
          f"skipped; wrote {out}.")
    return 0
