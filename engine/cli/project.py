"""Project commands: init, add-folder, import-coco, import-csv, import-xmp, export, classes, demo,
status.

Output goes to stdout (results) and stderr (progress bars, warnings); a user error is one line on
stderr with exit status 2 (see engine.cli).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli.common import open_store, output_file, progress_bar
from engine.errors import UserError
from engine.store.schema import SPLITS

if TYPE_CHECKING:
    from engine.exchange import ExportSummary
    from engine.progress import Progress
    from engine.store import Store

MAX_LISTED = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the project commands to the `mlic` parser, in the order `mlic --help` lists them."""
    for add in (_add_init, _add_add_folder, _add_import_coco, _add_import_csv, _add_import_xmp,
                _add_export, _add_classes, _add_demo, _add_status):
        add(subparsers)


def _add_init(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init", help="create (or open and migrate) the project",
        description="Create the project folder and database, or bring an existing one up to date.")
    parser.set_defaults(handler=run_init)


def _add_add_folder(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "add-folder", help="register the images of a folder (recursive); re-run to re-scan",
        description="Register every image under DIR (jpg, jpeg, png, webp, bmp, tif, tiff, gif). "
                    "Running it again finds new, changed, moved and vanished files; tags are "
                    "kept. Unreadable files are registered with the reason and listed.")
    parser.add_argument("folder", metavar="DIR")
    parser.add_argument("--split", choices=SPLITS, help="set this split on every image found")
    parser.set_defaults(handler=run_add_folder)


def _add_import_coco(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-coco", help="import a COCO file: classes, image-level tags, ground-truth boxes",
        description="Categories become classes, instances become image-level positive tags "
                    "(source 'import'); boxes are kept as evaluation ground truth only. Images "
                    "are found by file_name under --images. COCO is exhaustive: a category an "
                    "image does not carry becomes a negative tag, unless --partial.")
    parser.add_argument("json", metavar="JSON")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of the images")
    parser.add_argument("--split", choices=SPLITS, help="split of the imported images")
    parser.add_argument("--partial", action="store_true",
                        help="the file's labels are partial: a category an image does not carry "
                             "stays unknown instead of becoming a negative tag")
    parser.set_defaults(handler=run_import_coco)


def _add_import_csv(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-csv", help="import tags from a CSV (path,split,<class>...; 1/0/empty)",
        description="Import image-level tags from a CSV with a header 'path,split,<class 1>,...', "
                    "one row per image, cells 1 (positive), 0 (negative) or empty (no tag). "
                    "Paths are absolute or relative to the CSV file, and must lie inside the "
                    "project's folders, the CSV's folder or --images.")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--images", metavar="DIR",
                        help="a further folder the CSV's paths may lie in")
    parser.set_defaults(handler=run_import_csv)


def _add_import_xmp(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-xmp", help="import keywords (XMP sidecars, embedded XMP, IPTC) as tags",
        description="Read the keywords of the project's images: XMP sidecars of both namings "
                    "('IMG.jpg.xmp', 'IMG.xmp') next to the images or mirrored under --from DIR "
                    "(the layout `export xmp` writes), XMP embedded in the files and IPTC "
                    "Keywords. The sidecar wins when they disagree. Keywords pass a vocabulary "
                    "step (--min-count, --exclude-prefix, --merge) before they become classes; "
                    "they are partial labels (positives only).")
    parser.add_argument("--from", dest="source", metavar="DIR",
                        help="folder of mirrored sidecars (default: next to the images)")
    parser.add_argument("--sources", default="sidecar,embedded,iptc", metavar="LIST",
                        help="where to read keywords, comma-separated from sidecar, embedded, "
                             "iptc (default: all three)")
    parser.add_argument("--min-count", type=int, default=1, metavar="N",
                        help="keep keywords carried by at least N images (default: 1)")
    parser.add_argument("--exclude-prefix", action="extend", nargs="+", default=[],
                        metavar="PATH", help="leave out hierarchies starting with PATH, e.g. "
                                             "People 'Places|Europe'")
    parser.add_argument("--merge", action="append", default=[], metavar="FROM=TO",
                        help="merge keyword FROM into TO (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the keywords with counts and what would be imported")
    parser.set_defaults(handler=run_import_xmp)


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export tags as CSV, COCO or XMP sidecars",
        description="csv: OUT is a CSV file (path,split,<class>...). coco: OUT is a COCO JSON file "
                    "with an image-level 'labels' field. xmp: sidecars '<image>.xmp' are written "
                    "under the folder OUT, mirroring the images' paths, or next to the images "
                    "with --in-place (existing sidecars are merged, never replaced).")
    parser.add_argument("format", choices=("csv", "coco", "xmp"))
    parser.add_argument("out", metavar="OUT", nargs="?")
    parser.add_argument("--in-place", action="store_true",
                        help="xmp: write next to the images, into each image's existing sidecar "
                             "('IMG.jpg.xmp' or 'IMG.xmp') or a new 'IMG.jpg.xmp'")
    parser.add_argument("--force", action="store_true",
                        help="replace OUT even when the project has no images")
    parser.add_argument("--raw-csv", action="store_true",
                        help="csv: write names starting with = + - @ as they are (by default they "
                             "get a leading ' so spreadsheets do not run them as formulas)")
    parser.add_argument("--embedded", action="store_true",
                        help="xmp: write into the files themselves (XMP, IPTC) when they already "
                             "carry keywords; implies --in-place; image data is untouched")
    parser.add_argument("--dry-run", action="store_true",
                        help="xmp: list the files and keywords that would change, write nothing")
    parser.add_argument("--no-backup", action="store_true",
                        help="xmp: do not back up the files changed in place")
    parser.add_argument("--undo", action="store_true",
                        help="xmp: put back the files of the last in-place write-back")
    parser.set_defaults(handler=run_export)


def _add_classes(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classes", help="list the classes, one per line (or add some)",
        description="Print the class names, one per line. --add creates classes first.")
    parser.add_argument("--add", nargs="+", metavar="NAME", default=[])
    parser.add_argument("--parent", metavar="NAME", help="parent class of the added classes")
    parser.set_defaults(handler=run_classes)


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="generate the demo data (JPEG scenes + COCO ground truth) into a folder",
        description="Write procedural multi-object scenes as OUT_DIR/images/*.jpg and COCO files "
                    "OUT_DIR/train.json, val.json, test.json (70/15/15). Nothing is imported: "
                    "the command prints the import commands to run.")
    parser.add_argument("out_dir", metavar="OUT_DIR")
    parser.add_argument("--images", type=int, default=300, metavar="N",
                        help="number of images (default: 300)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    parser.set_defaults(handler=run_demo)


def _add_status(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="counts per split, class and tag source; unreadable files",
        description="Summarise the project: images per split, tags per class and per source, "
                    "unreadable files.")
    parser.set_defaults(handler=run_status)


# ---------------------------------------------------------------------------------------------
# helpers


def _print_unreadable(items: list[tuple[Path, str]], kind: str = "unreadable") -> None:
    for path, reason in items[:MAX_LISTED]:
        print(f"  {kind}: {path} ({reason})")
    if len(items) > MAX_LISTED:
        print(f"  ... and {len(items) - MAX_LISTED} more {kind} files"
              + (" (see `mlic status`)" if kind == "unreadable" else ""))


def _warn_missing(missing: list[str], source: Path) -> None:
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        print(f"mlic: warning: {len(missing)} files listed in {source} were not found: {shown}",
              file=sys.stderr)


def _project_label(store) -> str:
    if store.url.startswith("sqlite:"):
        return str(store.paths.root)
    return store.engine.url.render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------------
# handlers


def run_init(args: argparse.Namespace) -> int:
    with open_store(args, create=True) as store:
        print(f"Project ready: {_project_label(store)}")
    return 0


def run_add_folder(args: argparse.Namespace) -> int:
    from engine.intake import scan_folder

    with open_store(args) as store, progress_bar("scanning") as progress:
        report = scan_folder(store, args.folder, split=args.split, progress=progress)
    print(f"{report.folder}: {report.summary()}")
    _print_unreadable(report.unreadable)
    _print_unreadable(report.skipped, "skipped")
    return 0


def run_import_coco(args: argparse.Namespace) -> int:
    from engine.exchange.coco import import_coco

    return _import(args, "importing", lambda store, progress: import_coco(
        store, args.json, args.images, split=args.split, progress=progress,
        partial=args.partial), Path(args.json))


def run_import_csv(args: argparse.Namespace) -> int:
    from engine.exchange.csv_tags import import_csv

    return _import(args, "importing", lambda store, progress: import_csv(
        store, args.file, progress=progress, images_dir=args.images), Path(args.file))


def run_import_xmp(args: argparse.Namespace) -> int:
    from engine.exchange.vocabulary import VocabularyOptions
    from engine.exchange.xmp import import_xmp

    sources = tuple(part.strip() for part in args.sources.split(",") if part.strip())
    merges = {}
    for item in args.merge:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise UserError(f"--merge takes FROM=TO, not {item!r}.")
        merges[old.strip()] = new.strip()
    if args.min_count < 1:
        raise UserError("--min-count must be at least 1.")
    options = VocabularyOptions(args.min_count, list(args.exclude_prefix), merges)
    with open_store(args) as store, progress_bar("reading keywords") as progress:
        summary = import_xmp(store, args.source, progress=progress, sources=sources,
                             options=options, dry_run=args.dry_run)
    if args.dry_run and summary.vocabulary is not None:
        for entry in summary.vocabulary.entries:
            print(f"  {entry.count:6d}  {'|'.join(entry.path)}  ({entry.status})")
    print(f"Keywords: {summary.summary()}")
    _print_unreadable(summary.unreadable)
    return 0


def _import(args: argparse.Namespace, description: str, run, source: Path | None) -> int:  # noqa: ANN001
    """Run one importer with a progress bar and print its summary, the unreadable files and (for
    a file `source`) the listed files that were not found."""
    with open_store(args) as store, progress_bar(description) as progress:
        summary = run(store, progress)
    print(f"{source if source is not None else 'XMP sidecars'}: {summary.summary()}")
    _print_unreadable(summary.unreadable)
    if source is not None:
        _warn_missing(summary.missing, source)
    return 0


def run_export(args: argparse.Namespace) -> int:
    if args.format != "csv" and args.raw_csv:
        raise UserError("--raw-csv only applies to `export csv`.")
    xmp_only = [flag for flag in ("in_place", "embedded", "dry_run", "no_backup", "undo")
                if getattr(args, flag)]
    if args.format != "xmp" and xmp_only:
        raise UserError(f"--{xmp_only[0].replace('_', '-')} only applies to `export xmp`.")
    if args.undo:
        return _undo_writeback(args)
    in_place = args.in_place or args.embedded
    if args.out is None and not (args.format == "xmp" and in_place):
        raise UserError(f"`export {args.format}` needs OUT"
                        + (" (a folder) or --in-place." if args.format == "xmp" else " (a file)."))
    if args.out is not None and in_place:
        raise UserError("Give either OUT or --in-place (--embedded), not both.")
    if args.out is not None:
        out = Path(args.out).expanduser()
        if args.format != "xmp":
            output_file(out)
        elif out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file; `export xmp` needs a folder.")
    with open_store(args) as store, progress_bar("exporting") as progress:
        if args.out is not None and Path(args.out).expanduser().is_file() and not args.force \
                and store.images.count() == 0:
            raise UserError(f"The project has no images; replacing {args.out} with an empty "
                            "export needs --force.")
        summary = _export(store, args, progress)
    where = "next to the images" if in_place else str(summary.target)
    if args.format == "xmp" and (args.dry_run or args.embedded):
        print("\n".join(summary.lines()[:MAX_LISTED * 5]))
        print(f"Keywords {where}: {summary.summary()}")
    else:
        noun = "sidecars" if args.format == "xmp" else "images"
        print(f"Exported {summary.images} {noun} ({args.format}) to {where}")
    if getattr(summary, "backup", None) is not None:
        print(f"Backup of the changed files: {summary.backup} (undo: mlic export xmp --undo)")
    return 0


def _undo_writeback(args: argparse.Namespace) -> int:
    from engine.exchange.xmp import undo_last_writeback

    with open_store(args) as store:
        folder, count = undo_last_writeback(store)
    print(f"Put back {count} files from {folder}")
    return 0


def _export(store: Store, args: argparse.Namespace, progress: Progress) -> ExportSummary:
    """Run the exporter of `args.format`; its summary."""
    if args.format == "csv":
        from engine.exchange.csv_tags import export_csv

        return export_csv(store, args.out, progress=progress, raw=args.raw_csv)
    if args.format == "coco":
        from engine.exchange.coco import export_coco

        return export_coco(store, args.out, progress=progress)
    from engine.exchange.xmp import export_xmp

    return export_xmp(store, args.out, in_place=args.in_place, progress=progress,
                      embedded=args.embedded, dry_run=args.dry_run, backup=not args.no_backup)


def run_classes(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        if args.parent and not args.add:
            raise UserError("--parent needs --add.")
        if args.add:
            store.classes.ensure(args.add, parent=args.parent)
        for name in store.classes.names():
            print(name)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from engine.demo import generate_demo

    if args.images < 3:
        raise UserError("--images must be at least 3.")
    out_dir = Path(args.out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir} is not an empty folder; `mlic demo` writes only into a new or "
                        "empty one.")
    with progress_bar("generating") as progress:
        dataset = generate_demo(args.out_dir, n_images=args.images, seed=args.seed,
                                progress=progress)
    where = []
    if getattr(args, "project", None):
        where = ["--project", args.project]
    elif getattr(args, "db_url", None):
        where = ["--db-url", args.db_url]
    print(f"Wrote {dataset.n_images} demo images ({len(dataset.class_names)} classes) and COCO "
          f"files to {dataset.root}")
    print("Import them into the project with:")
    if where[:1] == ["--project"] and not (Path(args.project).expanduser()
                                            / "project.sqlite").is_file():
        print("  " + shlex.join(["mlic", *where, "init"]))
    for split, path in dataset.split_files.items():
        command = ["mlic", *where, "import-coco", str(path), "--images",
                   str(dataset.images_dir), "--split", split]
        print("  " + shlex.join(command))
    return 0


def run_status(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        print("\n".join(_status_lines(store)))
    return 0


def _status_lines(store: Store) -> list[str]:
    """The `status` summary: images, splits, tags, classes and the first unreadable files."""
    all_images = store.images.list(include_missing=True)
    present = [image for image in all_images if image.present]
    unreadable = [image for image in present if image.status != "readable"]
    splits = store.images.counts_by_split()
    classes = store.classes.list()
    by_class = store.tags.counts_by_class()
    by_source = store.tags.counts_by_source()
    lines = [f"Project: {_project_label(store)}",
             f"Images: {len(present)} ({len(present) - len(unreadable)} readable, "
             f"{len(unreadable)} unreadable, {len(all_images) - len(present)} missing from disk)",
             "Splits: " + ", ".join(f"{split} {splits.get(split, 0)}" for split in SPLITS),
             f"Tagged images: {store.tags.tagged_image_count()} "
             f"({store.tags.reviewed_image_count()} reviewed)",
             "Tags by source: " + (", ".join(f"{source} {count}" for source, count
                                             in sorted(by_source.items())) or "none"),
             f"Classes: {len(classes)}"]
    if classes:
        width = max(len(c.name) for c in classes)
        lines += [f"  {c.name:<{width}}  {by_class.get(c.name, 0)} positive" for c in classes]
    if unreadable:
        roots = {root.id: Path(root.path) for root in store.roots.list()}
        lines.append("Unreadable files:")
        for image in unreadable[:MAX_LISTED]:
            lines.append(f"  {roots[image.root_id] / image.rel_path}: {image.reason}")
        if len(unreadable) > MAX_LISTED:
            lines.append(f"  ... and {len(unreadable) - MAX_LISTED} more")
    return lines
