"""16-bit, float and oversized images decode the same way in every reader (issue 11: defects 3, 6)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ferlab.data import read_image_folder
from ferlab.data.images import ImageProblem, decode_face, decode_first_frame
from ferlab.errors import DataError
from tests.hostile import announced_png, png_bytes, with_significant_bits


def decode_image(data: bytes) -> Image.Image:
    return decode_first_frame(data).image


def test_a_16_bit_gray_png_is_scaled_not_clipped_to_white():
    values = np.array([0, 257, 32896, 65535] * (48 * 12), dtype=np.uint16).reshape(48, 48)
    face, note = decode_face(png_bytes(values), resize=False)
    assert face.dtype == np.uint8 and note is None
    assert face[0, :4].tolist() == [0, 1, 128, 255]
    assert (face == 255).mean() == pytest.approx(0.25)  # clipping made 75% of it white


def test_a_16_bit_png_stating_12_significant_bits_is_scaled_by_its_own_range():
    values = np.array([0, 16, 2048, 4095] * (48 * 12), dtype=np.uint16).reshape(48, 48)
    decoded = decode_first_frame(with_significant_bits(png_bytes(values), 12))
    assert np.asarray(decoded.image)[0, :4].tolist() == [0, 1, 128, 255] and decoded.note is None
    assert decode_face(with_significant_bits(png_bytes(values), 12), resize=False)[0][0, :4].tolist() == [0, 1, 128, 255]
    for meaningless in (0, 17):  # outside 1..16: the chunk is passed over, as a decoder must
        assert np.asarray(decode_image(with_significant_bits(png_bytes(values), meaningless)))[0, 3] == 16


def test_a_16_bit_image_of_12_bit_values_is_read_as_it_is_and_said_to_be_dark():
    """12-bit data saved unscaled in 16 bits came out nearly black (no face found) without a word.
    It is not rescaled: one face of a set would then be read brighter than the next."""
    values = np.array([0, 16, 2048, 4095] * (48 * 12), dtype=np.uint16).reshape(48, 48)
    for data in (png_bytes(values), _tiff(Image.fromarray(values))):
        decoded = decode_first_frame(data)
        assert np.asarray(decoded.image)[0, :4].tolist() == [0, 0, 8, 16]
        assert decoded.note == ("its 16-bit values reach only 4095 of 65535, as 12-bit data saved unscaled would, so "
                                "it is read nearly black: scale it to the full range or state its bits in a PNG sBIT chunk")
    for quiet in (values * 16, np.zeros_like(values)):  # the full range; a black image
        assert decode_first_frame(png_bytes(quiet)).note is None
    import cv2

    colour = np.stack([values, values // 2, values // 4], -1)  # Pillow reads a 16-bit colour PNG's high bytes
    for pixels, said in ((colour, "its 16-bit values stay under 4096 of 65535"), (colour * 16, None)):
        ok, encoded = cv2.imencode(".png", pixels)
        note = decode_first_frame(encoded.tobytes()).note
        assert (note == f"{said}, as 12-bit data saved unscaled would, so it is read nearly black: scale it to the "
                        "full range") if said else note is None
    assert decode_first_frame(png_bytes((values // 16).astype(np.uint8))).note is None  # 8-bit images: no note


def test_float_and_32_bit_values_above_their_range_are_clipped_and_said_to_be():
    """A float TIFF of raw counts (0..4095) came out white without a word."""
    counts = np.array([0, 100, 2048, 4095] * (48 * 12), dtype=np.float32).reshape(48, 48)
    decoded = decode_first_frame(_tiff(Image.fromarray(counts, mode="F")))
    assert np.asarray(decoded.image)[0, :4].tolist() == [0, 100, 255, 255]  # the rule, as before
    assert decoded.note == ("its float values reach 4095, above the 0..255 it is read in, so they are clipped to "
                            "white: scale them")
    wide = decode_first_frame(_tiff(Image.fromarray((counts * 1000).astype(np.int32), mode="I")))
    assert wide.note.startswith("its 32-bit values reach 4.095e+06, above the 0..65535 it is read in")
    assert decode_first_frame(_tiff(Image.fromarray(counts / 4095, mode="F"))).note is None  # [0, 1]: scaled


def test_a_16_bit_rgb_png_matches_its_8_bit_copy():
    import cv2

    generator = np.random.default_rng(0)
    rgb8 = generator.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", (rgb8.astype(np.uint16) * 257)[..., ::-1])
    assert ok
    wide = decode_image(encoded.tobytes())
    assert wide.mode == "RGB" and np.array_equal(np.asarray(wide), rgb8)


def test_float_images_in_0_1_are_scaled():
    image = Image.fromarray(np.full((48, 48), 0.5, dtype=np.float32), mode="F")
    assert np.asarray(decode_image(_tiff(image))).max() == 128


def test_float_images_with_nan_or_infinite_pixels_are_refused():
    values = np.full((48, 48), 0.5, dtype=np.float32)
    values[3, 3] = np.nan  # read as it was (its range then 0..1 no more), this face became black
    with pytest.raises(ImageProblem, match=r"^float image with 1 NaN or infinite pixel of 2304$"):
        decode_image(_tiff(Image.fromarray(values, mode="F")))
    values[4, 4] = -np.inf
    with pytest.raises(ImageProblem, match=r"^float image with 2 NaN or infinite pixels of 2304$"):
        decode_image(_tiff(Image.fromarray(values, mode="F")))


def _tiff(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    return buffer.getvalue()


def test_an_image_announcing_too_many_pixels_is_refused_before_decoding():
    with pytest.raises(ImageProblem, match=r"image is 10000x5000 \(50 MP\), above the limit of 40 MP"):
        decode_image(announced_png(10000, 5000))
    with pytest.raises(ImageProblem, match=r"image has 200 MP, above the limit of 40 MP"):  # Pillow's own bomb check
        decode_image(announced_png(20000, 10000))


def test_an_oversized_image_in_a_data_folder_is_skipped_and_counted(tmp_path):
    face = png_bytes(np.zeros((48, 48), dtype=np.uint8))
    for name, data in {"train/happy/Training_1.png": face, "train/happy/Training_2.png": announced_png(20000, 10000),
                       "test/sad/PublicTest_3.png": face}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=r"Training_2.png: image has 200 MP"):
        read_image_folder(tmp_path)
    faces = read_image_folder(tmp_path, skip_bad_rows=True, resize=True)
    assert len(faces) == 2 and faces.skipped == 1


@pytest.mark.parametrize("garbage", [b"\x89PNG\r\n\x1a\n" + bytes(30), b"GIF89a" + bytes(8), b"BM" + bytes(60), b""])
def test_damaged_headers_are_problems_not_tracebacks(garbage):
    assert isinstance(decode_face(garbage, resize=True), str)


def damaged(format: str) -> bytes:
    """A real image of ``format`` with the bytes after its first 16 scrambled: it keeps its signature."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(buffer, format=format)
    data = bytearray(buffer.getvalue())
    data[16:48] = bytes(range(32))
    return bytes(data)


def float_rgb_tiff() -> bytes:
    """A whole, valid TIFF of float32 RGB pixels in [0, 1], as OpenCV writes one."""
    import cv2

    ok, encoded = cv2.imencode(".tiff", np.full((40, 60, 3), 0.5, np.float32))
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize("data, message", [
    (damaged("PNG"), "damaged PNG (it starts as one, but Pillow cannot read it)"),
    (b"RIFF\x30\x00\x00\x00WEBPXXXX" + bytes(40), "damaged WebP (it starts as one, but Pillow cannot read it)"),
    (damaged("TIFF"), "damaged TIFF (it starts as one, but Pillow cannot read it)"),
    (float_rgb_tiff(), "a TIFF whose pixel layout Pillow cannot read (colour in floating point, or another rare kind "
                       "of sample); convert it to PNG or JPEG"),  # it was "damaged TIFF"
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200),
     "a HEIC/HEIF photo (an iPhone's format), which Pillow cannot read; convert it to JPEG or PNG"),
    (b"\x00\x00\x00\x18ftypisom" + bytes(200), "not an image (no image format Pillow knows)"),  # an MP4
    (b"taken in 1984", "not an image (no image format Pillow knows)")])
def test_a_photo_pillow_cannot_open_is_named_by_its_first_bytes(data, message):
    """A damaged PNG and an iPhone's HEIC were both "not an image (no image format Pillow knows)"."""
    with pytest.raises(ImageProblem) as problem:
        decode_image(data)
    assert str(problem.value) == message


def frames_file(format: str, values=(30, 200), **options) -> bytes:
    """A (40, 60) image of one gray frame per value, saved with all of them."""
    first, *rest = (Image.fromarray(np.full((40, 60, 3), value, np.uint8)) for value in values)
    buffer = io.BytesIO()
    first.save(buffer, format=format, save_all=True, append_images=rest, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("format", ["GIF", "PNG", "WEBP", "TIFF"])
def test_an_animated_or_multi_page_image_is_its_first_frame_and_says_so(format):
    image, more_frames, _ = decode_first_frame(frames_file(format))
    assert more_frames and abs(np.asarray(image.convert("L"), float).mean() - 30) < 3  # the first frame's gray
    assert decode_first_frame(frames_file(format, values=(30,))).more_frames is False


def test_a_camera_jpegs_preview_pictures_are_not_frames_left_unread():
    image, more_frames, _ = decode_first_frame(frames_file("MPO"))  # what some cameras save: a JPEG and its previews
    assert image.size == (60, 40) and more_frames is False


def test_an_animation_cut_short_in_its_second_frame_still_gives_its_first():
    data = frames_file("GIF", values=(30, 200, 90))
    image = decode_first_frame(data[: len(data) * 2 // 3]).image
    assert abs(np.asarray(image.convert("L"), float).mean() - 30) < 3
