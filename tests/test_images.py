"""The image gate (model/images.py) on real files made here: bombs, broken files, odd modes."""

from __future__ import annotations

import io
import pathlib
import struct
import warnings
import zlib

import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from model.images import ImageError, ImageLimits, image_to_bytes, load_image

ASTRONAUT = pathlib.Path(__file__).resolve().parent.parent / "static/examples/astronaut.png"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def close_to(pixel, expected, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def black_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG, all black: a few KB on disk for any size (a real bomb)."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    packer = zlib.compressobj(9)
    rows_per_chunk = max(1, 4_000_000 // len(row))
    body = (
        b"".join(
            packer.compress(row * min(rows_per_chunk, height - start))
            for start in range(0, height, rows_per_chunk)
        )
        + packer.flush()
    )
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )


def patched_ihdr(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height`: decoding it would fail as truncated."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), RED).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[8:33] = png_chunk(b"IHDR", header)
    return bytes(data)


def save(img: Image.Image, path: pathlib.Path, **options) -> pathlib.Path:
    img.save(path, **options)
    return path


# --- decompression bombs and size limits -------------------------------------------------


def test_real_bomb_far_above_pillows_limit_is_refused(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(black_png(30_000, 30_000))  # 900 Mpixels in ~100 KB
    assert path.stat().st_size < 1_000_000
    filters = list(warnings.filters)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match=r"^huge\.png is larger than the 64,000,000-pixel limit$"):
        load_image(path)
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # nothing global was changed
    assert warnings.filters == filters


def test_bomb_under_pillows_limit_is_refused_from_the_header(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(black_png(9_000, 9_000))  # 81 Mpixels: Pillow alone would decode it
    with pytest.raises(
        ImageError,
        match=r"^big\.png is 9000x9000 pixels, more than the " r"64,000,000-pixel limit$",
    ):
        load_image(path)


def test_pixel_check_happens_before_decoding(tmp_path):
    # The body holds one pixel: had the gate decoded it, it would report a truncated file.
    path = tmp_path / "huge.png"
    path.write_bytes(patched_ihdr(8_001, 8_000))
    with pytest.raises(
        ImageError,
        match=r"^huge\.png is 8001x8000 pixels, more than the " r"64,000,000-pixel limit$",
    ):
        load_image(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillows_warning_is_an_error_even_with_a_higher_limit(tmp_path):
    path = tmp_path / "wide.png"
    path.write_bytes(patched_ihdr(10_000, 10_000))  # 100 M: above Pillow's warning threshold
    with pytest.raises(
        ImageError,
        match=r"is 10000x10000 pixels, more than the " rf"{Image.MAX_IMAGE_PIXELS:,}-pixel limit",
    ):
        load_image(path, ImageLimits(max_pixels=500_000_000))


def test_pixel_limit_is_per_call(tmp_path):
    path = save(Image.new("RGB", (40, 25), RED), tmp_path / "small.png")
    with pytest.raises(
        ImageError, match=r"^small\.png is 40x25 pixels, more than the " r"999-pixel limit$"
    ):
        load_image(path, ImageLimits(max_pixels=999))
    assert load_image(path, ImageLimits(max_pixels=1000)).size == (40, 25)


def test_byte_limit_for_paths_bytes_and_file_objects(tmp_path):
    data = ASTRONAUT.read_bytes()
    limits = ImageLimits(max_bytes=len(data) - 1)
    with pytest.raises(ImageError, match=r"^astronaut\.png is larger than the .* limit$"):
        load_image(ASTRONAUT, limits)
    with pytest.raises(ImageError, match=r"^the file is larger than"):
        load_image(data, limits)
    with pytest.raises(ImageError, match=r"^the file is larger than"):
        load_image(io.BytesIO(data), limits)
    assert load_image(data, ImageLimits(max_bytes=len(data))).size == (512, 512)


def test_max_side_downscales_keeping_the_aspect_ratio(tmp_path):
    assert load_image(ASTRONAUT, ImageLimits(max_side=100)).size == (100, 100)
    wide = Image.new("RGB", (800, 400), BLUE)
    png = save(wide, tmp_path / "wide.png")
    jpeg = save(wide, tmp_path / "wide.jpg", quality=95)  # JPEG takes the draft() path
    for path in (png, jpeg):
        small = load_image(path, ImageLimits(max_side=100))
        assert small.size == (100, 50) and small.mode == "RGB"
        assert close_to(small.getpixel((50, 25)), BLUE)
    assert load_image(png, ImageLimits(max_side=2000)).size == (800, 400)  # never upscales


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        ImageLimits(max_side=0)


# --- broken files and files that are not images ------------------------------------------


def test_truncated_jpeg_and_png(tmp_path):
    buffer = io.BytesIO()
    Image.open(ASTRONAUT).convert("RGB").save(buffer, "JPEG")
    (tmp_path / "photo.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "photo.png").write_bytes(ASTRONAUT.read_bytes()[:20_000])
    (tmp_path / "stub.png").write_bytes(ASTRONAUT.read_bytes()[:12])  # cut inside the header
    for name in ("photo.jpg", "photo.png", "stub.png"):
        with pytest.raises(
            ImageError, match=rf"^{name.replace('.', '[.]')} is truncated or corrupt$"
        ):
            load_image(tmp_path / name)


def test_empty_file(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match=r"^photo\.jpg is empty$"):
        load_image(tmp_path / "photo.jpg")
    with pytest.raises(ImageError, match=r"^the file is empty$"):
        load_image(b"")


def test_text_renamed_jpg(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("Dear team,\nthe photos are attached. Café, naïve, 東京.\n" * 20)
    with pytest.raises(ImageError, match=r"^photo\.jpg is not an image \(it looks like text\)$"):
        load_image(path)
    html = tmp_path / "page.png"
    html.write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    with pytest.raises(ImageError, match=r"^page\.png is not an image \(it looks like a web page"):
        load_image(html)
    with pytest.raises(ImageError, match=r"^the file is not an image \(it looks like text\)$"):
        load_image(b"BMW is a car maker")  # starts like a BMP header


def test_svg(tmp_path):
    path = tmp_path / "drawing.svg"
    path.write_text(
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
        'width="10" height="10"><rect width="10" height="10"/></svg>'
    )
    with pytest.raises(
        ImageError, match=r"^drawing\.svg is an SVG drawing; upload a photo " r"\(JPEG, PNG, WebP"
    ):
        load_image(path)


def test_other_unreadable_inputs(tmp_path):
    with pytest.raises(ImageError, match=r"^the file is not an image in a supported format"):
        load_image(bytes(range(256)) * 8)
    heic = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64
    with pytest.raises(ImageError, match=r"^the file is a HEIC photo"):
        load_image(heic)
    with pytest.raises(ImageError, match=r"^missing\.jpg does not exist$"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "album").mkdir()
    with pytest.raises(ImageError, match=r"^album is a folder, not an image$"):
        load_image(tmp_path / "album")
    with pytest.raises(TypeError):
        load_image(42)


def test_errors_are_user_facing_value_errors():
    assert ImageError.user_facing is True and issubclass(ImageError, ValueError)


# --- colour modes, alpha, animation, orientation -----------------------------------------


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), tmp_path / "print.jpg")
    assert Image.open(path).mode == "CMYK"
    img = load_image(path)
    assert img.mode == "RGB" and close_to(img.getpixel((16, 16)), RED)


def test_16_bit_greyscale_png(tmp_path):
    ramp = Image.new("I;16", (3, 1))
    for x, value in enumerate((0, 32768, 65535)):
        ramp.putpixel((x, 0), value)
    path = save(ramp, tmp_path / "scan.png")
    assert Image.open(path).mode == "I;16"
    img = load_image(path)
    assert img.mode == "RGB"
    assert [img.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), WHITE]
    wide = Image.new("I", (2, 1))  # 32-bit greyscale holding 16-bit values, as from TIFF
    wide.putpixel((1, 0), 65535)
    assert load_image(wide).getpixel((1, 0)) == WHITE


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (30, 10), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 0, 255, 255), (10, 0, 20, 10))  # opaque blue
    rgba.paste((0, 0, 0, 128), (20, 0, 30, 10))  # half-transparent black
    img = load_image(save(rgba, tmp_path / "logo.png"))
    assert img.mode == "RGB"
    assert img.getpixel((5, 5)) == WHITE
    assert img.getpixel((15, 5)) == BLUE
    assert close_to(img.getpixel((25, 5)), (127, 127, 127), tolerance=2)
    la = Image.new("LA", (4, 4), (0, 0))
    assert load_image(la).getpixel((1, 1)) == WHITE


def test_palette_with_transparency(tmp_path):
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([*RED, *GREEN])
    palette.paste(0, (0, 0, 4, 8))
    path = save(palette, tmp_path / "icon.png", transparency=0)
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.getpixel((1, 1)) == WHITE and img.getpixel((6, 6)) == GREEN


@pytest.mark.parametrize("suffix", ["gif", "webp", "png"])
def test_animation_gives_its_first_frame(tmp_path, suffix):
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE)]
    path = save(
        frames[0],
        tmp_path / f"wave.{suffix}",
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
    )
    assert getattr(Image.open(path), "n_frames", 1) == 3  # really animated
    img = load_image(path)
    assert img.mode == "RGB" and close_to(img.getpixel((8, 8)), RED)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 8, 8))  # marker at the stored top-left
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90 degrees clockwise to display"
    path = save(stored, tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    img = load_image(path)
    assert img.size == (20, 40)
    assert close_to(img.getpixel((16, 3)), RED)  # the top-left went to the top-right
    assert close_to(img.getpixel((3, 3)), BLUE)
    assert img.getexif().get(ExifTags.Base.Orientation) is None
    opened = Image.open(path)  # a PIL input is rotated too, on a copy
    assert load_image(opened).size == (20, 40) and opened.size == (40, 20)


# --- metadata --------------------------------------------------------------------------


def gps_jpeg(path: pathlib.Path) -> pathlib.Path:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save(
        Image.new("RGB", (16, 16), GREEN),
        path,
        exif=exif.tobytes(),
        icc_profile=icc,
        comment=b"home address",
    )
    original = Image.open(path)
    assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the file really has GPS
    assert {"exif", "icc_profile", "comment"} <= set(original.info)
    return path


def assert_no_metadata(data: bytes) -> None:
    for marker in (
        b"Exif",
        b"PhoneMaker",
        b"home address",
        b"ICC_PROFILE",
        b"eXIf",
        b"iCCP",
        b"tEXt",
        b"zTXt",
        b"iTXt",
    ):
        assert marker not in data, marker
    reread = Image.open(io.BytesIO(data))
    assert not reread.getexif() and "exif" not in reread.info and "icc_profile" not in reread.info


def test_no_metadata_survives(tmp_path):
    path = gps_jpeg(tmp_path / "holiday.jpg")
    img = load_image(path)
    assert img.info == {} and not img.getexif()
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert_no_metadata(image_to_bytes(img, fmt))
    # Even an image that never went through load_image comes out clean.
    assert_no_metadata(image_to_bytes(Image.open(path), "JPEG"))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "home address")
    info.add_text("Author", "home address", zip=True)
    png = save(Image.new("RGB", (8, 8), RED), tmp_path / "notes.png", pnginfo=info)
    assert load_image(png).info == {}


def test_image_to_bytes_round_trips_and_refuses_unknown_formats():
    img = load_image(ASTRONAUT)
    assert list(load_image(image_to_bytes(img)).getdata()) == list(img.getdata())
    assert Image.open(io.BytesIO(image_to_bytes(img, "jpg", quality=80))).format == "JPEG"
    with pytest.raises(ValueError):
        image_to_bytes(img, "BMP")


# --- the kinds of source -----------------------------------------------------------------


def test_every_kind_of_source_gives_the_same_image(tmp_path):
    expected = list(Image.open(ASTRONAUT).convert("RGB").getdata())
    data = ASTRONAUT.read_bytes()
    with open(ASTRONAUT, "rb") as file:
        sources = [
            ASTRONAUT,
            str(ASTRONAUT),
            data,
            bytearray(data),
            io.BytesIO(data),
            file,
            Image.open(ASTRONAUT),
        ]
        for source in sources:
            img = load_image(source)
            assert img.size == (512, 512) and img.mode == "RGB" and img.info == {}
            assert list(img.getdata()) == expected, type(source)


def test_a_pil_input_is_left_untouched():
    original = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    original.info["comment"] = b"keep me"
    img = load_image(original)
    assert img is not original and img.getpixel((0, 0)) == WHITE
    assert original.mode == "RGBA" and original.info == {"comment": b"keep me"}


def test_file_object_name_is_used_in_messages(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("just text")
    with open(path, "rb") as file, pytest.raises(ImageError, match=r"^notes\.jpg is not an image"):
        load_image(file)
    with pytest.raises(TypeError, match="binary mode"), open(path) as text_file:
        load_image(text_file)


def test_astronaut_example():
    img = load_image(ASTRONAUT)
    assert img.size == (512, 512) and img.mode == "RGB"
    assert len(set(img.resize((16, 16)).getdata())) > 100  # a real photo, not a blank
