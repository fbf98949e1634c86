"""Image files: the one image decoder, and checks that catch bad files before they reach it.

`decode_image` is the only image decoder in the project: training, evaluation, the CLI and the
exported SavedModels all call it (through the encoder's `image_inputs`). It is TensorFlow code,
which reads JPEG, PNG, BMP and GIF only and fails deep inside a graph when a file is corrupt, so
`check_image_file` opens each file with PIL first and a dataset loader can name every bad file
up front.
"""

import contextlib
import pathlib
import struct

import tensorflow as tf
from PIL import Image, ImageFile

from vlm_keras.errors import VlmKerasError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

# PIL format names that TensorFlow's decode_image also reads. MPO is the multi-picture JPEG
# written by many cameras; TensorFlow decodes its first picture as a plain JPEG.
_TF_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "BMP": "BMP", "GIF": "GIF"}

# TensorFlow's BMP decoder reads uncompressed 8, 24 and 32 bits per pixel only.
_TF_BMP_BITS = (8, 24, 32)
_BMP_COMPRESSION_NAMES = {1: "RLE8", 2: "RLE4", 4: "JPEG", 5: "PNG"}

MAX_IMAGE_SIDE = 10000


class ImageError(VlmKerasError, ValueError):
    """An image file is missing, corrupt, or in a format the input pipeline cannot decode."""


def decode_image(image_bytes, image_size):
    """Encoded JPEG/PNG/BMP/GIF bytes (scalar string) -> (S, S, 3) float32 RGB in [0, 255].

    Grayscale is repeated to three channels, the alpha channel of RGBA is dropped, the first frame
    of a GIF is used, a JPEG is turned upright by its EXIF orientation (as phones store photos;
    TensorFlow's decoders ignore it), and the image is resized (bilinear, antialiased) to
    `image_size` square. EXIF orientation in PNG, WebP or HEIF files is not read.
    """
    pixels = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)  # (H, W, 3) uint8
    pixels = apply_orientation(pixels, exif_orientation(image_bytes))
    return tf.image.resize(pixels, [image_size, image_size], antialias=True)      # (S, S, 3) float32


_ORIENTATION_TAG = 0x0112
_EXIF_SCAN_BYTES = 65536 + 64  # the EXIF APP1 segment is at most 64 KiB and comes first
_MAX_IFD_ENTRIES = 128


def exif_orientation(image_bytes):
    """The EXIF orientation (1..8) of encoded image bytes (scalar string); 1 when there is none.

    Reads the TIFF header of the first APP1 "Exif" segment and the orientation entry of its IFD0.
    Anything malformed or out of range reads as 1 (upright): a bad EXIF block never fails decoding.
    """
    is_jpeg = tf.equal(tf.strings.substr(image_bytes, 0, 2), b"\xff\xd8")
    return tf.cond(is_jpeg, lambda: _jpeg_orientation(image_bytes), lambda: tf.constant(1, tf.int32))


def _jpeg_orientation(image_bytes):
    head = tf.strings.substr(image_bytes, 0, _EXIF_SCAN_BYTES)
    data = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32)                     # (N,)
    size = tf.shape(data)[0]
    padded = tf.concat([data, [0]], 0)  # reads past the end give 0, and fail the checks below

    def byte(i):
        return tf.gather(padded, tf.clip_by_value(i, 0, size))

    # "\xff\xe1" <length> "Exif\0\0": the marker sits 4 bytes before the signature.
    signature = tf.constant([0xFF, 0xE1, -1, -1, 0x45, 0x78, 0x69, 0x66, 0x00, 0x00], tf.int32)
    windows = tf.maximum(size - 10 + 1, 0)
    starts = tf.range(windows)
    match = tf.ones([windows], tf.bool)
    for k in range(10):
        if k in (2, 3):
            continue  # the segment length
        match = tf.logical_and(match, tf.equal(byte(starts + k), signature[k]))
    found = tf.where(match)[:, 0]
    has_exif = tf.logical_and(tf.size(found) > 0, size >= 4)
    tiff = tf.cast(tf.cond(tf.size(found) > 0, lambda: found[0], lambda: tf.constant(0, tf.int64)), tf.int32) + 10
    little = tf.logical_and(tf.equal(byte(tiff), 0x49), tf.equal(byte(tiff + 1), 0x49))
    big = tf.logical_and(tf.equal(byte(tiff), 0x4D), tf.equal(byte(tiff + 1), 0x4D))

    def u16(i):
        return tf.where(little, byte(i) + 256 * byte(i + 1), 256 * byte(i) + byte(i + 1))

    def u32(i):
        low, high = u16(i), u16(i + 2)
        return tf.where(little, low + 65536 * high, 65536 * low + high)

    ifd = tiff + u32(tiff + 4)
    count = tf.clip_by_value(u16(ifd), 0, _MAX_IFD_ENTRIES)
    entries = ifd + 2 + 12 * tf.range(count)                                          # (E,)
    tags = u16(entries)
    is_orientation = tf.equal(tags, _ORIENTATION_TAG)
    hit = tf.where(is_orientation)[:, 0]
    value = tf.cond(tf.size(hit) > 0, lambda: u16(tf.gather(entries, hit[0]) + 8), lambda: tf.constant(1))
    in_bounds = ifd + 2 + 12 * count <= size
    valid = has_exif & (little | big) & in_bounds & (value >= 1) & (value <= 8)
    return tf.where(valid, value, 1)


def apply_orientation(pixels, orientation):
    """Turns (H, W, C) pixels upright for an EXIF orientation (1..8), as PIL's `exif_transpose`."""
    branches = [
        lambda: pixels,                                              # 1: as stored
        lambda: tf.reverse(pixels, [1]),                             # 2: mirrored left-right
        lambda: tf.reverse(pixels, [0, 1]),                          # 3: rotated 180
        lambda: tf.reverse(pixels, [0]),                             # 4: mirrored top-bottom
        lambda: tf.transpose(pixels, [1, 0, 2]),                     # 5: transposed
        lambda: tf.reverse(tf.transpose(pixels, [1, 0, 2]), [1]),    # 6: rotated 90 clockwise
        lambda: tf.reverse(tf.transpose(pixels, [1, 0, 2]), [0, 1]), # 7: transversed
        lambda: tf.reverse(tf.transpose(pixels, [1, 0, 2]), [0]),    # 8: rotated 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(orientation - 1, 0, 7), branches)


def check_image_file(path):
    """Checks that `path` is an image TensorFlow can decode, and returns its size.

    The file is fully decoded with PIL (not only its header), so truncated files are caught.
    Grayscale, palette, RGBA and 16-bit images are accepted: the pipeline converts them to RGB.

    Args:
        path: path to the image file (str or `pathlib.Path`).

    Returns:
        `(width, height)` in pixels.

    Raises:
        ImageError: naming `path`, when the file is missing, cannot be decoded, is in a format
            other than JPEG/PNG/BMP/GIF, or has a side under 1 or over `MAX_IMAGE_SIDE` pixels.
    """
    file = pathlib.Path(path)
    if not file.exists():
        raise ImageError(f"image '{path}' does not exist")
    if file.is_dir():
        raise _undecodable(path, "it is a directory")
    if file.stat().st_size == 0:
        raise _undecodable(path, "the file is empty")
    try:
        with _truncated_images_rejected(), Image.open(file) as image:
            image_format = image.format
            width, height = image.size
            if image_format not in _TF_FORMATS:
                raise ImageError(
                    f"image '{path}' is {image_format}; expected JPEG, PNG, BMP or GIF"
                )
            # Check the header before load(): a 50000 x 50000 file would use gigabytes.
            _check_size(path, width, height)
            image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"image '{path}' is too large to decode: {error}") from error
    # PIL's format plugins raise many exception types on corrupt input (OSError, SyntaxError,
    # ValueError, EOFError, struct.error, zlib.error, ...); all mean "cannot decode this file".
    except Exception as error:  # noqa: BLE001
        raise _undecodable(path, _short_reason(error)) from error

    if image_format == "BMP":
        _check_bmp_header(path, file)
    return width, height


def read_image_bytes(path):
    """Checks `path` with `check_image_file` and returns the raw (still encoded) file bytes.

    Args:
        path: path to the image file.

    Returns:
        The file contents as `bytes`, ready for `tf.io.decode_image`.
    """
    check_image_file(path)
    return pathlib.Path(path).read_bytes()


@contextlib.contextmanager
def _truncated_images_rejected():
    """Turns PIL's LOAD_TRUNCATED_IMAGES off while an image is loaded.

    Another library may switch the module-wide flag on; with it a truncated file loads as a
    partly grey image instead of raising, and the bad file would go unnoticed.
    """
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _check_size(path, width, height):
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        raise ImageError(
            f"image '{path}' is {width}x{height} pixels; expected each side between 1 and "
            f"{MAX_IMAGE_SIDE}"
        )


def _check_bmp_header(path, file):
    """Rejects BMP variants that PIL reads but TensorFlow's BMP decoder does not."""
    with open(file, "rb") as handle:
        header = handle.read(34)
    if len(header) < 26:
        raise _undecodable(path, "BMP header is truncated")
    (info_size,) = struct.unpack_from("<I", header, 14)
    if info_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes, no compression field
        (bits,) = struct.unpack_from("<H", header, 24)
        compression = 0
    else:
        bits, compression = struct.unpack_from("<HI", header, 28)
    if compression in _BMP_COMPRESSION_NAMES:
        raise ImageError(
            f"image '{path}' is a {_BMP_COMPRESSION_NAMES[compression]}-compressed BMP; "
            "expected an uncompressed BMP (or convert it to PNG)"
        )
    if bits not in _TF_BMP_BITS:
        raise ImageError(
            f"image '{path}' is a {bits}-bit BMP; expected 8, 24 or 32 bits per pixel "
            "(or convert it to PNG)"
        )


def _undecodable(path, reason):
    return ImageError(f"image '{path}' could not be decoded as JPEG/PNG/BMP/GIF: {reason}")


def _short_reason(error):
    if isinstance(error, Image.UnidentifiedImageError):
        return "not a recognised image file"
    if isinstance(error, PermissionError):
        return "permission denied"
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
