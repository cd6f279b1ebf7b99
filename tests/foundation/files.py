"""Test helpers: image files of every good, odd and bad kind the loader and intake must handle."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def gradient_rgb(width: int = 64, height: int = 48) -> Image.Image:
    """An RGB test image whose colour tells where a pixel came from (x in red, y in green)."""
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    array = np.stack([xs, ys, np.full_like(xs, 128)], axis=-1)
    return Image.fromarray(array.round().astype(np.uint8), "RGB")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_with_header_size(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + _png_chunk(b"IEND", b""))
    path.write_bytes(data)


def write_odd_valid(folder: Path) -> dict[str, str]:
    """Valid images in unusual modes/formats; name -> Pillow mode of the file."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = gradient_rgb()
    rgb.save(folder / "plain.jpg", quality=95)
    rgb.save(folder / "plain.png")
    rgb.save(folder / "plain.webp", lossless=True)
    rgb.save(folder / "plain.bmp")
    rgb.save(folder / "plain.tiff")
    rgb.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    rgb.convert("CMYK").save(folder / "cmyk.tif")
    sixteen = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "gray16.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette_t.png", transparency=0)
    rgb.convert("L").save(folder / "gray.jpg", quality=95)
    rgb.convert("LA").save(folder / "gray_alpha.png")
    rgb.convert("RGBA").save(folder / "rgba.png")
    rgb.convert("1").save(folder / "bilevel.png")
    frames = [rgb.convert("P"), Image.new("P", rgb.size, 3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    return {p.name: Image.open(p).mode for p in sorted(folder.iterdir())}


def write_bad(folder: Path) -> dict[str, str]:
    """Files that cannot be read; name -> expected reason (a substring)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = gradient_rgb(128, 96)
    (folder / "empty.jpg").write_bytes(b"")
    buffer = folder / "whole.jpg"
    rgb.save(buffer, quality=90)
    data = buffer.read_bytes()
    buffer.unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    rgb.save(folder / "whole.png")
    data = (folder / "whole.png").read_bytes()
    (folder / "whole.png").unlink()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "text.jpg").write_text("this is not an image\n")
    (folder / "random.png").write_bytes(np.random.default_rng(0).bytes(2048))
    png_with_header_size(folder / "bomb.png", 40_000, 40_000)
    png_with_header_size(folder / "huge.png", 15_000, 15_000)
    os.symlink(folder / "does-not-exist.jpg", folder / "broken_link.jpg")
    return {
        "empty.jpg": "empty file",
        "truncated.jpg": "truncated",
        "truncated.png": "truncated",
        "text.jpg": "not an image",
        "random.png": "not an image",
        "bomb.png": "too large",
        "huge.png": "too large",
        "broken_link.jpg": "broken symbolic link",
    }
