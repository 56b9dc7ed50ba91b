#!/usr/bin/env python3
"""Makes the hostile/edge-case fixtures used by src/transform tests (see tests/fixtures/README.md).

Needs Pillow (pip install pillow). Deterministic: running it again gives the same files.
"""
import struct
import zlib
from pathlib import Path

from PIL import Image

FIX = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def exif_orientation_6_with_gps():
    # The upright picture is photo-480.jpg with a pure red 40x40 block in its top-left corner.
    upright = Image.open(FIX / "photo-480.jpg").convert("RGB")
    upright.paste((255, 0, 0), (0, 0, 40, 40))
    # Orientation 6 means "rotate 90° clockwise to display", so store it rotated 90° counter-clockwise.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "imgmirror-test-camera"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)  # Paris: a location that must never leak into output
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    stored.save(FIX / "exif-orientation-6-gps.jpg", quality=90, exif=exif.tobytes(),
                comment=b"secret comment")


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb():
    # 50000x50000 8-bit greyscale declared in IHDR; the IDAT holds the first rows only
    # (the whole 2.5 GB of zero rows would compress to ~2.4 MB, pointless for a header test).
    w = h = 50000
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (w + 1) * 4, 9)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    (FIX / "bomb-50000.png").write_bytes(data)


def jpeg_bomb():
    # A baseline JPEG header (SOI, DQT, SOF0 50000x50000 greyscale, DHT, SOS) + a few bytes + EOI.
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 50000, 50000, 1) + b"\x01\x11\x00"
    # DC table 0 with a single 1-bit code for category 0, AC table 0 with a single code for EOB.
    dht = (b"\xff\xc4" + struct.pack(">H", 2 + 17 + 1) + b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    dht += (b"\xff\xc4" + struct.pack(">H", 2 + 17 + 1) + b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x00\x3f\x00"
    data = b"\xff\xd8" + dqt + sof + dht + sos + b"\x00" * 64 + b"\xff\xd9"
    (FIX / "bomb-50000.jpg").write_bytes(data)


def truncated_jpeg():
    src = (FIX / "photo-1080.jpg").read_bytes()
    (FIX / "truncated-1080.jpg").write_bytes(src[: len(src) // 2])


if __name__ == "__main__":
    exif_orientation_6_with_gps()
    png_bomb()
    jpeg_bomb()
    truncated_jpeg()
    for name in ["exif-orientation-6-gps.jpg", "bomb-50000.png", "bomb-50000.jpg", "truncated-1080.jpg"]:
        p = FIX / name
        print(f"{name}: {p.stat().st_size} bytes")
