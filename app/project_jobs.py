"""Long project operations run as jobs (`Workers.start_job`): adding a folder (intake) and
generating + importing the demo data. Each takes the store first and reports progress."""

from __future__ import annotations

from pathlib import Path

DEMO_IMAGES = 300
DEMO_SEED = 0


def add_folder(store, folder: str, split: str | None = None, *, progress, should_stop):
    """Register every image under `folder` (engine.intake.scan_folder). Returns the ScanReport."""
    from engine.intake import scan_folder

    return scan_folder(store, Path(folder), split=split, progress=progress)


def demo_folder(store) -> Path:
    return store.paths.root / "demo-data"


def make_demo(store, n_images: int | None = None, seed: int = DEMO_SEED, *, progress,
              should_stop) -> str:
    """Generate the demo images under the project folder and import them with tags and splits."""
    from engine.demo import generate_demo, import_demo

    n_images = n_images or DEMO_IMAGES
    out_dir = demo_folder(store)

    def generating(done: int, total: int) -> None:
        progress(done, 2 * total)

    dataset = generate_demo(out_dir, n_images=n_images, seed=seed, progress=generating)
    if should_stop():
        return "Demo data generation cancelled."

    def importing(done: int, total: int) -> None:
        progress(n_images + done * n_images // max(total, 1), 2 * n_images)

    import_demo(store, dataset.root, progress=importing)
    return f"Imported {n_images} demo images with their tags into {out_dir}."
