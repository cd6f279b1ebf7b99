"""The one image loader of the product: probing, loading and hashing image files.

Every part of the tool (intake, teacher, student, tagging, GUI thumbnails) reads images through
this module, so that all of them agree on what an image's pixels and size are:

- `probe_image(path) -> ImageProbe` reads headers only (no pixel decode): format, mode, EXIF
  orientation and the *EXIF-corrected* width and height (what a viewer shows). It also checks,
  cheaply, that the file is complete (e.g. a JPEG's end-of-image marker, a PNG's IEND chunk), so
  truncated files are found at intake time without decoding them.
- `load_rgb(path, max_side=None) -> PIL.Image.Image` decodes to an 8-bit RGB image, rotated per
  EXIF, optionally reduced so that its long side is at most `max_side` (JPEG files are then decoded
  at reduced size with `Image.draft`, which is several times faster than a full decode).
- `file_digest(path) -> str` is the content hash (BLAKE2b, 128 bits, hex) used to recognise moved
  files and to key caches.

Coordinates: boxes everywhere are in *original* pixels, i.e. the EXIF-corrected full-size image
(`ImageProbe.width`/`height`). An image returned by `load_rgb` may be smaller; its
`info["original_size"]` holds the original `(width, height)`, and the scale from returned pixels to
original pixels is `original_size[0] / image.width` horizontally and `original_size[1] /
image.height` vertically (see `scale_to_original`).

Modes: every Pillow mode becomes RGB. Transparent images (RGBA, LA, PA, P with transparency) are
composited over white; 16-bit and 32-bit integer images (I;16, I) are scaled to 8 bits by their
range (`value >> 8` for 16-bit data); float images are scaled from [0, 1] when they fit, else
clipped; CMYK goes through the embedded ICC profile when there is one, else Pillow's conversion.

Failures raise `UnreadableImageError` (a `UserError`) whose `reason` is a short phrase such as
"empty file (0 bytes)", "truncated file", "not an image (unrecognised format)", "too large (...)",
"permission denied", "file not found" or "broken symbolic link".
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import mmap
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from engine.errors import UserError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""File name suffixes (lower case, with the dot) that intake registers as images."""

MAX_PIXELS = 200_000_000
"""Images with more pixels than this are refused as 'too large' (decompression-bomb guard)."""

# Pillow warns above MAX_IMAGE_PIXELS and raises above twice that. We enforce MAX_PIXELS ourselves
# right after opening, so the warning is redundant noise; the error stays as a second guard.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.init()  # register every plugin once, so `formats=` below can name them

_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "DIB", "TIFF", "GIF")  # JPEG includes MPO
_DIGEST_CHUNK = 1 << 20
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class UnreadableImageError(UserError):
    """An image file that cannot be read; `reason` is a short phrase for the user."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot read image {self.path}: {reason}.")


@dataclass(frozen=True)
class ImageProbe:
    """Header facts of an image file. `width`/`height` are EXIF-corrected (as displayed);
    `orientation` is the EXIF orientation (1 = none, 6/8 = rotated by 90 degrees, ...)."""

    width: int
    height: int
    format: str
    mode: str
    orientation: int = 1

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def is_image_path(path: Path | str) -> bool:
    """Whether the file name has one of `IMAGE_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def file_digest(path: Path | str) -> str:
    """Content hash of a file: BLAKE2b with a 128-bit digest, hex, read in 1 MiB chunks."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_DIGEST_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise UnreadableImageError(path, _os_reason(path, exc)) from exc
    return digest.hexdigest()


def probe_image(path: Path | str) -> ImageProbe:
    """Format, mode, orientation and EXIF-corrected size from the headers; never decodes pixels.

    Raises `UnreadableImageError` for missing, empty, unreadable, truncated, non-image and
    too-large files.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, "rb") as handle:
            image = _open(path, handle)
            with image:
                orientation, applied = _orientation(image)
                _check_complete(path, image, handle)
                width, height = image.size
    except OSError as exc:
        raise UnreadableImageError(path, _os_reason(path, exc)) from exc
    if orientation in (5, 6, 7, 8) and not applied:
        width, height = height, width
    return ImageProbe(width=width, height=height, format=image.format or "?", mode=image.mode,
                      orientation=orientation)


def load_rgb(path: Path | str, max_side: int | None = None) -> Image.Image:
    """Decode `path` to an RGB image, EXIF-rotated, long side at most `max_side` when given.

    The returned image's `info["original_size"]` is the EXIF-corrected full size, so a box in the
    returned pixels maps to original pixels by multiplying with `scale_to_original(image)`.
    Raises `UnreadableImageError` when the file cannot be decoded.
    """
    path = Path(path)
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    _check_file(path)
    try:
        with open(path, "rb") as handle:
            image = _open(path, handle)
            with image:
                orientation, applied = _orientation(image)
                raw_w, raw_h = image.size
                if max_side is not None and image.format in ("JPEG", "MPO"):
                    scale = max_side / max(raw_w, raw_h)
                    if scale < 1:
                        # Pillow reduces by r only when raw // requested >= r on both sides, so
                        # request floored sizes; the decode is still at least this large.
                        image.draft("RGB", (max(1, int(raw_w * scale)), max(1, int(raw_h * scale))))
                image.load()
                rgb = _to_rgb(image)
    except UnreadableImageError:
        raise
    except OSError as exc:
        raise UnreadableImageError(path, _decode_reason(path, exc)) from exc
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
            struct.error, MemoryError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(path, f"corrupt image data ({_short(exc)})") from exc
    transpose = None if applied else _TRANSPOSE.get(orientation)
    if transpose is not None:
        rgb = rgb.transpose(transpose)
    swap = orientation in (5, 6, 7, 8) and not applied
    original = (raw_h, raw_w) if swap else (raw_w, raw_h)
    if max_side is not None and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    rgb.info = {"original_size": original}
    return rgb


def scale_to_original(image: Image.Image) -> tuple[float, float]:
    """(sx, sy) that map pixel coordinates of an image from `load_rgb` to original pixels."""
    original = image.info.get("original_size", image.size)
    return original[0] / image.width, original[1] / image.height


# ---------------------------------------------------------------------------------------------
# internals


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _check_file(path: Path) -> None:
    """Raise for missing files, broken links, non-files and empty files (a cheap stat)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise UnreadableImageError(path, _os_reason(path, exc)) from exc
    if not path.is_file():
        raise UnreadableImageError(path, "not a regular file")
    if info.st_size == 0:
        raise UnreadableImageError(path, "empty file (0 bytes)")


def _os_reason(path: Path, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        if path.is_symlink():
            return "broken symbolic link"
        return "file not found"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.EISDIR:
        return "not a regular file"
    return f"cannot read file ({exc.strerror or _short(exc)})"


def _decode_reason(path: Path, exc: OSError) -> str:
    if exc.errno is not None:
        return _os_reason(path, exc)
    text = str(exc).lower()
    if "truncated" in text or "premature end" in text or "broken data stream" in text:
        return "truncated file"
    return f"corrupt image data ({_short(exc)})"


def _open(path: Path, handle: io.BufferedReader) -> Image.Image:
    """Lazily open an image (headers only), turning every failure into UnreadableImageError."""
    try:
        image = Image.open(handle, formats=_FORMATS)
    except UnidentifiedImageError as exc:
        raise UnreadableImageError(path, "not an image (unrecognised format)") from exc
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(path, f"too large (more than {MAX_PIXELS // 1_000_000} "
                                         "megapixels)") from exc
    except OSError as exc:
        if exc.errno is not None:
            raise
        if _riff_truncated(handle):
            raise UnreadableImageError(path, "truncated file") from exc
        raise UnreadableImageError(path, f"corrupt image header ({_short(exc)})") from exc
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError,
            struct.error, MemoryError) as exc:
        raise UnreadableImageError(path, f"corrupt image header ({_short(exc)})") from exc
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise UnreadableImageError(path, f"invalid dimensions {width}x{height}")
    if width * height > MAX_PIXELS:
        image.close()
        raise UnreadableImageError(
            path, f"too large ({width}x{height} = {width * height / 1e6:.0f} megapixels; "
                  f"the limit is {MAX_PIXELS // 1_000_000})")
    return image


def _riff_truncated(handle: io.BufferedReader) -> bool:
    """Whether a RIFF (WebP) file is shorter than its header says."""
    handle.seek(0)
    head = handle.read(12)
    size = os.fstat(handle.fileno()).st_size
    return (len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP"
            and int.from_bytes(head[4:8], "little") + 8 > size)


def _orientation(image: Image.Image) -> tuple[int, bool]:
    """(EXIF orientation, whether Pillow itself already applies it) from parsed header data;
    never triggers a decode. Recent Pillow versions orient TIFF images themselves (their `size`
    is already corrected and `load()` transposes)."""
    try:
        if image.format == "TIFF":
            value = int(image.tag_v2.get(_ORIENTATION_TAG, 1))
            applied = _pillow_orients_tiff()
        else:
            raw = image.info.get("exif")
            if not raw:
                return 1, False
            exif = Image.Exif()
            exif.load(raw)
            value = int(exif.get(_ORIENTATION_TAG, 1))
            applied = False
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make the image unreadable
        return 1, False
    return (value, applied) if value in range(1, 9) else (1, False)


@functools.cache
def _pillow_orients_tiff() -> bool:
    """Whether this Pillow applies TIFF orientation on its own (checked once, in memory)."""
    buffer = io.BytesIO()
    Image.new("L", (2, 1)).save(buffer, "TIFF", tiffinfo={_ORIENTATION_TAG: 6})
    buffer.seek(0)
    with Image.open(buffer) as probe:
        return probe.size == (1, 2)


def _check_complete(path: Path, image: Image.Image, handle: io.BufferedReader) -> None:
    """Cheap structural checks that find truncated files without decoding pixels."""
    size = os.fstat(handle.fileno()).st_size
    fmt = image.format
    try:
        if fmt in ("JPEG", "MPO"):
            scan_start = image.fp.tell() if image.fp is not None else 0
            handle.seek(max(0, size - 64))
            tail = handle.read().rstrip(b"\x00\r\n ")
            if not tail.endswith(b"\xff\xd9") and not _find_after(handle, b"\xff\xd9", scan_start):
                raise UnreadableImageError(path, "truncated file")
        elif fmt == "PNG":
            handle.seek(max(0, size - 64))
            tail = handle.read()
            start = image.tile[0].offset if image.tile else 0
            if _PNG_IEND not in tail and not _find_after(handle, b"IEND", start):
                raise UnreadableImageError(path, "truncated file")
        elif fmt == "WEBP":
            handle.seek(4)
            riff_size = int.from_bytes(handle.read(4), "little")
            if riff_size + 8 > size:
                raise UnreadableImageError(path, "truncated file")
        elif fmt in ("BMP", "DIB"):
            for tile in image.tile:
                if tile.codec_name == "raw" and isinstance(tile.args, tuple) and len(tile.args) > 1:
                    stride = int(tile.args[1]) or 0
                    rows = tile.extents[3] - tile.extents[1] if tile.extents else image.height
                    if stride and tile.offset + stride * rows > size:
                        raise UnreadableImageError(path, "truncated file")
        elif fmt == "TIFF":
            tags = image.tag_v2
            for offsets_tag, counts_tag in ((273, 279), (324, 325)):
                offsets = tags.get(offsets_tag)
                counts = tags.get(counts_tag)
                if offsets is None or counts is None:
                    continue
                offsets = offsets if isinstance(offsets, tuple) else (offsets,)
                counts = counts if isinstance(counts, tuple) else (counts,)
                if any(o + c > size for o, c in zip(offsets, counts)):
                    raise UnreadableImageError(path, "truncated file")
        elif fmt == "GIF":
            handle.seek(max(0, size - 16))
            if not handle.read().rstrip(b"\x00").endswith(b";"):
                # No trailer: decode the first frame (GIFs are small) to tell junk from truncation.
                try:
                    image.load()
                except (OSError, SyntaxError, ValueError, EOFError) as exc:
                    raise UnreadableImageError(path, "truncated file") from exc
    finally:
        handle.seek(0)


def _find_after(handle: io.BufferedReader, needle: bytes, start: int) -> bool:
    """Whether `needle` occurs at or after byte `start` (memory-mapped search, no copy)."""
    try:
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return mapped.find(needle, start) != -1
    except (ValueError, OSError):
        handle.seek(start)
        return needle in handle.read()


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (see the module docstring for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image.copy() if image.readonly else image
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette is not None and \
            image.palette.mode == "RGBA"
        return _flatten(image.convert("RGBA")) if has_alpha else image.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _flatten(image.convert("RGBA"))
    if mode in ("L", "1", "RGBX", "YCbCr"):
        if mode == "L" and "transparency" in image.info:
            return _flatten(image.convert("RGBA"))
        return image.convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64 if mode == "I" else np.uint16)
        if mode == "I":
            high = float(values.max()) if values.size else 0.0
            values = np.clip(values, 0, None)
            gray = values / 257.0 if high > 255 else values
        else:
            gray = values / 257.0
        return Image.fromarray(np.clip(gray + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "LAB":
        from PIL import ImageCms

        return ImageCms.applyTransform(image, ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"))
    if mode == "HSV":
        return Image.merge("HSV", image.split()).convert("RGB")
    return image.convert("RGB")


def _flatten(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    profile = image.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                             outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile falls back to the plain conversion
            pass
    return image.convert("RGB")
