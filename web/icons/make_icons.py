"""Draw the edgewatch icons: PNGs with only zlib and struct (no PIL), and the SVG from one geometry.

A rounded square in the brand blue with a white pulse line. Edges are anti-aliased from signed
distances (a pixel's coverage is how far its centre lies inside the shape, in pixels).

    python3 web/icons/make_icons.py        # writes the files next to this script
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLUE = (0x1F, 0x4F, 0xC4)
WHITE = (0xFF, 0xFF, 0xFF)
# The pulse line in a unit square (x right, y down), its stroke half-width and the corner radius.
PULSE = [(0.16, 0.56), (0.34, 0.56), (0.43, 0.30), (0.54, 0.76), (0.63, 0.46), (0.69, 0.56), (0.84, 0.56)]
HALF_WIDTH = 0.042
CORNER = 0.22


def _segment_distance(px: float, py: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def _line_distance(px: float, py: float, points: list[tuple[float, float]]) -> float:
    return min(_segment_distance(px, py, points[i], points[i + 1]) for i in range(len(points) - 1))


def _rounded_square_sdf(px: float, py: float, inset: float, radius: float) -> float:
    """Signed distance to a rounded square filling [inset, 1 - inset]² (negative inside)."""
    half = 0.5 - inset
    qx = abs(px - 0.5) - (half - radius)
    qy = abs(py - 0.5) - (half - radius)
    outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
    return outside + min(max(qx, qy), 0.0) - radius


def _coverage(distance_inside: float, size: int) -> float:
    """0..1 from a distance (unit square) that is positive inside the shape."""
    return max(0.0, min(1.0, distance_inside * size + 0.5))


def draw(
    size: int, *, background: str, scale: float = 1.0, line_colour: tuple[int, int, int] = WHITE
) -> bytes:
    """RGBA rows of one icon. background: "rounded", "full" (maskable, iOS) or "none" (badge).

    ``scale`` shrinks the pulse towards the centre (maskable icons keep it in the safe zone).
    """
    pts = [(0.5 + (x - 0.5) * scale, 0.5 + (y - 0.5) * scale) for x, y in PULSE]
    half = HALF_WIDTH * scale
    lo_x = min(p[0] for p in pts) - half - 2 / size
    hi_x = max(p[0] for p in pts) + half + 2 / size
    lo_y = min(p[1] for p in pts) - half - 2 / size
    hi_y = max(p[1] for p in pts) + half + 2 / size
    rows = bytearray()
    for j in range(size):
        rows.append(0)  # filter: none
        py = (j + 0.5) / size
        for i in range(size):
            px = (i + 0.5) / size
            if background == "rounded":
                bg = _coverage(-_rounded_square_sdf(px, py, 0.0, CORNER), size)
            elif background == "full":
                bg = 1.0
            else:
                bg = 0.0
            line = 0.0
            if lo_x <= px <= hi_x and lo_y <= py <= hi_y:
                line = _coverage(half - _line_distance(px, py, pts), size)
            alpha = line + bg * (1.0 - line)
            if alpha <= 0.0:
                rows += b"\0\0\0\0"
                continue
            rgb = [round((line_colour[k] * line + BLUE[k] * bg * (1.0 - line)) / alpha) for k in range(3)]
            rows += bytes((*rgb, round(alpha * 255)))
    return bytes(rows)


def png(size: int, rgba_rows: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rgba_rows, 9)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def svg() -> str:
    def fmt(v: float) -> str:
        return f"{v * 512:g}"

    points = " ".join(f"{fmt(x)},{fmt(y)}" for x, y in PULSE)
    r = CORNER * 512
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512">\n'
        f'  <rect width="512" height="512" rx="{r:g}" fill="#{BLUE[0]:02x}{BLUE[1]:02x}{BLUE[2]:02x}"/>\n'
        f'  <polyline points="{points}" fill="none" stroke="#fff" stroke-width="{fmt(2 * HALF_WIDTH)}"'
        ' stroke-linecap="round" stroke-linejoin="round"/>\n'
        "</svg>\n"
    )


ICONS = (
    ("icon-192.png", 192, "rounded", 1.0),
    ("icon-512.png", 512, "rounded", 1.0),
    ("icon-maskable-512.png", 512, "full", 0.72),  # content inside the 80 % safe circle
    ("apple-touch-icon.png", 180, "full", 0.9),  # iOS rounds the corners itself
    ("badge-96.png", 96, "none", 1.25),  # monochrome: Android shows only its alpha
)


def main() -> None:
    for name, size, background, scale in ICONS:
        (HERE / name).write_bytes(png(size, draw(size, background=background, scale=scale)))
        print(f"wrote {name} ({size}x{size})")
    (HERE / "icon.svg").write_text(svg())
    print("wrote icon.svg")


if __name__ == "__main__":
    main()
