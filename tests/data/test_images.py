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


# --- EXIF orientation -----------------------------------------------------------------------------

def _upright():
    """A picture whose orientation shows: smooth (so two JPEG decoders agree), a block top left."""
    y, x = np.mgrid[0:48, 0:72]
    pixels = np.stack([x * 3, y * 4, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    pixels[4:16, 4:20] = (250, 250, 40)
    return Image.fromarray(pixels)


def _exif_block(orientation, byte_order):
    """An APP1 payload with one IFD0 entry: the orientation, in either TIFF byte order."""
    import struct

    fmt = "<" if byte_order == "II" else ">"
    entry = struct.pack(fmt + "HHI", 0x0112, 3, 1) + struct.pack(fmt + "HH", orientation, 0)
    tiff = byte_order.encode() + struct.pack(fmt + "HI", 42, 8) + struct.pack(fmt + "H", 1) + entry + b"\0" * 4
    return b"Exif\0\0" + tiff


def _stored_as(upright, orientation):
    """The pixels a camera stores for an upright scene, given the orientation tag it writes."""
    inverse = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
               7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}
    return upright.transpose(inverse[orientation]) if orientation in inverse else upright


@pytest.mark.parametrize("byte_order", ["II", "MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_decoder_turns_a_photo_upright_by_its_exif_orientation(orientation, byte_order):
    import tensorflow as tf
    from PIL import ImageOps

    from vlm_keras.data.images import decode_image, exif_orientation

    buffer = io.BytesIO()
    _stored_as(_upright(), orientation).save(buffer, "JPEG", quality=95, exif=_exif_block(orientation, byte_order))
    data = buffer.getvalue()
    assert int(exif_orientation(tf.constant(data))) == orientation
    # PIL's exif_transpose agrees on what upright is.
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert reference.size == (72, 48)
    expected = decode_image(tf.constant(_encoded(_upright(), "PNG")), 24).numpy()
    got = decode_image(tf.constant(data), 24).numpy()
    assert np.abs(got - expected).mean() < 4
    wrong = decode_image(tf.constant(_encoded(_stored_as(_upright(), 3), "PNG")), 24).numpy()
    assert np.abs(wrong - expected).mean() > 20  # the check can tell orientations apart


@pytest.mark.parametrize("block", [b"Exif\0\0MM\0*\xff\xff\xff\xff", b"Exif\0\0II*\0\x08\0\0\0\xff\xff",
                                   _exif_block(9, "II"), b"Exif\0\0"])
def test_a_malformed_exif_block_reads_as_upright(block):
    import tensorflow as tf

    from vlm_keras.data.images import decode_image, exif_orientation

    buffer = io.BytesIO()
    _upright().save(buffer, "JPEG", quality=95, exif=block)
    assert int(exif_orientation(tf.constant(buffer.getvalue()))) == 1
    assert decode_image(tf.constant(buffer.getvalue()), 8).shape == (8, 8, 3)
    for data in (b"", b"\xff\xd8", _encoded(_upright(), "PNG")):
        assert int(exif_orientation(tf.constant(data))) == 1


def test_the_exported_decoder_reads_exif_too(tmp_path):
    """The SavedModels call the same function in graph mode."""
    import tensorflow as tf

    from vlm_keras.encoders.vgg16 import image_inputs

    buffer = io.BytesIO()
    _stored_as(_upright(), 6).save(buffer, "JPEG", quality=95, exif=_exif_block(6, "MM"))
    graph = tf.function(lambda images: image_inputs(images, 16), input_signature=[tf.TensorSpec([None], tf.string)])
    upright = image_inputs(tf.constant([_encoded(_upright(), "PNG")]), 16).numpy()
    assert np.abs(graph(tf.constant([buffer.getvalue()])).numpy() - upright).mean() < 4
