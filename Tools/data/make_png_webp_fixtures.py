"""Writes the PNG and WebP fixtures of Tests/USIDataTests/PNGWebPTests.swift and what a
reference decoder makes of them.

Run with the reference venv: ~/ref/bin/python Tools/data/make_png_webp_fixtures.py
Needs Pillow (with WebP) and dwebp (Debian package `webp`). Writes, into
Tests/USIDataTests/Fixtures/formats/, for each fixture NAME.png / NAME.webp:
  NAME.rgb.bin  Image.open(f).convert("RGB") as packed bytes (what torchvision's loader sees)
  NAME.l.bin    Image.open(f).convert("L")
For WebP the RGB bytes are also checked against `dwebp -nodither -ppm` (and the alpha
fixture against `dwebp -pam` with its alpha dropped), so a Pillow quirk cannot become the
reference unnoticed. 16-bit and interlaced PNGs are written here by hand (Pillow cannot
write 16-bit RGB or Adam7), with zlib.

What Pillow 13.0 was found to do (and PNGDecoder reproduces): convert("RGB") / ("L") drop
alpha without compositing (RGBA, LA, P+tRNS); 16-bit RGB/RGBA keep the high byte of each
sample; 16-bit grey opens as mode I;16 and its conversion to L or RGB clips to 255 (it does
not scale), so grey16.png's expected bytes are min(v, 255); RGB -> L is
(R*19595 + G*38470 + B*7471 + 0x8000) >> 16 (ITU-R 601-2), the formula of usi_image_rgb_to_gray.
"""
import os, struct, subprocess, sys, tempfile, zlib
import numpy as np
from PIL import Image

SRC = "/usr/share/darknet/data/dog.jpg"
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "USIDataTests", "Fixtures", "formats")
W, H = 48, 32


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, array, color_type, bit_depth, interlace=False):
    """array: uint8 or uint16 [H, W, C]; filter 0 on every row."""
    h, w = array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    a = array.astype(dtype)

    def rows(img):
        return b"".join(b"\x00" + img[y].tobytes() for y in range(img.shape[0]))

    if interlace:
        raw = b""
        for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += rows(sub)
    else:
        raw = rows(a)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    os.makedirs(OUT, exist_ok=True)
    photo = Image.open(SRC).convert("RGB")
    # a centred crop with the dog in it, downscaled: real photographic content, tiny file
    pw, ph = photo.size
    base = photo.crop((pw // 8, ph // 3, pw // 8 + 360, ph // 3 + 240)).resize((W, H), Image.Resampling.LANCZOS)
    rgb = np.asarray(base)
    grey = np.asarray(base.convert("L"))
    yy, xx = np.mgrid[0:H, 0:W]
    alpha = ((xx * 255) // (W - 1)).astype(np.uint8)  # a ramp, 0 (transparent) to 255
    alpha[:4, :] = 0
    # 16-bit: the 8-bit photo spread to 16 bits with varied low bytes (so that a decoder that
    # rounds instead of truncating, or reads the wrong byte, differs)
    rgb16 = np.clip(rgb.astype(np.int32) * 257 + ((xx + yy)[..., None] * 37 % 256) - 128, 0, 65535).astype(np.uint16)
    grey16 = np.clip(grey.astype(np.int32) * 257 + ((xx * 3 + yy) * 53 % 256) - 128, 0, 65535).astype(np.uint16)
    # 16-bit grey with small values too: Pillow clips I;16 to 255 when converting
    grey16[:, : W // 4] = (grey[:, : W // 4].astype(np.uint16)) // 2 + ((yy[:, : W // 4] * 7) % 300).astype(np.uint16)

    files = {}
    p = lambda n: os.path.join(OUT, n)
    base.save(p("rgb8.png")); files["rgb8.png"] = "RGB"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(p("rgba8.png")); files["rgba8.png"] = "RGBA"
    Image.fromarray(grey, "L").save(p("grey8.png")); files["grey8.png"] = "L"
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(p("greyalpha8.png")); files["greyalpha8.png"] = "LA"
    pal = base.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    trns = bytes((i * 4) % 256 for i in range(64))
    pal.save(p("palette_trns.png"), transparency=trns); files["palette_trns.png"] = "P+tRNS"
    write_png(p("rgb16.png"), rgb16, 2, 16); files["rgb16.png"] = "RGB 16-bit"
    write_png(p("grey16.png"), grey16[..., None], 0, 16); files["grey16.png"] = "L 16-bit"
    write_png(p("rgba16.png"), np.dstack([rgb16, alpha.astype(np.uint16) * 257]), 6, 16); files["rgba16.png"] = "RGBA 16-bit"
    write_png(p("rgb8_adam7.png"), rgb, 2, 8, interlace=True); files["rgb8_adam7.png"] = "RGB Adam7"
    write_png(p("grey16_adam7.png"), grey16[..., None], 0, 16, interlace=True); files["grey16_adam7.png"] = "L 16-bit Adam7"

    with tempfile.TemporaryDirectory() as tmp:
        src_rgb, src_rgba = os.path.join(tmp, "rgb.png"), os.path.join(tmp, "rgba.png")
        base.save(src_rgb)
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(src_rgba)
        subprocess.run(["cwebp", "-quiet", "-q", "80", src_rgb, "-o", p("lossy.webp")], check=True)
        subprocess.run(["cwebp", "-quiet", "-lossless", src_rgb, "-o", p("lossless.webp")], check=True)
        subprocess.run(["cwebp", "-quiet", "-q", "80", "-exact", src_rgba, "-o", p("lossy_alpha.webp")], check=True)
        subprocess.run(["cwebp", "-quiet", "-lossless", "-exact", src_rgba, "-o", p("lossless_alpha.webp")], check=True)
        files.update({"lossy.webp": "WebP lossy", "lossless.webp": "WebP lossless",
                      "lossy_alpha.webp": "WebP lossy + alpha", "lossless_alpha.webp": "WebP lossless + alpha"})

        for name, kind in files.items():
            im = Image.open(p(name))
            as_rgb, as_l = im.convert("RGB"), im.convert("L")
            assert as_rgb.size == (W, H)
            stem = name.rsplit(".", 1)[0] + ("" if name.endswith(".png") else "_webp")
            open(p(stem + ".rgb.bin"), "wb").write(as_rgb.tobytes())
            open(p(stem + ".l.bin"), "wb").write(as_l.tobytes())
            if name.endswith(".webp"):
                ppm = os.path.join(tmp, "out.ppm")
                subprocess.run(["dwebp", "-quiet", "-nodither", p(name), "-ppm", "-o", ppm], check=True)
                ref = Image.open(ppm).tobytes()
                assert ref == as_rgb.tobytes(), f"{name}: Pillow and dwebp -ppm differ"
                if "alpha" in name:
                    pam = os.path.join(tmp, "out.pam")
                    subprocess.run(["dwebp", "-quiet", "-nodither", p(name), "-pam", "-o", pam], check=True)
                    data = open(pam, "rb").read()
                    header, pixels = data.split(b"ENDHDR\n", 1)
                    assert b"TUPLTYPE RGB_ALPHA" in header and len(pixels) == W * H * 4, f"{name}: unexpected PAM"
                    rgba = np.frombuffer(pixels, np.uint8).reshape(H, W, 4)
                    assert rgba[..., :3].tobytes() == as_rgb.tobytes(), f"{name}: dwebp -pam differs"
                    assert rgba[..., 3].min() == 0, f"{name}: alpha lost"
            print(f"{name:22s} {kind:22s} Pillow mode {im.mode:5s} {os.path.getsize(p(name)):6d} bytes")


if __name__ == "__main__":
    main()
