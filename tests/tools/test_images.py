"""tools.images: loading every kind of input, masks, composite, boxes and pictures."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tools import images as im
from tools import pictures
from tools.types import Detection, ImageError, LocaleditError


# ----------------------------------------------------------------------------- helpers


def one_sentence(msg: str) -> bool:
    """One sentence: a single line ending with a full stop and no '. ' inside."""
    return msg.endswith(".") and "\n" not in msg and ". " not in msg and len(msg) < 300


def load_error(source, **kw) -> str:
    with pytest.raises(ImageError) as info:
        im.load_image(source, **kw)
    msg = str(info.value)
    assert one_sentence(msg), msg
    return msg


def gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    arr = np.stack([x, y, 255 - x], -1).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def raw_mode(path: Path) -> str:
    with Image.open(path) as img:
        return img.mode


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny valid 1x1 PNG whose IHDR claims ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (1, 2, 3)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    # signature (8) + length (4) + b"IHDR" (4) -> width, height at 16:24; CRC after 13 data bytes
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


# ----------------------------------------------------------------------------- loading


def test_rgb_png_round_trip(tmp_path: Path) -> None:
    src = gradient()
    p = tmp_path / "g.png"
    src.save(p)
    for source in (p, str(p), p.read_bytes()):
        out = im.load_image(source)
        assert out.mode == "RGB" and out.size == (64, 48)
        assert np.array_equal(np.asarray(out), np.asarray(src))


def test_rgba_composited_over_white(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 4), np.uint8)
    arr[:, :10] = (255, 0, 0, 255)  # opaque red
    arr[:, 10:] = (0, 0, 255, 0)  # fully transparent blue -> white
    arr[0, 15] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    p = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(p)
    out = np.asarray(im.load_image(p))
    assert out.shape == (10, 20, 3)
    assert tuple(out[5, 2]) == (255, 0, 0)
    assert tuple(out[5, 12]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 2 for v in out[0, 15])


def test_la_composited_over_white(tmp_path: Path) -> None:
    img = Image.new("LA", (8, 8), (0, 0))
    img.putpixel((1, 1), (40, 255))
    p = tmp_path / "la.png"
    img.save(p)
    out = np.asarray(im.load_image(p))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (40, 40, 40)


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (12, 6), 0)
    img.putpalette([0, 255, 0, 10, 20, 30] + [0] * (254 * 3))
    img.paste(1, (6, 0, 12, 6))
    img.info["transparency"] = 0  # index 0 (green) is transparent
    p = tmp_path / "p.png"
    img.save(p, transparency=0)
    with Image.open(p) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    out = np.asarray(im.load_image(p))
    assert tuple(out[3, 2]) == (255, 255, 255)
    assert tuple(out[3, 9]) == (10, 20, 30)


def test_grayscale_and_one_bit(tmp_path: Path) -> None:
    g = Image.new("L", (10, 10), 77)
    g.save(tmp_path / "l.png")
    out = np.asarray(im.load_image(tmp_path / "l.png"))
    assert out.shape == (10, 10, 3) and (out == 77).all()

    b = Image.new("1", (10, 10), 0)
    b.putpixel((3, 4), 1)
    b.save(tmp_path / "b.png")
    out = np.asarray(im.load_image(tmp_path / "b.png"))
    assert tuple(out[4, 3]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(tmp_path: Path, fmt: str) -> None:
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    p = tmp_path / f"cmyk.{fmt.lower()}"
    img.save(p, fmt)
    assert raw_mode(p) == "CMYK"
    out = np.asarray(im.load_image(p)).astype(int)
    assert out.shape == (16, 16, 3)
    r, g, b = out[8, 8]
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_png(tmp_path: Path) -> None:
    arr = np.zeros((4, 6), np.uint16)
    arr[:, :3] = 65535
    arr[:, 3:] = 257 * 100
    p = tmp_path / "16.png"
    Image.fromarray(arr).save(p)
    assert raw_mode(p) in ("I;16", "I")
    out = np.asarray(im.load_image(p))
    assert out.shape == (4, 6, 3)
    assert (out[:, :3] == 255).all() and (out[:, 3:] == 100).all()


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_integer_modes(tmp_path: Path, mode: str) -> None:
    img = Image.new(mode, (5, 5), 257 * 200)
    out = im.load_image(_tiff_bytes(img))
    assert out.mode == "RGB"
    assert (np.asarray(out) == 200).all()


def _tiff_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "TIFF")
    return buf.getvalue()


def test_float_image(tmp_path: Path) -> None:
    arr = np.zeros((4, 4), np.float32)
    arr[:, 2:] = 1.0
    arr[0, 0] = 0.5
    p = tmp_path / "f.tiff"
    Image.fromarray(arr, "F").save(p)
    assert raw_mode(p) == "F"
    out = np.asarray(im.load_image(p))
    assert (out[:, 2:] == 255).all() and out[1, 1, 0] == 0 and out[0, 0, 0] in (127, 128)


def test_exif_rotated_jpeg(tmp_path: Path) -> None:
    arr = np.full((20, 40, 3), 128, np.uint8)  # stored 40 wide, 20 high
    arr[:8, :8] = (255, 0, 0)  # stored top-left corner is red
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = tmp_path / "rot.jpg"
    img.save(p, quality=95, exif=exif)
    out = im.load_image(p)
    assert out.size == (20, 40)  # displayed: 20 wide, 40 high
    a = np.asarray(out).astype(int)
    r, g, b = a[3, 16]  # the red corner is now top-right
    assert r > 200 and g < 60 and b < 60
    assert abs(a[3, 3] - 128).max() < 20  # top-left is grey
    assert "exif" not in out.info


def test_multi_frame_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    out = np.asarray(im.load_image(p)).astype(int)
    assert out[4, 4, 0] > 200 and out[4, 4, 2] < 60


def test_missing_file(tmp_path: Path) -> None:
    msg = load_error(tmp_path / "nope.png")
    assert "does not exist" in msg and "nope.png" in msg


def test_folder(tmp_path: Path) -> None:
    assert "folder" in load_error(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    assert "empty" in load_error(p)
    assert "empty" in load_error(b"")


def _returns_within(seconds: float, fn, *args, **kwargs):
    """``fn(*args)``'s exception message, or a failure if it is still running after ``seconds``."""
    import threading

    box: dict = {}

    def run() -> None:
        try:
            fn(*args, **kwargs)
            box["error"] = None
        except Exception as err:  # noqa: BLE001 - handed to the test
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} still running after {seconds} s"
    return box["error"]


def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    pipe = tmp_path / "photo.png"
    os.mkfifo(pipe)  # opening it for reading would wait for a writer forever
    err = _returns_within(5, im.load_image, pipe)
    assert isinstance(err, ImageError) and "named pipe" in str(err) and one_sentence(str(err)), err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused_before_reading(device: str, tmp_path: Path) -> None:
    err = _returns_within(5, im.load_image, device)
    assert isinstance(err, ImageError) and "character device" in str(err), err
    link = tmp_path / "innocent.png"  # a link to a device is the device
    link.symlink_to(device)
    err = _returns_within(5, im.load_image, link)
    assert isinstance(err, ImageError) and "character device" in str(err), err


def test_the_byte_cap_holds_while_reading_not_only_by_stat() -> None:
    """/proc files are regular files whose stat() size is 0: only a capped read stops them."""
    import os

    assert os.stat("/proc/self/maps").st_size == 0
    msg = load_error("/proc/self/maps", max_bytes=100)
    assert "100 bytes limit" in msg


@pytest.mark.parametrize("size,what", [((10_000, 2), "times longer"), ((40, 4000), "times longer"),
                                       ((20_000, 3000), "long side")])
def test_side_and_aspect_limits_refuse_strips_inside_the_pixel_limit(size, what) -> None:
    w, h = size
    data = png_with_header_size(w, h)  # header only: the limits are checked before decoding
    msg = load_error(data, max_pixels=10**9, max_side=16384, max_aspect=20)
    assert what in msg and f"{w}x{h}" in msg
    assert "truncated" in load_error(data, max_pixels=10**9, max_side=10**6, max_aspect=10**6)


def test_probe_reads_the_header_only() -> None:
    size, mode = im.probe_image(png_with_header_size(3000, 2000))  # no pixel data: decoding would fail
    assert size == (3000, 2000) and mode == "RGB"
    with pytest.raises(ImageError, match="pixel limit"):
        im.probe_image(png_with_header_size(3000, 2000), max_pixels=1000)


def test_text_file_named_png(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("hello, this is not a picture\n" * 20)
    msg = load_error(p)
    assert "is not an image localedit can read" in msg and "PNG" in msg and "JPEG" in msg


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, fmt)
    data = buf.getvalue()
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(data[: len(data) // 2])
    assert "truncated" in load_error(p)
    assert "truncated" in load_error(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_oversize_bytes(tmp_path: Path) -> None:
    p = tmp_path / "g.png"
    gradient().save(p)
    msg = load_error(p, max_bytes=100)
    assert "limit" in msg and "100 bytes" in msg
    assert "limit" in load_error(p.read_bytes(), max_bytes=100)
    assert im.load_image(p, max_bytes=10_000_000).size == (64, 48)


def test_decompression_bomb_header(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(png_with_header_size(30000, 30000))
    assert p.stat().st_size < 200
    msg = load_error(p)
    assert "900,000,000 pixels" in msg and "pixel limit" in msg
    # even when our own limit would allow it, Pillow's bomb error becomes an ImageError
    msg = load_error(p, max_pixels=10**10)
    assert "pixel" in msg


def test_pixel_limit_checked_before_decoding(tmp_path: Path) -> None:
    data = png_with_header_size(5000, 5000)  # under Pillow's own limit, no pixel data
    msg = load_error(data, max_pixels=1_000_000)
    assert "5000x5000" in msg and "1,000,000 pixel limit" in msg
    assert "truncated" in load_error(data, max_pixels=10**8)  # allowed size, then decoding fails


def test_max_pixels(tmp_path: Path) -> None:
    p = tmp_path / "g.png"
    gradient().save(p)
    msg = load_error(p, max_pixels=1000)
    assert "64x48" in msg and "1,000" in msg


def test_png_bytes_round_trip() -> None:
    src = gradient()
    data = im.to_png_bytes(src)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = im.from_png_bytes(data)
    assert np.array_equal(np.asarray(back), np.asarray(src))
    assert im.from_png_bytes(im.to_png_bytes(Image.new("CMYK", (3, 3)))).mode == "RGB"


def test_content_hash() -> None:
    a, b = gradient(), gradient()
    assert im.content_hash(a) == im.content_hash(b)
    assert 16 <= len(im.content_hash(a)) <= 64
    b.putpixel((0, 0), (1, 2, 3))
    assert im.content_hash(a) != im.content_hash(b)
    assert im.content_hash(a) != im.content_hash(a.convert("RGBA"))


# ----------------------------------------------------------------------------- work size


@pytest.mark.parametrize("size,max_side,expected", [
    ((4000, 3000), 512, (512, 384)),
    ((3000, 4000), 512, (384, 512)),
    ((512, 512), 512, (512, 512)),
    ((640, 480), 768, (640, 480)),  # never upscaled
    ((100, 100), 512, (96, 96)),  # rounded down, not up past the original
    ((20, 10), 512, (64, 64)),  # tiny: up to 64, at least 64 per side
    ((1000, 50), 512, (512, 64)),  # short side floored at 64
])
def test_work_size_table(size, max_side, expected) -> None:
    assert im.work_size(size, max_side) == expected


@pytest.mark.parametrize("size", [(1001, 333), (333, 1001), (777, 555), (4032, 3024), (65, 999)])
def test_work_size_properties(size) -> None:
    w, h = im.work_size(size, 512)
    assert w % 8 == 0 and h % 8 == 0 and w >= 64 and h >= 64
    assert max(w, h) <= 512
    assert abs(w / h - size[0] / size[1]) / (size[0] / size[1]) < 0.1 or min(w, h) == 64


def test_to_work() -> None:
    out = im.to_work(gradient(400, 300), 128)
    assert out.size == (128, 96) and out.mode == "RGB"


# ----------------------------------------------------------------------------- masks


def test_mask_resize_round_trip() -> None:
    mask = np.zeros((300, 400), bool)
    mask[100:200, 100:300] = True
    small = im.mask_to_work(mask, (128, 96))
    assert small.dtype == bool and small.shape == (96, 128)
    assert small[48, 64] and not small[5, 5]
    back = im.mask_from_work(small, (400, 300))
    assert back.shape == (300, 400) and back.dtype == bool
    assert (back != mask).mean() < 0.02


def test_dilate_erode() -> None:
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    assert np.array_equal(im.dilate(mask, 0), mask)
    assert im.dilate(mask, 0) is not mask
    d = im.dilate(mask, 3)
    assert d.dtype == bool and d[10, 13] and d[13, 10] and not d[10, 14] and d.sum() > 25
    block = np.zeros((21, 21), bool)
    block[5:16, 5:16] = True
    e = im.erode(block, 2)
    assert e[7:14, 7:14].all() and e.sum() == 49
    assert np.array_equal(im.erode(im.dilate(block, 2), 2), block)
    full = np.ones((10, 10), bool)  # the image border does not erode
    assert im.erode(full, 3).all()


def test_feather() -> None:
    mask = np.zeros((60, 60), bool)
    mask[10:50, 10:50] = True
    hard = im.feather(mask, 0)
    assert hard.dtype == np.float32 and np.array_equal(hard, mask.astype(np.float32))
    a = im.feather(mask, 6)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert (a[~mask] == 0).all()
    assert (a[20:40, 20:40] == 1).all()
    row = a[30, 5:31]  # from outside, across the left edge, to the centre
    assert (np.diff(row) >= 0).all()
    assert 0 < a[30, 10] < 0.5 and a[30, 10] < a[30, 13] < a[30, 16]


def test_composite_keeps_background_bit_identical() -> None:
    rng = np.random.default_rng(1)
    orig = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    edited_small = Image.new("RGB", (40, 30), (0, 255, 0))  # different size, all different
    mask = np.zeros((120, 160), bool)
    mask[30:90, 40:120] = True
    alpha = im.feather(mask, 5)
    out = im.composite(orig, edited_small, mask, 5)
    assert out.size == orig.size and out.mode == "RGB"
    o, r = np.asarray(orig), np.asarray(out)
    assert np.array_equal(r[~mask], o[~mask])
    assert np.array_equal(r[alpha == 0], o[alpha == 0])
    deep = alpha == 1
    assert deep.sum() > 1000 and (r[deep] == (0, 255, 0)).all()
    edge = (alpha > 0) & (alpha < 1)
    assert edge.any()
    expected = np.asarray(edited_small.resize(orig.size, Image.Resampling.LANCZOS)).astype(np.float32)
    blend = np.rint(alpha[..., None] * expected + (1 - alpha[..., None]) * o.astype(np.float32))
    assert np.abs(r[edge].astype(int) - blend[edge]).max() <= 1  # alpha in uint8: at most 1 level off


def test_composite_of_a_detailed_edit_matches_the_float_blend() -> None:
    """A textured edit at another size: inside the mask the result follows the LANCZOS-resized edit
    (resized over the mask's box only, so at most a few levels off the whole-image resize)."""
    rng = np.random.default_rng(2)
    orig = Image.fromarray(rng.integers(0, 256, (101, 157, 3), dtype=np.uint8))
    edited = Image.fromarray(np.asarray(orig.resize((64, 48)))[:, ::-1].copy())  # mirrored: all different
    mask = np.zeros((101, 157), bool)
    mask[20:80, 15:70] = True
    out = np.asarray(im.composite(orig, edited, mask, 4)).astype(int)
    o = np.asarray(orig)
    assert np.array_equal(out[~mask], o[~mask])
    x0, y0, x1, y1 = (int(v) for v in im.mask_bbox(mask))
    sx, sy = 64 / 157, 48 / 101
    region = np.asarray(edited.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS,
                                      box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy))).astype(int)
    deep = im.feather(mask, 4)[y0:y1, x0:x1] == 1
    assert deep.sum() > 1500 and np.array_equal(out[y0:y1, x0:x1][deep], region[deep])


def test_composite_in_bands_equals_one_band(monkeypatch) -> None:
    """Feather and blend run in bands of rows (bounded temporaries); the bands must not show."""
    rng = np.random.default_rng(3)
    orig = Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))
    edited = Image.fromarray(rng.integers(0, 256, (45, 35, 3), dtype=np.uint8))
    mask = np.zeros((90, 70), bool)
    mask[5:85, 10:60] = True
    mask[40:50, 30:40] = False  # a hole: edges inside too
    whole, alpha = im.composite(orig, edited, mask, 6), im.feather(mask, 6)
    monkeypatch.setattr(im, "BAND_PIXELS", 3 * 70)  # bands of a few rows, thinner than the radius
    assert np.array_equal(np.asarray(im.composite(orig, edited, mask, 6)), np.asarray(whole))
    assert np.array_equal(im.feather(mask, 6), alpha)


def test_composite_checks_the_mask_shape() -> None:
    with pytest.raises(ValueError):
        im.composite(gradient(), gradient(), np.zeros((3, 3), bool), 2)
    out = im.composite(gradient(), Image.new("RGB", (8, 8)), np.zeros((48, 64), bool), 2)
    assert np.array_equal(np.asarray(out), np.asarray(gradient()))


def test_composite_memory_is_bounded_by_the_box_not_the_photo() -> None:
    """A small mask on a big photo: no temporary the size of the photo beyond the output itself
    (numpy allocations are traced; PIL's are its own and sized by the mask's box)."""
    import tracemalloc

    orig = Image.new("RGB", (4000, 3000), (90, 120, 150))
    mask = np.zeros((3000, 4000), bool)
    mask[1000:1200, 1500:1800] = True
    edited = Image.new("RGB", (512, 384), (250, 20, 20))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = im.composite(orig, edited, mask, 6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    photo = 4000 * 3000 * 3
    assert peak < photo + 8 * im.BAND_PIXELS, peak  # the output copy plus band temporaries (uint8, uint16)
    assert np.asarray(out)[1100, 1650].tolist() == [250, 20, 20]


def test_region_at_full_is_the_mask_plus_the_work_region() -> None:
    mask = np.zeros((300, 400), bool)
    mask[100:150, 100:160] = True
    work = np.zeros((48, 64), bool)
    work[14:26, 14:28] = True  # ~ (87..175, 93..162) at full size
    full = im.region_at_full(mask, work)
    reference = mask | im.mask_from_work(work, (400, 300))
    assert full[mask].all() and full.sum() >= mask.sum()
    assert np.abs(full.astype(int) - reference).sum() <= 2 * (full != mask).any(axis=0).sum()  # edge rounding
    sliver = np.zeros((48, 64), bool)
    sliver[10, 10] = True
    assert (im.region_at_full(np.zeros((30, 40), bool), sliver)).any()  # shrinking keeps a 1 px region


def test_black_out() -> None:
    mask = np.zeros((48, 64), bool)
    mask[10:20, 10:30] = True
    out = np.asarray(im.black_out(gradient(), mask))
    assert (out[~mask] == 0).all()
    assert np.array_equal(out[mask], np.asarray(gradient())[mask])


# ----------------------------------------------------------------------------- boxes


def test_box_helpers() -> None:
    m = im.box_to_mask((10, 5, 30, 25), (64, 48))
    assert m.shape == (48, 64) and m.sum() == 20 * 20 and m[5, 10] and not m[25, 30]
    assert im.mask_bbox(m) == (10.0, 5.0, 30.0, 25.0)
    assert im.mask_bbox(np.zeros((4, 4), bool)) is None
    assert im.box_to_mask((-10, -10, 5, 5), (8, 8)).sum() == 25  # clamped
    assert im.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert im.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert im.iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert im.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert im.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_clip_mask_to_box() -> None:
    mask = np.ones((100, 100), bool)
    out = im.clip_mask_to_box(mask, (20, 20, 70, 60))  # grows by 5 px in x, 4 px in y
    assert im.mask_bbox(out) == (15.0, 16.0, 75.0, 64.0)
    out = im.clip_mask_to_box(mask, (0, 0, 50, 50))
    assert im.mask_bbox(out) == (0.0, 0.0, 55.0, 55.0)  # clamped at the image
    assert im.clip_mask_to_box(mask, (20, 20, 70, 60), grow=0).sum() == 50 * 40


def test_crop_box() -> None:
    img = gradient(100, 80)
    c = im.crop_box(img, (10, 10, 30, 40))
    assert c.size == (20, 30)
    assert np.array_equal(np.asarray(c), np.asarray(img)[10:40, 10:30])
    assert im.crop_box(img, (30, 30, 50, 50), pad=0.5).size == (40, 40)
    assert im.crop_box(img, (10, 10, 30, 40), pad=0.5).size == (40, 55)  # clamped at the top
    assert im.crop_box(img, (90, 70, 100, 80), pad=1.0).size == (20, 20)  # clamped
    assert im.crop_box(img, (5, 5, 5, 5)).size == (1, 1)  # never empty


def test_parse_box() -> None:
    assert im.parse_box("10,20,30,40") == (10.0, 20.0, 30.0, 40.0)
    assert im.parse_box(" (1.5, 2, 3.25, 4) ") == (1.5, 2.0, 3.25, 4.0)
    assert im.parse_box("[0 0 64 48]", (64, 48)) == (0.0, 0.0, 64.0, 48.0)
    for bad, word in [("1,2,3", "four numbers"), ("a,b,c,d", "four numbers"),
                      ("30,20,10,40", "greater"), ("10,40,30,40", "greater"),
                      ("0,0,65,10", "outside")]:
        with pytest.raises(ValueError) as info:
            im.parse_box(bad, (64, 48))
        assert isinstance(info.value, LocaleditError)
        assert word in str(info.value) and one_sentence(str(info.value)), str(info.value)


def test_load_mask(tmp_path: Path) -> None:
    m = np.zeros((20, 40), np.uint8)
    m[5:15, 10:20] = 255
    Image.fromarray(m, "L").save(tmp_path / "m.png")
    mask = im.load_mask(tmp_path / "m.png", (80, 40))
    assert mask.shape == (40, 80) and mask.dtype == bool
    assert mask.sum() == 4 * 10 * 10 and mask[20, 30] and not mask[0, 0]
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[0:4, 0:4] = (255, 255, 255)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=100)
    assert im.load_mask(tmp_path / "rgb.jpg", (40, 20))[1, 1]
    rgba = np.zeros((20, 40, 4), np.uint8)  # painted strokes on a transparent layer
    rgba[2:6, 2:6] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "strokes.png")
    sm = im.load_mask(tmp_path / "strokes.png", (40, 20))
    assert sm.sum() == 16 and sm[3, 3]


def test_load_mask_errors(tmp_path: Path) -> None:
    Image.new("L", (10, 10), 0).save(tmp_path / "black.png")
    with pytest.raises(ImageError) as info:
        im.load_mask(tmp_path / "black.png", (10, 10))
    assert "empty" in str(info.value) and one_sentence(str(info.value))
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(ImageError):
        im.load_mask(tmp_path / "bad.png", (10, 10))


# ----------------------------------------------------------------------------- pictures


def test_overlay_mask_and_boxes() -> None:
    img = Image.new("RGB", (400, 300), (90, 120, 140))
    mask = np.zeros((300, 400), bool)
    mask[50:150, 50:150] = True
    boxes = [(40, 40, 160, 160), (250, 60, 350, 200)]
    out = pictures.overlay(img, mask=mask, boxes=boxes, labels=["cat 0.91", "cat 0.40"], chosen=[0])
    assert out.size == img.size and out.mode == "RGB"
    o, r = np.asarray(img), np.asarray(out)
    inside = mask.copy()
    inside[:, :] = False
    inside[80:120, 80:120] = True  # deep inside the mask, away from labels and lines
    assert (np.abs(r[inside].astype(int) - o[inside]).sum(axis=1) > 0).all()
    assert np.array_equal(r[280, 20], o[280, 20])  # far from every box, outside the mask
    assert not np.array_equal(r[100, 40], o[100, 40])  # chosen box's left edge drawn
    assert not np.array_equal(r[130, 250], o[130, 250])  # other box's left edge drawn
    # the chosen box is drawn thicker than the other one
    chosen_w = int((np.abs(r[100, 30:60].astype(int) - o[100, 30:60]).sum(1) > 0).sum())
    other_w = int((np.abs(r[130, 240:270].astype(int) - o[130, 240:270]).sum(1) > 0).sum())
    assert chosen_w > other_w >= 1
    assert np.array_equal(np.asarray(img), o)  # the input is not modified


def test_overlay_numbered_badges() -> None:
    img = Image.new("RGB", (600, 400), (200, 200, 200))
    boxes = [(50, 50, 200, 200), (300, 100, 500, 350)]
    plain = np.asarray(pictures.overlay(img, boxes=boxes)).astype(int)
    numbered = np.asarray(pictures.overlay(img, boxes=boxes, numbered=True)).astype(int)
    assert numbered.shape == (400, 600, 3)
    for x0, y0, _, _ in boxes:
        near = (slice(y0 + 5, y0 + 40), slice(x0 + 5, x0 + 40))
        assert (np.abs(numbered[near] - plain[near]).sum(-1) > 0).sum() > 100
    assert np.array_equal(numbered[390, 10], [200, 200, 200])


def test_overlay_detections_and_tiny_image() -> None:
    img = Image.new("RGB", (32, 24), (0, 0, 0))
    dets = [Detection("cat", 0.87, (2, 2, 20, 20))]
    out = pictures.overlay(img, boxes=dets, numbered=True, mask=np.ones((24, 32), bool))
    assert out.size == (32, 24)
    big = Image.new("RGB", (3000, 2000))
    assert pictures.overlay(big, boxes=[(100, 100, 900, 900)], labels=["x 0.5"]).size == (3000, 2000)


def test_side_by_side() -> None:
    a = Image.new("RGB", (100, 80), (255, 0, 0))
    b = Image.new("RGB", (50, 40), (0, 0, 255))
    out = pictures.side_by_side(a, b)
    assert out.mode == "RGB" and out.height > 80 and out.width > 200
    arr = np.asarray(out)
    assert tuple(arr[-10, 10]) == (255, 0, 0) and tuple(arr[-10, -10]) == (0, 0, 255)
    plain = pictures.side_by_side(a, b, labels=("", ""))
    assert plain.height == 80
