"""`mlic detect DIR --out regions.json [--top K]`: the teacher's regions for a folder of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.common import existing_folder, output_file, print_skipped, progress_bar
from engine.errors import UserError
from engine.files import write_json_atomic

DEFAULT_TOP_K = 5      # the command's default; the engine takes any K (detect_images(top_k=...))


def register(subparsers: argparse._SubParsersAction) -> None:

    parser = subparsers.add_parser(
        "detect", help="run the teacher on every image under a folder, write its regions as JSON",
        description="Run the trained teacher on every image under DIR (recursive). Writes a JSON "
                    "list of {\"path\": <relative to DIR>, \"class\": <name>, \"bbox\": [x, y, w, h] "
                    "in original pixels, \"score\": s}: per image and class the boxes that survive "
                    "non-maximum suppression (the best K). The regions are also stored in the "
                    "project under the model version. Unreadable files are listed on stderr and "
                    "skipped.")
    parser.add_argument("folder", metavar="DIR", help="folder of images")
    parser.add_argument("--out", required=True, metavar="JSON", help="regions file to write")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP_K, metavar="K",
                        help=f"boxes per image and class (default {DEFAULT_TOP_K})")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--model", metavar="VERSION", help="teacher model version (default: active)")
    parser.set_defaults(handler=run)


def regions_json(result, folder: Path) -> list[dict]:  # noqa: ANN001
    """The regions.json records of a DetectionResult, paths relative to `folder` (posix)."""
    records = []
    for item in result:
        path = Path(item.path)
        try:
            shown = path.relative_to(folder).as_posix()
        except ValueError:
            shown = path.as_posix()
        for region in item.regions:
            records.append({"path": shown, "class": region.class_name,
                            "bbox": [round(float(v), 2) for v in region.bbox],
                            "score": round(float(region.score), 6)})
    return records


def run(args: argparse.Namespace) -> int:
    from engine.cli.common import open_store
    from engine.inference.detect import detect_images
    from engine.intake import scan_folder
    from engine.models.registry import resolve_run

    folder = existing_folder(args.folder)
    out = output_file(args.out)
    if args.top < 1:
        raise UserError(f"--top must be at least 1, not {args.top}.")
    with open_store(args) as store:
        resolve_run(store, "teacher", args.model)          # a clear error before any work
        report = scan_folder(store, folder)
        bad = {Path(p) for p, _ in report.unreadable}
        ids = [report.image_ids[p] for p in sorted(report.image_ids) if Path(p) not in bad]
        with progress_bar("detecting") as progress:
            result = detect_images(store, ids, model_version=args.model, top_k=args.top,
                                   device=args.device, progress=progress)
    write_json_atomic(out, regions_json(result, folder))
    print_skipped([(Path(p), r) for p, r in [*report.unreadable, *result.unreadable]], folder)
    print(f"{len(result)} images, {sum(len(i.regions) for i in result)} regions "
          f"({result.model_version}) -> {out}")
    return 0
