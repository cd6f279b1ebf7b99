"""Job functions of the exchange dialogs: thin calls of `engine.exchange` run on a job lane
(`fn(store, *args, progress=..., should_stop=...)`), so the dialogs never touch the store."""

from __future__ import annotations

from pathlib import Path


def keywords_import(store, folder: str | None, sources: tuple[str, ...], options,
                    dry_run: bool, *, progress, should_stop):
    """`engine.exchange.xmp.import_xmp`; a dry run is the dialog's preview."""
    from engine.exchange.xmp import import_xmp

    return import_xmp(store, folder or None, progress, sources=sources, options=options,
                      dry_run=dry_run, should_stop=should_stop)


def keywords_writeback(store, folder: str | None, embedded: bool, backup: bool, dry_run: bool,
                       *, progress, should_stop):
    """`engine.exchange.xmp.export_xmp` in place (or under `folder`); a dry run previews."""
    from engine.exchange.xmp import export_xmp

    return export_xmp(store, folder or None, in_place=not folder, progress=progress,
                      embedded=embedded, dry_run=dry_run, backup=backup)


def keywords_undo(store, *, progress, should_stop) -> str:
    from engine.exchange.xmp import undo_last_writeback

    folder, count = undo_last_writeback(store)
    return f"Put back {count} files from {folder}"


def table_import(store, kind: str, path: str, images: str | None, split: str | None,
                 partial: bool = False, *, progress, should_stop):
    """Import a CSV or COCO file (`engine.exchange.csv_tags` / `coco`; `partial`: COCO only)."""
    if kind == "csv":
        from engine.exchange.csv_tags import import_csv

        return import_csv(store, Path(path), progress=progress)
    from engine.exchange.coco import import_coco

    return import_coco(store, Path(path), Path(images or "."), split=split or None,
                       progress=progress, partial=partial)


def table_export(store, kind: str, path: str, *, progress, should_stop):
    """Export the tags as a CSV or COCO file."""
    if kind == "csv":
        from engine.exchange.csv_tags import export_csv

        return export_csv(store, Path(path), progress=progress)
    from engine.exchange.coco import export_coco

    return export_coco(store, Path(path), progress=progress)


def table_preview(store, kind: str, *, progress, should_stop) -> str:
    """What an export would write: images, tagged images, classes."""
    classes = store.classes.names()
    return (f"{store.images.count()} images, {store.tags.tagged_image_count()} tagged, "
            f"{len(classes)} classes ({', '.join(classes[:12])}"
            f"{', ...' if len(classes) > 12 else ''}) -> {kind.upper()}")


def table_file_preview(store, kind: str, path: str, *, progress, should_stop) -> list[str]:
    """The classes a CSV header or a COCO file's categories name (the import's preview)."""
    import csv
    import json

    from engine.errors import UserError

    try:
        if kind == "csv":
            with open(path, newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), [])
            return [name for name in header[2:] if name]
        with open(path, encoding="utf-8") as handle:
            return [c.get("name", "?") for c in json.load(handle).get("categories", [])]
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"Cannot read {path}: {exc}") from exc
