"""Point labels that do not collide: a greedy offset search with the renderer's text extents.

Each label is measured once (its box in display pixels), then tried at growing distances from
its point in 16 directions; the first spot inside the axes that overlaps no placed label and no
plotted point wins, joined to its point by a thin leader line when it sits away from it. If no
spot is free, the axes are zoomed out (more room around the same points) and the search runs
again. The boxes actually drawn are read back from the renderer, so `boxes` tells the truth a
test can check (`overlapping`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.text import Annotation

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels (y up)

_RADII = (4, 10, 18, 28, 40, 55, 72, 92, 115, 140, 170, 205)  # pixels from the point
_ANGLES = [k * math.pi / 8 for k in (1, 3, 5, 7, 0, 4, 2, 6, 9, 11, 13, 15, 8, 12, 10, 14)]
_GAP = 2.0  # pixels kept between two labels
_POINT = 7.0  # half-size of a point's marker box, pixels


@dataclass(frozen=True, slots=True)
class Label:
    text: str
    x: float  # data coordinates of the point it names
    y: float
    color: Any = "black"


def _overlap(a: Box, b: Box, gap: float = 0.0) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def overlapping(boxes: list[Box]) -> list[tuple[int, int]]:
    """The pairs of boxes that overlap (an empty list when every label is clear)."""
    return [
        (i, j)
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if _overlap(boxes[i], boxes[j])
    ]


def _inside(b: Box, frame: Box) -> bool:
    return frame[0] <= b[0] and b[2] <= frame[2] and frame[1] <= b[1] and b[3] <= frame[3]


def _spot(p: tuple[float, float], w: float, h: float, r: float, a: float) -> Box:
    """The box of a w×h label whose near side is `r` pixels from `p` in direction `a`."""
    dx, dy = math.cos(a), math.sin(a)
    cx = p[0] + dx * (r + w / 2)  # centre pushed out by half the box along the direction
    cy = p[1] + dy * (r + h / 2)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _search(
    points: list[tuple[float, float]],
    sizes: list[tuple[float, float]],
    frame: Box,
    others: list[tuple[float, float]],
    bars: list[Box],
) -> list[Box] | None:
    placed: list[Box] = []
    marks = [(x - _POINT, y - _POINT, x + _POINT, y + _POINT) for x, y in points + others]
    marks += bars
    # the most crowded points choose first, while room is left near them
    order = sorted(
        range(len(points)),
        key=lambda i: -sum(math.dist(points[i], q) < 60 for q in points),
    )
    chosen: dict[int, Box] = {}
    for i in order:
        w, h = sizes[i]
        for r in _RADII:
            hit = next(
                (
                    b
                    for a in _ANGLES
                    if _inside(b := _spot(points[i], w, h, r, a), frame)
                    and not any(_overlap(b, o, _GAP) for o in placed)
                    and not any(_overlap(b, m) for m in marks)
                ),
                None,
            )
            if hit is not None:
                break
        else:
            return None
        placed.append(hit)
        chosen[i] = hit
    return [chosen[i] for i in range(len(points))]


def place_labels(
    ax: Axes,
    labels: list[Label],
    fontsize: float = 8,
    extra_points: Sequence[tuple[float, float]] = (),
    error_bars: Sequence[tuple[float, float, float]] = (),
) -> list[Box]:
    """Draw every label clear of the others, of its points, of `extra_points` (unlabelled
    markers) and of `error_bars` (x, low, high); all in data coordinates. Return the drawn
    boxes (display pixels). The axes limits must be final, apart from the zoom this may
    apply."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = [
        ax.annotate(lab.text, (lab.x, lab.y), fontsize=fontsize, color=lab.color) for lab in labels
    ]
    extents = [t.get_window_extent(renderer) for t in texts]
    sizes = [(e.width, e.height) for e in extents]
    for _ in range(8):
        points = [_px(ax, lab.x, lab.y) for lab in labels]
        others = [_px(ax, x, y) for x, y in extra_points]
        bars = [_bar(ax, x, lo, hi) for x, lo, hi in error_bars]
        bb = ax.get_window_extent(renderer)
        boxes = _search(points, sizes, (bb.x0 + 2, bb.y0 + 2, bb.x1 - 2, bb.y1 - 2), others, bars)
        if boxes is not None:
            break
        _zoom_out(ax, 1.25)
    else:  # never seen; a plot with overlapping labels beats no report
        boxes = [_spot(p, w, h, 4, math.pi / 4) for p, (w, h) in zip(points, sizes, strict=True)]
    px_to_pt = 72.0 / fig.dpi
    for t, p, b in zip(texts, points, boxes, strict=True):
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        _anchor(t, (cx - p[0]) * px_to_pt, (cy - p[1]) * px_to_pt)
        if math.dist(p, (cx, cy)) > max(b[2] - b[0], b[3] - b[1]) / 2 + 12:
            ax.annotate(
                "",
                (p[0], p[1]),
                xycoords="figure pixels",
                xytext=(_nearest(b, p)),
                textcoords="figure pixels",
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6},
            )
    return [_extent(t, renderer) for t in texts]


def _px(ax: Axes, x: float, y: float) -> tuple[float, float]:
    px, py = ax.transData.transform((x, y))
    return float(px), float(py)


def _bar(ax: Axes, x: float, lo: float, hi: float) -> Box:
    """An error bar with its caps as a box in pixels."""
    (x0, y0), (_, y1) = _px(ax, x, lo), _px(ax, x, hi)
    return (x0 - 4, min(y0, y1) - 1, x0 + 4, max(y0, y1) + 1)


def _anchor(t: Annotation, dx_pt: float, dy_pt: float) -> None:
    t.set_position((dx_pt, dy_pt))
    t.set_anncoords("offset points")
    t.set_horizontalalignment("center")
    t.set_verticalalignment("center")


def _nearest(b: Box, p: tuple[float, float]) -> tuple[float, float]:
    """The point of box `b` nearest to `p` (where a leader line meets the label)."""
    return (min(max(p[0], b[0]), b[2]), min(max(p[1], b[1]), b[3]))


def _extent(t: Annotation, renderer: Any) -> Box:
    e = t.get_window_extent(renderer)
    return (float(e.x0), float(e.y0), float(e.x1), float(e.y1))


def _zoom_out(ax: Axes, factor: float) -> None:
    for get, set_ in ((ax.get_xlim, ax.set_xlim), (ax.get_ylim, ax.set_ylim)):
        lo, hi = get()
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * factor
        set_(mid - half, mid + half)
