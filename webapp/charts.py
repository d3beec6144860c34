"""Charts drawn on the server as inline SVG: no JavaScript, no build step, nothing fetched, and allowed by
the page's CSP (presentation attributes, no style attributes). Every text is escaped; every bar
carries ``data-label`` / ``data-value`` so a test can read what was drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

INK = "#1d2330"
MUTED = "#667085"
GRID = "#e3e6eb"
ACCENT = "#3454d1"
PALETTE = ("#3454d1", "#1a7f4b", "#9a6700", "#6434b3", "#b42318", "#0e7490", "#667085")


def _fmt(n: int) -> str:
    return f"{n:,}"


def bars(items: Sequence[tuple[str, int]], *, label: str, width: int = 560, row: int = 26,
         label_width: int = 150) -> Markup:
    """Horizontal bars, one per (name, value), longest = full width."""
    if not items:
        return Markup("")
    top = max(v for _, v in items) or 1
    plot = width - label_width - 70
    height = row * len(items) + 8
    parts = [f'<svg class="chart bars" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        w = 0 if value <= 0 else max(2, round(plot * value / top))
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<g class="bar" data-label="{escape(name)}" data-value="{value}">'
            f'<text x="{label_width - 8}" y="{y + row / 2 + 4:.0f}" text-anchor="end" fill="{INK}" '
            f'font-size="13">{escape(name)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{w}" height="{row - 8}" rx="3" fill="{color}"/>'
            f'<text x="{label_width + w + 6}" y="{y + row / 2 + 4:.0f}" fill="{MUTED}" font-size="12">'
            f'{_fmt(value)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape(), the rest are numbers


def histogram(counts: Sequence[int], *, label: str, width: int = 560, height: int = 180,
              small: bool = False) -> Markup:
    """Vertical bars over [0, 1] in len(counts) equal buckets; the axis says 0, 0.5, 1."""
    n = len(counts)
    if n == 0:
        return Markup("")
    left, bottom, top_pad = (6, 18, 14) if small else (40, 24, 16)
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    peak = max(counts) or 1
    bw = plot_w / n
    font = 10 if small else 12
    parts = [f'<svg class="chart histogram{" small" if small else ""}" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    if not small:
        for frac in (0.5, 1.0):
            y = top_pad + plot_h * (1 - frac)
            parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                         f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}" font-size="{font}">'
                         f'{_fmt(round(peak * frac))}</text>')
    for i, value in enumerate(counts):
        h = 0 if value <= 0 else max(1.5, plot_h * value / peak)
        x = left + i * bw
        lo, hi = i / n, (i + 1) / n
        parts.append(f'<g class="bucket" data-label="{lo:.1f}-{hi:.1f}" data-value="{value}">'
                     f'<rect x="{x + 1:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                     f'fill="{ACCENT}"><title>{lo:.1f}–{hi:.1f}: {_fmt(value)}</title></rect></g>')
    base = top_pad + plot_h
    parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{base}" y2="{base}" stroke="{MUTED}"/>')
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        parts.append(f'<text x="{left + plot_w * frac:.1f}" y="{base + font + 3}" text-anchor="{anchor}" '
                     f'fill="{MUTED}" font-size="{font}">{frac:g}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape(), the rest are numbers


def heat_class(value: int, peak: int) -> str:
    """CSS class of a matrix cell by its share of the largest cell (6 steps; no inline style under the CSP)."""
    if value <= 0 or peak <= 0:
        return "heat-0"
    return f"heat-{min(5, 1 + int(5 * value / (peak + 1)))}"


def sparkline(items: Sequence[Mapping[str, Any]], *, x: str, y: str, label: str, width: int = 320,
              height: int = 70) -> Markup:
    """A line over the items' (``x`` time, ``y`` value in [0, 1]), oldest left; one dot per item."""
    pts = sorted((int(i[x]), float(i[y])) for i in items if i.get(x) is not None and i.get(y) is not None)
    if not pts:
        return Markup("")
    t0, t1 = pts[0][0], pts[-1][0]
    span = (t1 - t0) or 1
    pad = 6

    def xy(t: int, v: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * ((t - t0) / span if len(pts) > 1 else 0.5)
        y = pad + (height - 2 * pad) * (1 - min(1.0, max(0.0, v)))
        return x, y

    coords = [xy(t, v) for t, v in pts]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts = [f'<svg class="chart sparkline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>',
             f'<line x1="{pad}" x2="{width - pad}" y1="{height / 2}" y2="{height / 2}" stroke="{GRID}"/>',
             f'<polyline points="{line}" fill="none" stroke="{ACCENT}" stroke-width="2"/>']
    for (x, y), (_, v) in zip(coords, pts, strict=True):
        parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{ACCENT}" data-value="{v:.4f}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape(), the rest are numbers
