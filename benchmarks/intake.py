"""Intake speed: register N generated images (default 10,000), then re-scan them.

    .venv/bin/python benchmarks/intake.py [--images N] [--keep DIR]

Images are generated fast: a few demo scenes are encoded once as JPEG, and each file gets a unique
JPEG comment segment, so every file is a valid, distinct image (its own content hash). Files are
spread over 100 sub-folders. Prints images/s for the first scan (hash + header probe + insert),
a re-scan with nothing changed, and a re-scan after moving 5 % and touching 5 % of the files.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.demo import render_scene  # noqa: E402
from engine.intake import scan_folder  # noqa: E402
from engine.store import Store  # noqa: E402


def generate(folder: Path, count: int) -> None:
    bases = []
    for index in range(8):
        image, _, _ = render_scene(seed=1, index=index)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        bases.append(buffer.getvalue())
    for k in range(count):
        sub = folder / f"d{k % 100:03d}"
        if k < 100:
            sub.mkdir(parents=True, exist_ok=True)
        base = bases[k % len(bases)]
        payload = f"mlic benchmark image {k}".encode()
        comment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
        (sub / f"img{k:06d}.jpg").write_bytes(base[:2] + comment + base[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mlic-intake-"))
    images = work / "images"
    try:
        start = time.perf_counter()
        generate(images, args.images)
        print(f"generated {args.images} images in {time.perf_counter() - start:.1f} s "
              f"({os.cpu_count()} CPUs)")
        store = Store.open(work / "project")

        def timed(label: str) -> None:
            start = time.perf_counter()
            report = scan_folder(store, images)
            elapsed = time.perf_counter() - start
            print(f"{label:<28} {elapsed:6.2f} s  {report.total / elapsed:8.0f} images/s  "
                  f"({report.summary()})")

        timed("first scan")
        timed("re-scan, nothing changed")
        files = sorted(images.rglob("*.jpg"))
        step = 20
        (images / "moved").mkdir()
        for path in files[::step]:
            path.rename(images / "moved" / path.name)
        now = time.time() + 10
        for path in files[1::step]:
            os.utime(path, (now, now))
        timed("re-scan, 5% moved/touched")
        store.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
