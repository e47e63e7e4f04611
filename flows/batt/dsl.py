"""A pure-Python grid DSL for ARC.

Grids are immutable tuples of tuples of ints (colours 0-9). Every primitive is a
pure function; primitives that cannot apply to their input raise ``ValueError``.
Objects are tuples of ``(row, col, colour)`` cells sorted in scan order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain

Grid = tuple[tuple[int, ...], ...]
Cell = tuple[int, int, int]
Obj = tuple[Cell, ...]
Box = tuple[int, int, int, int]

MAX_SIDE = 30

_N4 = ((-1, 0), (1, 0), (0, -1), (0, 1))
_N8 = (*_N4, (-1, -1), (-1, 1), (1, -1), (1, 1))

# ---------------------------------------------------------------- construction


def make_grid(rows: Iterable[Iterable[int]]) -> Grid:
    """Build a grid from any nested iterable of ints (lists, numpy arrays...)."""
    return tuple(tuple(int(v) for v in row) for row in rows)


def to_lists(g: Grid) -> list[list[int]]:
    """Convert a grid to nested lists (JSON friendly)."""
    return [list(row) for row in g]


def check_size(h: int, w: int) -> None:
    """Raise ``ValueError`` unless ``1 <= h, w <= MAX_SIDE`` (the ARC limits)."""
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ValueError(f"size {h}x{w} outside ARC limits")


def canvas(h: int, w: int, c: int) -> Grid:
    """An ``h`` x ``w`` grid filled with colour ``c``."""
    check_size(h, w)
    row = (c,) * w
    return (row,) * h


def height(g: Grid) -> int:
    """Number of rows."""
    return len(g)


def width(g: Grid) -> int:
    """Number of columns."""
    return len(g[0]) if g else 0


def shape(g: Grid) -> tuple[int, int]:
    """``(height, width)``."""
    return (len(g), len(g[0]) if g else 0)


# -------------------------------------------------------------------- geometry


def rot90(g: Grid) -> Grid:
    """Rotate a quarter turn clockwise."""
    return tuple(zip(*g[::-1], strict=True))


def rot180(g: Grid) -> Grid:
    """Rotate a half turn."""
    return tuple(row[::-1] for row in g[::-1])


def rot270(g: Grid) -> Grid:
    """Rotate a quarter turn anticlockwise."""
    return tuple(zip(*g, strict=True))[::-1]


def flip_h(g: Grid) -> Grid:
    """Mirror left-right."""
    return tuple(row[::-1] for row in g)


def flip_v(g: Grid) -> Grid:
    """Mirror top-bottom."""
    return g[::-1]


def transpose(g: Grid) -> Grid:
    """Mirror along the main diagonal."""
    return tuple(zip(*g, strict=True))


def antitranspose(g: Grid) -> Grid:
    """Mirror along the anti-diagonal."""
    return tuple(zip(*g[::-1], strict=True))[::-1]


def shift(g: Grid, dr: int, dc: int, fill: int) -> Grid:
    """Move content by ``(dr, dc)``; cells left empty take colour ``fill``."""
    h, w = shape(g)
    blank = (fill,) * w
    rows = []
    for r in range(h):
        src = r - dr
        if not 0 <= src < h or abs(dc) >= w:
            rows.append(blank)
        elif dc >= 0:
            rows.append((fill,) * dc + g[src][: w - dc])
        else:
            rows.append(g[src][-dc:] + (fill,) * -dc)
    return tuple(rows)


def roll(g: Grid, dr: int, dc: int) -> Grid:
    """Cyclically move content by ``(dr, dc)``."""
    h, w = shape(g)
    dr, dc = dr % h, dc % w
    rows = g[h - dr :] + g[: h - dr]
    return tuple(row[w - dc :] + row[: w - dc] for row in rows)


# ---------------------------------------------------------------------- colour


def color_counts(g: Grid) -> tuple[int, ...]:
    """Number of cells of each colour 0-9."""
    counts = Counter(chain.from_iterable(g))
    return tuple(counts.get(c, 0) for c in range(10))


def palette(g: Grid) -> tuple[int, ...]:
    """Sorted colours present in the grid."""
    return tuple(sorted(set(chain.from_iterable(g))))


def most_common_color(g: Grid) -> int:
    """Most frequent colour (ties go to the smallest colour)."""
    counts = color_counts(g)
    return max(range(10), key=lambda c: (counts[c], -c))


def least_common_color(g: Grid) -> int:
    """Least frequent colour present (ties go to the smallest colour)."""
    counts = color_counts(g)
    return min((c for c in range(10) if counts[c]), key=lambda c: (counts[c], c))


def colors_by_count(g: Grid, bg: int) -> tuple[int, ...]:
    """Non-background colours, most frequent first (ties by colour)."""
    counts = color_counts(g)
    return tuple(
        sorted((c for c in range(10) if counts[c] and c != bg), key=lambda c: (-counts[c], c))
    )


def count_color(g: Grid, c: int) -> int:
    """Number of cells of colour ``c``."""
    return sum(row.count(c) for row in g)


def replace_color(g: Grid, a: int, b: int) -> Grid:
    """Recolour every ``a`` cell to ``b``."""
    return tuple(tuple(b if v == a else v for v in row) for row in g)


def swap_colors(g: Grid, a: int, b: int) -> Grid:
    """Exchange colours ``a`` and ``b``."""
    return tuple(tuple(b if v == a else a if v == b else v for v in row) for row in g)


def map_colors(g: Grid, lut: Sequence[int]) -> Grid:
    """Recolour through a 10-entry lookup table."""
    return tuple(tuple(lut[v] for v in row) for row in g)


def keep_color(g: Grid, c: int, bg: int) -> Grid:
    """Keep only colour ``c``; everything else becomes ``bg``."""
    return tuple(tuple(v if v == c else bg for v in row) for row in g)


def binarize(g: Grid, bg: int, c: int) -> Grid:
    """Recolour every non-background cell to ``c``."""
    return tuple(tuple(bg if v == bg else c for v in row) for row in g)


def fill_grid(g: Grid, c: int) -> Grid:
    """A grid of the same shape filled with ``c``."""
    return canvas(len(g), len(g[0]), c)


def recolor_minority(g: Grid, c: int) -> Grid:
    """Recolour every cell that is not of the most common colour to ``c``."""
    top = most_common_color(g)
    return tuple(tuple(v if v == top else c for v in row) for row in g)


def recolor_dominant(g: Grid, bg: int) -> Grid:
    """Recolour all foreground cells to the most common foreground colour."""
    order = colors_by_count(g, bg)
    if not order:
        raise ValueError("no foreground")
    return binarize(g, bg, order[0])


def invert_colors(g: Grid, bg: int) -> Grid:
    """Swap the background with the most common foreground colour."""
    order = colors_by_count(g, bg)
    if not order:
        raise ValueError("no foreground")
    return swap_colors(g, bg, order[0])


def color_mask(g: Grid, c: int) -> Grid:
    """A 0/1 grid marking the cells of colour ``c``."""
    return tuple(tuple(1 if v == c else 0 for v in row) for row in g)


def apply_mask(g: Grid, mask: Grid, c: int) -> Grid:
    """Paint colour ``c`` wherever ``mask`` is non-zero."""
    _same_shape(g, mask)
    return tuple(
        tuple(c if m else v for v, m in zip(row, mrow, strict=True))
        for row, mrow in zip(g, mask, strict=True)
    )


# ------------------------------------------------------------------- combining


def _same_shape(a: Grid, b: Grid) -> None:
    if shape(a) != shape(b):
        raise ValueError("grids differ in shape")


def overlay(a: Grid, b: Grid, bg: int) -> Grid:
    """Draw the non-background cells of ``b`` over ``a``."""
    _same_shape(a, b)
    return tuple(
        tuple(x if y == bg else y for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(a, b, strict=True)
    )


def cell_and(a: Grid, b: Grid, bg: int, c: int) -> Grid:
    """``c`` where both grids are foreground, else ``bg``."""
    _same_shape(a, b)
    return tuple(
        tuple(c if x != bg and y != bg else bg for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(a, b, strict=True)
    )


def cell_or(a: Grid, b: Grid, bg: int, c: int) -> Grid:
    """``c`` where either grid is foreground, else ``bg``."""
    _same_shape(a, b)
    return tuple(
        tuple(c if x != bg or y != bg else bg for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(a, b, strict=True)
    )


def cell_xor(a: Grid, b: Grid, bg: int, c: int) -> Grid:
    """``c`` where exactly one grid is foreground, else ``bg``."""
    _same_shape(a, b)
    return tuple(
        tuple(c if (x != bg) != (y != bg) else bg for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(a, b, strict=True)
    )


def cell_nor(a: Grid, b: Grid, bg: int, c: int) -> Grid:
    """``c`` where both grids are background, else ``bg``."""
    _same_shape(a, b)
    return tuple(
        tuple(c if x == bg and y == bg else bg for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(a, b, strict=True)
    )


def halves(g: Grid, vertical: bool) -> tuple[Grid, Grid]:
    """Split into two halves (top/bottom if ``vertical``), dropping an odd middle line."""
    if not vertical:
        left, right = halves(transpose(g), True)
        return transpose(left), transpose(right)
    h = len(g)
    if h < 2:
        raise ValueError("too small to halve")
    return g[: h // 2], g[(h + 1) // 2 :]


_COMBINERS = {"and": cell_and, "or": cell_or, "xor": cell_xor, "nor": cell_nor}


def combine_halves(g: Grid, vertical: bool, op: str, bg: int, c: int) -> Grid:
    """Combine the two halves cell-wise with ``op`` in {and, or, xor, nor}."""
    a, b = halves(g, vertical)
    return _COMBINERS[op](a, b, bg, c)


def overlay_halves(g: Grid, vertical: bool, bg: int) -> Grid:
    """Draw the second half over the first."""
    a, b = halves(g, vertical)
    return overlay(a, b, bg)


# ------------------------------------------------------------------------ size


def crop(g: Grid, r0: int, c0: int, h: int, w: int) -> Grid:
    """The ``h`` x ``w`` window whose top-left corner is ``(r0, c0)``."""
    gh, gw = shape(g)
    if r0 < 0 or c0 < 0 or h <= 0 or w <= 0 or r0 + h > gh or c0 + w > gw:
        raise ValueError("crop window outside grid")
    return tuple(row[c0 : c0 + w] for row in g[r0 : r0 + h])


def content_bbox(g: Grid, bg: int) -> Box:
    """Bounding box ``(r0, c0, r1, c1)`` (inclusive) of the non-background cells."""
    rows = [r for r, row in enumerate(g) if any(v != bg for v in row)]
    if not rows:
        raise ValueError("grid has no content")
    cols = [c for c, col in enumerate(zip(*g, strict=True)) if any(v != bg for v in col)]
    return rows[0], cols[0], rows[-1], cols[-1]


def crop_to_content(g: Grid, bg: int) -> Grid:
    """Crop to the bounding box of the non-background cells."""
    r0, c0, r1, c1 = content_bbox(g, bg)
    return tuple(row[c0 : c1 + 1] for row in g[r0 : r1 + 1])


def trim_border(g: Grid) -> Grid:
    """Remove the outermost ring of cells."""
    if len(g) < 3 or len(g[0]) < 3:
        raise ValueError("too small to trim")
    return tuple(row[1:-1] for row in g[1:-1])


def pad(g: Grid, n: int, c: int) -> Grid:
    """Surround with an ``n``-cell frame of colour ``c``."""
    check_size(len(g) + 2 * n, width(g) + 2 * n)
    w = len(g[0]) + 2 * n
    side = (c,) * n
    frame = ((c,) * w,) * n
    return frame + tuple(side + row + side for row in g) + frame


def upscale_hw(g: Grid, kh: int, kw: int) -> Grid:
    """Repeat every cell ``kh`` times vertically and ``kw`` times horizontally."""
    check_size(len(g) * kh, width(g) * kw)
    rows = (tuple(v for v in row for _ in range(kw)) for row in g)
    return tuple(row for row in rows for _ in range(kh))


def upscale(g: Grid, k: int) -> Grid:
    """Repeat every cell into a ``k`` x ``k`` block."""
    return upscale_hw(g, k, k)


def downscale(g: Grid, kh: int, kw: int) -> Grid:
    """Keep the top-left cell of every ``kh`` x ``kw`` block (sizes must divide)."""
    h, w = shape(g)
    if kh < 1 or kw < 1 or h % kh or w % kw:
        raise ValueError("scale factors must divide the grid")
    return tuple(row[::kw] for row in g[::kh])


def downscale_majority(g: Grid, kh: int, kw: int) -> Grid:
    """Most common colour of every ``kh`` x ``kw`` block (ties to the smallest colour)."""
    h, w = shape(g)
    if kh < 1 or kw < 1 or h % kh or w % kw:
        raise ValueError("scale factors must divide the grid")
    out = []
    for r in range(0, h, kh):
        band = g[r : r + kh]
        row = []
        for c in range(0, w, kw):
            counts = Counter(v for line in band for v in line[c : c + kw])
            row.append(max(counts, key=lambda v: (counts[v], -v)))
        out.append(tuple(row))
    return tuple(out)


def tile(g: Grid, nh: int, nw: int) -> Grid:
    """Repeat the grid ``nh`` times vertically and ``nw`` times horizontally."""
    check_size(len(g) * nh, width(g) * nw)
    return tuple(row * nw for row in g) * nh


def hconcat(a: Grid, b: Grid) -> Grid:
    """Place ``b`` to the right of ``a``."""
    if len(a) != len(b):
        raise ValueError("heights differ")
    return tuple(x + y for x, y in zip(a, b, strict=True))


def vconcat(a: Grid, b: Grid) -> Grid:
    """Place ``b`` below ``a``."""
    if width(a) != width(b):
        raise ValueError("widths differ")
    return a + b


def mirror_right(g: Grid) -> Grid:
    """The grid followed by its left-right mirror."""
    return hconcat(g, flip_h(g))


def mirror_left(g: Grid) -> Grid:
    """The left-right mirror followed by the grid."""
    return hconcat(flip_h(g), g)


def mirror_down(g: Grid) -> Grid:
    """The grid above its top-bottom mirror."""
    return g + g[::-1]


def mirror_up(g: Grid) -> Grid:
    """The top-bottom mirror above the grid."""
    return g[::-1] + g


def mirror_quad(g: Grid) -> Grid:
    """Four mirrored copies: the grid top-left, reflections around it."""
    return mirror_down(mirror_right(g))


def rotate_quad(g: Grid) -> Grid:
    """Four rotated copies: 0 and 90 degrees on top, 270 and 180 below (square grids)."""
    if len(g) != len(g[0]):
        raise ValueError("grid must be square")
    return vconcat(hconcat(g, rot90(g)), hconcat(rot270(g), rot180(g)))


def top_half(g: Grid) -> Grid:
    """Upper half (an odd middle row is dropped)."""
    return halves(g, True)[0]


def bottom_half(g: Grid) -> Grid:
    """Lower half (an odd middle row is dropped)."""
    return halves(g, True)[1]


def left_half(g: Grid) -> Grid:
    """Left half (an odd middle column is dropped)."""
    return halves(g, False)[0]


def right_half(g: Grid) -> Grid:
    """Right half (an odd middle column is dropped)."""
    return halves(g, False)[1]


def split_rows(g: Grid, n: int) -> tuple[Grid, ...]:
    """Split into ``n`` equal horizontal bands, skipping one-line separators if present."""
    h = len(g)
    if n >= 1 and h % n == 0:
        size, gap = h // n, 0
    elif n >= 2 and (h - n + 1) % n == 0 and h > 2 * n - 2:
        size, gap = (h - n + 1) // n, 1
    else:
        raise ValueError("grid does not split evenly")
    return tuple(g[i * (size + gap) : i * (size + gap) + size] for i in range(n))


def split_cols(g: Grid, n: int) -> tuple[Grid, ...]:
    """Split into ``n`` equal vertical bands, ignoring one-line separators."""
    return tuple(transpose(part) for part in split_rows(transpose(g), n))


def dedupe_rows(g: Grid) -> Grid:
    """Collapse runs of identical consecutive rows."""
    return tuple(row for i, row in enumerate(g) if i == 0 or row != g[i - 1])


def dedupe_cols(g: Grid) -> Grid:
    """Collapse runs of identical consecutive columns."""
    return transpose(dedupe_rows(transpose(g)))


def dedupe(g: Grid) -> Grid:
    """Collapse runs of identical consecutive rows, then columns."""
    return dedupe_cols(dedupe_rows(g))


def compress(g: Grid, bg: int) -> Grid:
    """Delete every row and column made only of background."""
    keep_r = [row for row in g if any(v != bg for v in row)]
    if not keep_r:
        raise ValueError("grid has no content")
    cols = [c for c, col in enumerate(zip(*keep_r, strict=True)) if any(v != bg for v in col)]
    return tuple(tuple(row[c] for c in cols) for row in keep_r)


def remove_uniform_lines(g: Grid) -> Grid:
    """Delete every row and column made of a single colour."""
    rows = [row for row in g if len(set(row)) > 1]
    if not rows:
        raise ValueError("every row is uniform")
    cols = [c for c, col in enumerate(zip(*rows, strict=True)) if len(set(col)) > 1]
    if not cols:
        raise ValueError("every column is uniform")
    return tuple(tuple(row[c] for c in cols) for row in rows)


def upscale_by_colors(g: Grid, bg: int) -> Grid:
    """Upscale by the number of distinct foreground colours."""
    return upscale(g, len(colors_by_count(g, bg)))


def fractal(g: Grid, bg: int) -> Grid:
    """Replace every foreground cell by a copy of the grid and every background cell by blank."""
    h, w = shape(g)
    check_size(h * h, w * w)
    blank = (bg,) * w
    return tuple(
        tuple(chain.from_iterable(sub if v != bg else blank for v in row)) for row in g for sub in g
    )


# --------------------------------------------------------------------- objects


@lru_cache(maxsize=256)
def _neighbours(h: int, w: int, diagonal: bool) -> tuple[tuple[int, ...], ...]:
    """Flat indices of the in-grid neighbours of every flat cell index."""
    nbrs = _N8 if diagonal else _N4
    return tuple(
        tuple((r + dr) * w + c + dc for dr, dc in nbrs if 0 <= r + dr < h and 0 <= c + dc < w)
        for r in range(h)
        for c in range(w)
    )


@lru_cache(maxsize=64)
def objects(g: Grid, bg: int, diagonal: bool = False, multicolor: bool = False) -> tuple[Obj, ...]:
    """Connected components of non-background cells, in scan order of their first cell.

    Results are memoised (grids are immutable), as many primitives share them.
    """
    h, w = shape(g)
    nbrs = _neighbours(h, w, diagonal)
    flat = [v for row in g for v in row]
    seen = bytearray(h * w)
    found = []
    for start, v in enumerate(flat):
        if v == bg or seen[start]:
            continue
        seen[start] = 1
        stack = [start]
        members = []
        while stack:
            i = stack.pop()
            members.append(i)
            for j in nbrs[i]:
                if not seen[j]:
                    u = flat[j]
                    if u == v or (multicolor and u != bg):
                        seen[j] = 1
                        stack.append(j)
        members.sort()
        found.append(tuple((i // w, i % w, flat[i]) for i in members))
    return tuple(found)


def obj_size(o: Obj) -> int:
    """Number of cells."""
    return len(o)


def obj_colors(o: Obj) -> tuple[int, ...]:
    """Sorted colours used by the object."""
    return tuple(sorted({v for _, _, v in o}))


def obj_color(o: Obj) -> int:
    """Most common colour of the object (ties to the smallest)."""
    counts = Counter(v for _, _, v in o)
    return max(counts, key=lambda v: (counts[v], -v))


def obj_bbox(o: Obj) -> Box:
    """Bounding box ``(r0, c0, r1, c1)``, inclusive."""
    rows = [r for r, _, _ in o]
    cols = [c for _, c, _ in o]
    return min(rows), min(cols), max(rows), max(cols)


def obj_shape(o: Obj) -> tuple[int, int]:
    """Height and width of the bounding box."""
    r0, c0, r1, c1 = obj_bbox(o)
    return r1 - r0 + 1, c1 - c0 + 1


def normalize_obj(o: Obj) -> Obj:
    """Translate so the bounding box starts at ``(0, 0)``."""
    r0, c0, _, _ = obj_bbox(o)
    return tuple((r - r0, c - c0, v) for r, c, v in o)


def shift_obj(o: Obj, dr: int, dc: int) -> Obj:
    """Translate by ``(dr, dc)``."""
    return tuple((r + dr, c + dc, v) for r, c, v in o)


def recolor_obj(o: Obj, c: int) -> Obj:
    """Give every cell colour ``c``."""
    return tuple((r, col, c) for r, col, _ in o)


def largest_object(objs: Sequence[Obj]) -> Obj:
    """The object with most cells (first one on ties)."""
    if not objs:
        raise ValueError("no objects")
    return max(objs, key=len)


def smallest_object(objs: Sequence[Obj]) -> Obj:
    """The object with fewest cells (first one on ties)."""
    if not objs:
        raise ValueError("no objects")
    return min(objs, key=len)


def paint(g: Grid, o: Obj) -> Grid:
    """Draw the object's cells onto the grid (cells outside are ignored)."""
    h, w = shape(g)
    rows = [list(row) for row in g]
    for r, c, v in o:
        if 0 <= r < h and 0 <= c < w:
            rows[r][c] = v
    return tuple(tuple(row) for row in rows)


def erase(g: Grid, o: Obj, bg: int) -> Grid:
    """Paint the object's cells with the background colour."""
    return paint(g, recolor_obj(o, bg))


def obj_to_grid(o: Obj, bg: int) -> Grid:
    """The object alone, cropped to its bounding box on a ``bg`` canvas."""
    hh, ww = obj_shape(o)
    return paint(canvas(hh, ww, bg), normalize_obj(o))


def obj_subgrid(g: Grid, o: Obj) -> Grid:
    """The part of the grid under the object's bounding box."""
    r0, c0, r1, c1 = obj_bbox(o)
    return tuple(row[c0 : c1 + 1] for row in g[r0 : r1 + 1])


def count_objects(g: Grid, bg: int, diagonal: bool = False) -> int:
    """Number of single-colour connected components."""
    return len(objects(g, bg, diagonal))


def keep_largest(g: Grid, bg: int, diagonal: bool) -> Grid:
    """Erase everything except the largest multicolour object."""
    return paint(fill_grid(g, bg), largest_object(objects(g, bg, diagonal, True)))


def keep_smallest(g: Grid, bg: int, diagonal: bool) -> Grid:
    """Erase everything except the smallest multicolour object."""
    return paint(fill_grid(g, bg), smallest_object(objects(g, bg, diagonal, True)))


def crop_largest(g: Grid, bg: int, diagonal: bool, multicolor: bool) -> Grid:
    """Crop to the bounding box of the largest object."""
    return obj_subgrid(g, largest_object(objects(g, bg, diagonal, multicolor)))


def crop_smallest(g: Grid, bg: int, diagonal: bool, multicolor: bool) -> Grid:
    """Crop to the bounding box of the smallest object."""
    return obj_subgrid(g, smallest_object(objects(g, bg, diagonal, multicolor)))


def crop_odd_object(g: Grid, bg: int, diagonal: bool) -> Grid:
    """Crop to the one multicolour object whose shape-and-colours pattern is unique."""
    objs = objects(g, bg, diagonal, True)
    keys = Counter(normalize_obj(o) for o in objs)
    odd = [o for o in objs if keys[normalize_obj(o)] == 1]
    if len(odd) != 1 or len(objs) < 3:
        raise ValueError("no unique object")
    return obj_subgrid(g, odd[0])


def remove_small_objects(g: Grid, bg: int, min_size: int, diagonal: bool) -> Grid:
    """Erase single-colour objects with fewer than ``min_size`` cells."""
    small = (recolor_obj(o, bg) for o in objects(g, bg, diagonal) if len(o) < min_size)
    return _paint_all(g, small)


def recolor_by_size(g: Grid, bg: int, table: Sequence[int], diagonal: bool) -> Grid:
    """Recolour single-colour objects through ``table[size]`` (-1 keeps the colour)."""
    n = len(table)
    return _paint_all(
        g,
        (
            recolor_obj(o, table[len(o)])
            for o in objects(g, bg, diagonal)
            if len(o) < n and table[len(o)] >= 0
        ),
    )


def recolor_largest(g: Grid, bg: int, c: int, diagonal: bool) -> Grid:
    """Recolour the largest single-colour object(s) to ``c``."""
    objs = objects(g, bg, diagonal)
    if not objs:
        raise ValueError("no objects")
    top = max(len(o) for o in objs)
    return _paint_all(g, (recolor_obj(o, c) for o in objs if len(o) == top))


def recolor_smallest(g: Grid, bg: int, c: int, diagonal: bool) -> Grid:
    """Recolour the smallest single-colour object(s) to ``c``."""
    objs = objects(g, bg, diagonal)
    if not objs:
        raise ValueError("no objects")
    low = min(len(o) for o in objs)
    return _paint_all(g, (recolor_obj(o, c) for o in objs if len(o) == low))


def _paint_all(g: Grid, objs: Iterable[Obj]) -> Grid:
    rows = [list(row) for row in g]
    for o in objs:
        for r, c, v in o:
            rows[r][c] = v
    return tuple(tuple(row) for row in rows)


def fill_bboxes(g: Grid, bg: int, c: int, diagonal: bool) -> Grid:
    """Fill background cells inside every multicolour object's bounding box with ``c``."""
    rows = [list(row) for row in g]
    for o in objects(g, bg, diagonal, True):
        r0, c0, r1, c1 = obj_bbox(o)
        for r in range(r0, r1 + 1):
            for k in range(c0, c1 + 1):
                if g[r][k] == bg:
                    rows[r][k] = c
    return tuple(tuple(row) for row in rows)


def hollow(g: Grid, bg: int) -> Grid:
    """Clear foreground cells whose four neighbours all share their colour."""
    h, w = shape(g)
    out = [list(row) for row in g]
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            v = g[r][c]
            if (
                v != bg
                and g[r - 1][c] == v
                and g[r + 1][c] == v
                and g[r][c - 1] == v
                and g[r][c + 1] == v
            ):
                out[r][c] = bg
    return tuple(tuple(row) for row in out)


def outline(g: Grid, bg: int, c: int, diagonal: bool) -> Grid:
    """Colour ``c`` every background cell touching a foreground cell."""
    h, w = shape(g)
    nbrs = _neighbours(h, w, diagonal)
    flat = [v for row in g for v in row]
    out = flat[:]
    for i, v in enumerate(flat):
        if v != bg:
            for j in nbrs[i]:
                if flat[j] == bg:
                    out[j] = c
    return _unflatten(out, w)


def _unflatten(flat: Sequence[int], w: int) -> Grid:
    return tuple(tuple(flat[i : i + w]) for i in range(0, len(flat), w))


# -------------------------------------------------------------- masks & fills


def flood_fill(g: Grid, r: int, c: int, colour: int) -> Grid:
    """Recolour the 4-connected same-colour region containing ``(r, c)``."""
    h, w = shape(g)
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError("seed outside grid")
    old = g[r][c]
    if old == colour:
        return g
    rows = [list(row) for row in g]
    rows[r][c] = colour
    stack = [(r, c)]
    while stack:
        i, j = stack.pop()
        for di, dj in _N4:
            y, x = i + di, j + dj
            if 0 <= y < h and 0 <= x < w and rows[y][x] == old:
                rows[y][x] = colour
                stack.append((y, x))
    return tuple(tuple(row) for row in rows)


def enclosed_mask(g: Grid, bg: int) -> Grid:
    """0/1 grid marking background cells not 4-connected to the border through background."""
    h, w = shape(g)
    nbrs = _neighbours(h, w, False)
    flat = [v for row in g for v in row]
    mask = [1 if v == bg else 0 for v in flat]
    border = [*range(w), *range((h - 1) * w, h * w), *range(0, h * w, w), *range(w - 1, h * w, w)]
    stack = [i for i in border if mask[i]]
    for i in stack:
        mask[i] = 0
    while stack:
        i = stack.pop()
        for j in nbrs[i]:
            if mask[j]:
                mask[j] = 0
                stack.append(j)
    return _unflatten(mask, w)


def fill_enclosed(g: Grid, bg: int, c: int) -> Grid:
    """Fill background areas enclosed by foreground with colour ``c``."""
    return apply_mask(g, enclosed_mask(g, bg), c)


def recolor_enclosing(g: Grid, bg: int, c: int) -> Grid:
    """Recolour to ``c`` every single-colour object that encloses background cells."""
    mask = enclosed_mask(g, bg)
    h, w = shape(g)
    hits = []
    for o in objects(g, bg, True):
        if any(
            0 <= r + dr < h and 0 <= k + dk < w and mask[r + dr][k + dk]
            for r, k, _ in o
            for dr, dk in _N4
        ):
            hits.append(recolor_obj(o, c))
    return _paint_all(g, hits)


# --------------------------------------------------------------------- gravity


def _fall(line: tuple[int, ...], bg: int) -> tuple[int, ...]:
    fg = tuple(v for v in line if v != bg)
    return (bg,) * (len(line) - len(fg)) + fg


def gravity_right(g: Grid, bg: int) -> Grid:
    """Slide foreground cells to the right edge, keeping their order."""
    return tuple(_fall(row, bg) for row in g)


def gravity_left(g: Grid, bg: int) -> Grid:
    """Slide foreground cells to the left edge, keeping their order."""
    return tuple(_fall(row[::-1], bg)[::-1] for row in g)


def gravity_down(g: Grid, bg: int) -> Grid:
    """Slide foreground cells to the bottom, keeping their order."""
    return transpose(gravity_right(transpose(g), bg))


def gravity_up(g: Grid, bg: int) -> Grid:
    """Slide foreground cells to the top, keeping their order."""
    return transpose(gravity_left(transpose(g), bg))


# -------------------------------------------------------------------- symmetry


def _fill_from(g: Grid, image: Grid, hole: int) -> Grid:
    return tuple(
        tuple(y if x == hole else x for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(g, image, strict=True)
    )


def symmetrize_h(g: Grid, hole: int) -> Grid:
    """Fill ``hole`` cells from their left-right mirror image."""
    return _fill_from(g, flip_h(g), hole)


def symmetrize_v(g: Grid, hole: int) -> Grid:
    """Fill ``hole`` cells from their top-bottom mirror image."""
    return _fill_from(g, flip_v(g), hole)


def symmetrize_diag(g: Grid, hole: int) -> Grid:
    """Fill ``hole`` cells from their transposed image (square grids)."""
    if len(g) != len(g[0]):
        raise ValueError("grid must be square")
    return _fill_from(g, transpose(g), hole)


def symmetrize_rot(g: Grid, hole: int) -> Grid:
    """Fill ``hole`` cells from their half-turn image."""
    return _fill_from(g, rot180(g), hole)


def symmetrize_all(g: Grid, hole: int) -> Grid:
    """Fill ``hole`` cells from the first non-hole image under the grid's symmetries."""
    images = [flip_h, flip_v, rot180]
    if len(g) == len(g[0]):
        images += [transpose, antitranspose, rot90, rot270]
    out = g
    for f in images:
        out = _fill_from(out, f(g), hole)
    return out


def is_symmetric_h(g: Grid) -> bool:
    """Whether the grid equals its left-right mirror."""
    return g == flip_h(g)


def is_symmetric_v(g: Grid) -> bool:
    """Whether the grid equals its top-bottom mirror."""
    return g == flip_v(g)


# -------------------------------------------------------------------- counting


def count_cells(g: Grid, bg: int) -> int:
    """Number of foreground cells."""
    return sum(len(row) - row.count(bg) for row in g)


def count_to_row(g: Grid, bg: int) -> Grid:
    """A 1-row grid, one cell of the dominant foreground colour per foreground cell."""
    order = colors_by_count(g, bg)
    if not order:
        raise ValueError("no foreground")
    return canvas(1, count_cells(g, bg), order[0])


def count_objects_to_row(g: Grid, bg: int) -> Grid:
    """A 1-row grid, one cell of the dominant foreground colour per object."""
    order = colors_by_count(g, bg)
    if not order:
        raise ValueError("no foreground")
    return canvas(1, count_objects(g, bg, True), order[0])


def color_column(g: Grid, bg: int) -> Grid:
    """A 1-column grid of the foreground colours, most frequent first."""
    order = colors_by_count(g, bg)
    if not order:
        raise ValueError("no foreground")
    return tuple((c,) for c in order)


def largest_color_canvas(g: Grid, bg: int, h: int, w: int) -> Grid:
    """An ``h`` x ``w`` grid of the colour of the largest single-colour object."""
    return canvas(h, w, obj_color(largest_object(objects(g, bg, True))))


# --------------------------------------------------------------------- drawing


def draw_line(g: Grid, r0: int, c0: int, r1: int, c1: int, colour: int) -> Grid:
    """Draw a horizontal, vertical or 45-degree segment between two cells, inclusive."""
    dr, dc = r1 - r0, c1 - c0
    if dr and dc and abs(dr) != abs(dc):
        raise ValueError("line must be straight or diagonal")
    n = max(abs(dr), abs(dc))
    sr, sc = (dr > 0) - (dr < 0), (dc > 0) - (dc < 0)
    return paint(g, tuple((r0 + i * sr, c0 + i * sc, colour) for i in range(n + 1)))


def draw_border(g: Grid, c: int) -> Grid:
    """Colour the outermost ring of cells."""
    h, w = shape(g)
    edge = (c,) * w
    if h == 1:
        return (edge,)
    middle = tuple((c, *row[1:-1], c) if w > 1 else (c,) for row in g[1:-1])
    return (edge, *middle, edge)


def _gaps(line: Sequence[int], bg: int) -> Iterable[tuple[int, int, int]]:
    """``(k, j, colour)`` for consecutive foreground cells k < j of one colour with a gap."""
    k, prev = -1, bg
    for j, v in enumerate(line):
        if v != bg:
            if v == prev and j > k + 1:
                yield k, j, v
            k, prev = j, v


def connect_pairs(g: Grid, bg: int, c: int) -> Grid:
    """Join same-coloured cells sharing a row or column by painting the background between.

    The line takes colour ``c``, or the pair's own colour when ``c`` is -1.
    """
    out = [list(row) for row in g]
    for r, row in enumerate(g):
        for k, j, v in _gaps(row, bg):
            out[r][k + 1 : j] = [v if c < 0 else c] * (j - k - 1)
    for col, line in enumerate(zip(*g, strict=True)):
        for k, j, v in _gaps(line, bg):
            for m in range(k + 1, j):
                out[m][col] = v if c < 0 else c
    return tuple(tuple(row) for row in out)


def extend_rays(g: Grid, bg: int, dr: int, dc: int) -> Grid:
    """From every foreground cell extend a ray of its colour in ``(dr, dc)`` over background."""
    h, w = shape(g)
    out = [list(row) for row in g]
    for r in range(h):
        for c in range(w):
            v = g[r][c]
            if v == bg:
                continue
            y, x = r + dr, c + dc
            while 0 <= y < h and 0 <= x < w and g[y][x] == bg:
                out[y][x] = v
                y, x = y + dr, x + dc
    return tuple(tuple(row) for row in out)


def extend_diagonals(g: Grid, bg: int) -> Grid:
    """Extend rays in all four diagonal directions from every foreground cell."""
    out = g
    for dr, dc in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        out = overlay(out, extend_rays(g, bg, dr, dc), bg)
    return out


def extend_rows(g: Grid, bg: int) -> Grid:
    """Fill the background of each row holding a single foreground colour with that colour."""
    out = []
    for row in g:
        colours = {v for v in row if v != bg}
        if len(colours) == 1:
            fg = colours.pop()
            out.append(tuple(fg if v == bg else v for v in row))
        else:
            out.append(row)
    return tuple(out)


def extend_cols(g: Grid, bg: int) -> Grid:
    """Fill each column's background with the colour of its single foreground colour."""
    return transpose(extend_rows(transpose(g), bg))
