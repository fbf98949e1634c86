import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from vlm_keras.data.images import ImageError, check_image_file, read_image_bytes


def _pixels(height=12, width=20):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encoded(image, image_format):
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "mode, file_name",
    [("RGB", "rgb.png"), ("L", "gray.png"), ("RGBA", "rgba.png"), ("P", "palette.png"),
     ("I;16", "sixteen.png"), ("RGB", "photo.jpg"), ("RGB", "bitmap.bmp"), ("P", "anim.gif")],
)
def test_accepts_modes_the_pipeline_converts(tmp_path, mode, file_name):
    image = Image.fromarray(_pixels())
    image = image.convert("L").convert("I;16") if mode == "I;16" else image.convert(mode)
    path = tmp_path / file_name
    image.save(path)
    assert check_image_file(path) == (20, 12)
    assert read_image_bytes(path) == path.read_bytes()


def _write_bad(tmp_path, kind):
    """Returns (path, expected message fragment) for one kind of bad input."""
    if kind == "missing":
        return tmp_path / "nope.png", "does not exist"
    if kind == "directory":
        (tmp_path / "folder.png").mkdir()
        return tmp_path / "folder.png", "could not be decoded as JPEG/PNG/BMP/GIF"
    path = tmp_path / f"{kind}.img"
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(1).bytes(500))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated_jpeg":
        data = _encoded(Image.fromarray(_pixels(64, 64)), "JPEG")
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated_png":
        data = _encoded(Image.fromarray(_pixels(64, 64)), "PNG")
        path.write_bytes(data[: len(data) // 2])
    elif kind == "tiff":
        Image.fromarray(_pixels()).save(path, "TIFF")
        return path, "is TIFF; expected JPEG, PNG, BMP or GIF"
    elif kind == "webp":
        Image.fromarray(_pixels()).save(path, "WEBP")
        return path, "is WEBP; expected JPEG, PNG, BMP or GIF"
    elif kind == "one_bit_bmp":
        Image.fromarray(_pixels()).convert("1").save(path, "BMP")
        return path, "1-bit BMP"
    return path, "could not be decoded as JPEG/PNG/BMP/GIF"


@pytest.mark.parametrize(
    "kind",
    ["missing", "directory", "random_bytes", "empty", "truncated_jpeg", "truncated_png", "tiff",
     "webp", "one_bit_bmp"],
)
def test_rejects_bad_files_naming_them(tmp_path, kind):
    if kind == "webp" and "WEBP" not in Image.SAVE:
        pytest.skip("this PIL build cannot write WEBP")
    path, fragment = _write_bad(tmp_path, kind)
    with pytest.raises(ImageError, match=f"image '{path}'") as info:
        check_image_file(path)
    assert fragment in str(info.value)
    with pytest.raises(ImageError):
        read_image_bytes(path)


def test_truncated_file_rejected_even_if_another_library_allows_truncation(tmp_path):
    data = _encoded(Image.fromarray(_pixels(64, 64)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(ImageError, match="truncated"):
            check_image_file(path)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_rejects_absurd_sizes(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("L", (10001, 1)).save(path)
    with pytest.raises(ImageError, match=r"10001x1 pixels; expected each side between 1 and 10000"):
        check_image_file(path)
