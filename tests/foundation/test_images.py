"""engine.images: probing, loading and hashing every kind of file."""

from __future__ import annotations

import builtins
import errno
import os

import numpy as np
import pytest
from PIL import Image

from engine import images
from engine.errors import UserError
from engine.images import (
    IMAGE_SUFFIXES,
    UnreadableImageError,
    file_digest,
    load_rgb,
    probe_image,
    scale_to_original,
)

from .files import gradient_rgb, write_bad, write_odd_valid

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def test_suffixes():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"} <= IMAGE_SUFFIXES


def test_unreadable_error_is_user_error():
    error = UnreadableImageError("/x/y.jpg", "truncated file")
    assert isinstance(error, UserError)
    assert error.reason == "truncated file"
    assert "y.jpg" in str(error) and "truncated" in str(error)


@pytest.mark.parametrize("name", ["plain.jpg", "plain.png", "plain.webp", "plain.bmp",
                                  "plain.tiff", "cmyk.jpg", "cmyk.tif", "gray16.png",
                                  "palette.png", "palette_t.png", "gray.jpg", "gray_alpha.png",
                                  "rgba.png", "bilevel.png", "animated.gif"])
def test_odd_modes_are_readable_and_convert_to_rgb(tmp_path, name):
    modes = write_odd_valid(tmp_path)
    probe = probe_image(tmp_path / name)
    assert (probe.width, probe.height) == (64, 48)
    assert probe.mode == modes[name]
    image = load_rgb(tmp_path / name)
    assert image.mode == "RGB" and image.size == (64, 48)
    array = np.asarray(image, dtype=np.int16)
    reference = np.asarray(gradient_rgb(), dtype=np.int16)
    if name in ("plain.jpg", "plain.png", "plain.webp", "plain.bmp", "plain.tiff", "rgba.png",
                "cmyk.jpg", "cmyk.tif"):
        assert np.abs(array - reference).mean() < 6, name
    if name in ("gray16.png", "gray.jpg", "gray_alpha.png"):
        gray = np.asarray(gradient_rgb().convert("L"), dtype=np.int16)
        assert np.abs(array[..., 0] - gray).mean() < 3, name
        assert (array[..., 0] == array[..., 1]).all()


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 5, 10))
    rgba.save(tmp_path / "t.png")
    array = np.asarray(load_rgb(tmp_path / "t.png"))
    assert tuple(array[0, 0]) == (0, 0, 255)
    assert tuple(array[0, 9]) == (255, 255, 255)


def test_sixteen_bit_range_is_scaled(tmp_path):
    values = np.array([[0, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "s.png")
    array = np.asarray(load_rgb(tmp_path / "s.png"))
    assert list(array[0, :, 0]) == [0, 255, 128]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "tiff"])
def test_exif_orientation(tmp_path, orientation, fmt):
    source = gradient_rgb(64, 48)
    path = tmp_path / f"o{orientation}.{fmt}"
    if fmt == "tiff":
        source.save(path, tiffinfo={0x0112: orientation})
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options = {"quality": 95} if fmt == "jpg" else {"lossless": True} if fmt == "webp" else {}
        source.save(path, exif=exif.tobytes(), **options)
    probe = probe_image(path)
    rotated = orientation in (6, 8)
    assert probe.orientation == orientation
    assert probe.size == ((48, 64) if rotated else (64, 48))
    image = load_rgb(path)
    assert image.size == probe.size
    expected = {1: source, 3: source.transpose(Image.Transpose.ROTATE_180),
                6: source.transpose(Image.Transpose.ROTATE_270),
                8: source.transpose(Image.Transpose.ROTATE_90)}[orientation]
    difference = np.abs(np.asarray(image, np.int16) - np.asarray(expected, np.int16)).mean()
    assert difference < 6


def test_max_side_uses_reduced_decode_and_keeps_the_scale(tmp_path):
    big = gradient_rgb(1600, 1200)
    exif = Image.Exif()
    exif[0x0112] = 6
    big.save(tmp_path / "big.jpg", quality=90, exif=exif.tobytes())
    image = load_rgb(tmp_path / "big.jpg", max_side=200)
    assert max(image.size) == 200 and image.size == (150, 200)
    assert image.info["original_size"] == (1200, 1600)
    sx, sy = scale_to_original(image)
    assert sx == pytest.approx(8.0) and sy == pytest.approx(8.0)
    small = load_rgb(tmp_path / "big.jpg", max_side=5000)
    assert small.size == (1200, 1600) and scale_to_original(small) == (1.0, 1.0)
    with pytest.raises(ValueError):
        load_rgb(tmp_path / "big.jpg", max_side=0)


def test_max_side_for_non_jpeg(tmp_path):
    gradient_rgb(300, 100).save(tmp_path / "wide.png")
    image = load_rgb(tmp_path / "wide.png", max_side=60)
    assert image.size == (60, 20)
    assert scale_to_original(image) == (5.0, 5.0)


@pytest.mark.parametrize("function", [probe_image, load_rgb])
def test_every_bad_kind_is_unreadable_with_its_reason(tmp_path, function):
    expected = write_bad(tmp_path)
    for name, reason in expected.items():
        with pytest.raises(UnreadableImageError) as caught:
            function(tmp_path / name)
        assert reason in caught.value.reason, (name, caught.value.reason)


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImageError, match="file not found"):
        probe_image(tmp_path / "nope.jpg")
    with pytest.raises(UnreadableImageError, match="file not found"):
        file_digest(tmp_path / "nope.jpg")


def _deny(monkeypatch, denied_name):
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if os.fspath(path).endswith(denied_name):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(images, "open", fake_open, raising=False)


def test_permission_denied(tmp_path, monkeypatch):
    gradient_rgb().save(tmp_path / "secret.jpg")
    _deny(monkeypatch, "secret.jpg")
    for function in (probe_image, load_rgb, file_digest):
        with pytest.raises(UnreadableImageError, match="permission denied"):
            function(tmp_path / "secret.jpg")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads files whatever their permissions")
def test_permission_denied_for_real(tmp_path):
    path = tmp_path / "locked.jpg"
    gradient_rgb().save(path)
    path.chmod(0)
    try:
        with pytest.raises(UnreadableImageError, match="permission denied"):
            probe_image(path)
    finally:
        path.chmod(0o644)


def test_digest_is_content_based(tmp_path):
    gradient_rgb().save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    gradient_rgb(65, 48).save(tmp_path / "c.png")
    assert file_digest(tmp_path / "a.png") == file_digest(tmp_path / "b.png")
    assert file_digest(tmp_path / "a.png") != file_digest(tmp_path / "c.png")
    assert len(file_digest(tmp_path / "a.png")) == 32


def test_probe_does_not_decode(tmp_path, monkeypatch):
    gradient_rgb(800, 600).save(tmp_path / "x.jpg")
    gradient_rgb(800, 600).save(tmp_path / "x.png")

    def no_load(self, *args, **kwargs):
        raise AssertionError("probe_image decoded pixels")

    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    assert probe_image(tmp_path / "x.jpg").size == (800, 600)
    assert probe_image(tmp_path / "x.png").size == (800, 600)


def test_jpeg_with_trailing_data_is_complete(tmp_path):
    gradient_rgb().save(tmp_path / "motion.jpg")
    with open(tmp_path / "motion.jpg", "ab") as handle:
        handle.write(b"ftypmp42" + bytes(5000))
    assert probe_image(tmp_path / "motion.jpg").size == (64, 48)
    assert load_rgb(tmp_path / "motion.jpg").size == (64, 48)
