"""The rows layout of the area graph: levels as rows, groups as column bands, positions pinned.

Rules (docs/spec.md, "Pictures"):

- **rows**: the inputs are the bottom row; the areas are binned into rows by level, lowest
  first: an area joins the current row when its level is within ``tolerance`` of the row's
  lowest level, else it starts the next row (integer levels: one row per level). With
  ``rows=N`` the range of area levels is cut into ``N`` equal bins instead (empty bins are
  dropped). Rows are evenly spaced (the same gap between the boxes of two rows), whatever
  their levels; each has a label on the left.
- **columns**: every group (``None``: areas without one) gets a column band, side by side in
  the order the groups first appear in the file; a band is as wide as the group's widest row,
  and a group's areas in a row are centred in its band, ordered by level, then file order.
  A group that no other group shares a row with, anywhere between its lowest and highest
  row (typically V1/V2 at the bottom, or a frontal area alone at the top), needs no band: its
  rows are centred on the picture, like the inputs.
- sizes: node boxes are sized from their labels here (a conservative estimate of the text
  width), so the positions leave room for ``--detail`` labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PT = 72.0               # points per inch
ROW_TOLERANCE = 0.25    # levels closer than this to a row's lowest level share the row
NODE_GAP = 0.7 * PT     # between two boxes in one band
BAND_GAP = 1.0 * PT     # between two bands
ROW_GAP = 0.85 * PT     # between the boxes of two rows
LOOP_ROOM = 0.3 * PT    # right of a box with a self-loop
MIN_W, MIN_H = 0.75 * PT, 0.5 * PT   # graphviz's default box size
MARGIN_X, MARGIN_Y = 0.11 * PT, 0.055 * PT

# advance widths (in em), about Helvetica's, widened 15% below for the fonts that stand in
# for it (DejaVu Sans is wider)
_WIDE = {**dict.fromkeys("mM", 0.86), **dict.fromkeys("wW", 0.95), **dict.fromkeys("ijlI|'", 0.26),
         **dict.fromkeys("frt", 0.36), **dict.fromkeys(" .,:;·()[]", 0.3), "×": 0.6, "…": 1.0}


def text_width(text: str, size: float) -> float:
    """A generous estimate of the width of ``text`` at ``size`` points, in points."""
    em = 0.0
    for ch in text:
        if ch in _WIDE:
            em += _WIDE[ch]
        elif ch.isupper():
            em += 0.72
        else:
            em += 0.58
    return em * size * 1.15


def box_size(lines: list[tuple[str, float]], *, min_w: float = MIN_W, min_h: float = MIN_H) -> tuple[float, float]:
    """(width, height) in points of a box with these (text, font size) lines."""
    w = max(text_width(t, s) for t, s in lines) + 2 * MARGIN_X + 4
    h = sum(1.2 * s for _, s in lines) + 2 * MARGIN_Y + 2
    return max(w, min_w), max(h, min_h)


@dataclass(frozen=True)
class Row:
    names: tuple[str, ...]
    lo: float
    hi: float

    def label(self, text) -> str:
        return text(self.lo) if self.lo == self.hi else f"{text(self.lo)}–{text(self.hi)}"


def level_rows(levels: dict[str, float], names: list[str], *, tolerance: float = ROW_TOLERANCE,
               rows: int | None = None) -> list[Row]:
    """``names`` (areas, in file order) binned into rows by level, bottom row first (see the
    module docstring)."""
    order = sorted(names, key=lambda n: (levels[n], names.index(n)))
    if not order:
        return []
    bins: list[list[str]] = []
    if rows is not None:
        if rows < 1:
            raise ValueError(f"rows must be at least 1, not {rows}")
        lo, hi = levels[order[0]], levels[order[-1]]
        span = hi - lo
        by_bin: dict[int, list[str]] = {}
        for n in order:
            k = 0 if span == 0 else min(rows - 1, math.floor((levels[n] - lo) / span * rows))
            by_bin.setdefault(k, []).append(n)
        bins = [by_bin[k] for k in sorted(by_bin)]
    else:
        for n in order:
            if bins and levels[n] - levels[bins[-1][0]] <= tolerance + 1e-9:
                bins[-1].append(n)
            else:
                bins.append([n])
    return [Row(tuple(b), levels[b[0]], levels[b[-1]]) for b in bins]


@dataclass
class Band:
    """A group's column band: x from ``x0`` to ``x1``, rows ``lo`` .. ``hi`` (indices into
    :attr:`RowsLayout.rows`, 0 = the inputs)."""
    x0: float
    x1: float
    lo: int
    hi: int
    centred: bool = False


@dataclass
class RowsLayout:
    """Node centres in points (y up), the rows (row 0: the inputs), their y, and the bands."""
    pos: dict[str, tuple[float, float]] = field(default_factory=dict)
    size: dict[str, tuple[float, float]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    row_y: list[float] = field(default_factory=list)
    row_h: list[float] = field(default_factory=list)
    bands: dict = field(default_factory=dict)       # group -> Band
    centre: float = 0.0
    loops: set = field(default_factory=set)

    def box(self, name: str) -> tuple[float, float, float, float]:
        (x, y), (w, h) = self.pos[name], self.size[name]
        return x - w / 2, y - h / 2, x + w / 2, y + h / 2

    def bbox(self) -> tuple[float, float, float, float]:
        """Around every box, and the self-loops right of them."""
        boxes = [self.box(n) for n in self.pos]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] + (LOOP_ROOM if n in self.loops else 0) for n, b in zip(self.pos, boxes)),
                max(b[3] for b in boxes))


def rows_layout(inputs: list[str], areas: list[str], levels: dict[str, float], group_of: dict[str, object],
                size: dict[str, tuple[float, float]], *, loops: set[str] = frozenset(),
                tolerance: float = ROW_TOLERANCE, rows: int | None = None) -> RowsLayout:
    """Place ``inputs`` (bottom row) and ``areas`` (rows by level, bands by ``group_of``);
    ``size``: (w, h) of every node in points; ``loops``: nodes with a self-loop (room is kept
    on their right)."""
    out = RowsLayout(size=dict(size), loops=set(loops))
    out.rows = [Row(tuple(inputs), 0.0, 0.0)] + level_rows(levels, areas, tolerance=tolerance, rows=rows)
    row_of = {n: r for r, row in enumerate(out.rows) for n in row.names}

    def width(name: str) -> float:
        return size[name][0] + (LOOP_ROOM if name in loops else 0.0)

    def span(names: list[str]) -> float:
        return sum(width(n) for n in names) + NODE_GAP * max(0, len(names) - 1)

    groups: list[object] = []
    for n in areas:
        if group_of[n] not in groups:
            groups.append(group_of[n])
    members = {g: [n for n in areas if group_of[n] == g] for g in groups}
    row_range = {g: (min(row_of[n] for n in m), max(row_of[n] for n in m)) for g, m in members.items()}
    centred = [g for g in groups
               if not any(group_of[n] != g and row_range[g][0] <= row_of[n] <= row_range[g][1] for n in areas)]

    # bands side by side, in order of first appearance
    x = 0.0
    for g in groups:
        if g in centred:
            continue
        w = max(span([n for n in out.rows[r].names if group_of[n] == g])
                for r in range(row_range[g][0], row_range[g][1] + 1))
        if out.bands:
            x += BAND_GAP
        out.bands[g] = Band(x, x + w, *row_range[g])
        x += w
    out.centre = x / 2

    def place(names: list[str], centre: float, y: float) -> None:
        # centred on the boxes: the room for a self-loop on the right does not shift them
        if not names:
            return
        left = centre - (span(names) - (width(names[-1]) - size[names[-1]][0])) / 2
        for n in names:
            out.pos[n] = (left + size[n][0] / 2, y)
            left += width(n) + NODE_GAP

    # rows bottom-up, evenly spaced by their tallest boxes
    y = 0.0
    for r, row in enumerate(out.rows):
        h = max((size[n][1] for n in row.names), default=MIN_H)
        if r > 0:
            y += out.row_h[-1] / 2 + ROW_GAP + h / 2
        out.row_y.append(y)
        out.row_h.append(h)
        if r == 0:
            place(list(row.names), out.centre, y)
            continue
        for g in groups:
            names = [n for n in row.names if group_of[n] == g]
            if not names:
                continue
            band = out.bands.get(g)
            place(names, out.centre if band is None else (band.x0 + band.x1) / 2, y)
    for g in groups:  # the bands as drawn: around the boxes and their self-loops
        boxes = [out.box(n) for n in members[g]]
        out.bands[g] = Band(min(b[0] for b in boxes), max(b[2] + width(n) - size[n][0] for n, b in zip(members[g], boxes)),
                            *row_range[g], centred=g in centred)
    return out
