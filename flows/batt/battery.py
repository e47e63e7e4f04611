"""The battery of candidate programs: DSL compositions with parameters inferred from demos.

A *step* is a plain tuple ``(name, *args)`` naming a grid-to-grid primitive in
:data:`STEPS`; a *program* is a tuple of steps applied left to right. Both are
hashable, picklable and deterministic. :func:`build_battery` turns demo pairs
into an ordered tuple of programs; :class:`Evaluator` runs programs on grids
with memoised intermediate results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from flows.batt import dsl
from flows.batt.dsl import Grid

Step = tuple[Any, ...]
Program = tuple[Step, ...]
Pair = tuple[Grid, Grid]

Shape = tuple[int, int]
ShapeRule = Callable[..., Shape] | None
"""Predicts a step's output shape from ``(height, width, *args)``; None when unknown."""


def SAME(h: int, w: int, *_: object) -> Shape:
    """Shape rule: unchanged."""
    return h, w


def SWAP(h: int, w: int, *_: object) -> Shape:
    """Shape rule: transposed."""
    return w, h


ANY: ShapeRule = None


def _halved(h: int, w: int, vertical: bool, *_: object) -> Shape:
    return (h // 2, w) if vertical else (h, w // 2)


def _scaled(kh: int, kw: int) -> Callable[..., Shape]:
    return lambda h, w, *_: (h * kh, w * kw)


@dataclass(frozen=True)
class Prim:
    """A battery primitive: a grid-to-grid function and its shape rule."""

    fn: Callable[..., Grid]
    shape: ShapeRule
    geometric: bool = False
    repeatable: bool = False
    heavy: bool = False
    cheap: bool = False


STEPS: dict[str, Prim] = {
    # geometry
    "rot90": Prim(dsl.rot90, SWAP, geometric=True, cheap=True),
    "rot180": Prim(dsl.rot180, SAME, geometric=True, cheap=True),
    "rot270": Prim(dsl.rot270, SWAP, geometric=True, cheap=True),
    "flip_h": Prim(dsl.flip_h, SAME, geometric=True, cheap=True),
    "flip_v": Prim(dsl.flip_v, SAME, geometric=True, cheap=True),
    "transpose": Prim(dsl.transpose, SWAP, geometric=True, cheap=True),
    "antitranspose": Prim(dsl.antitranspose, SWAP, geometric=True, cheap=True),
    "shift": Prim(dsl.shift, SAME, repeatable=True),
    # size
    "crop_to_content": Prim(dsl.crop_to_content, ANY, cheap=True),
    "trim_border": Prim(dsl.trim_border, lambda h, w: (h - 2, w - 2), repeatable=True, cheap=True),
    "compress": Prim(dsl.compress, ANY, cheap=True),
    "remove_uniform_lines": Prim(dsl.remove_uniform_lines, ANY),
    "dedupe": Prim(dsl.dedupe, ANY, cheap=True),
    "top_half": Prim(dsl.top_half, lambda h, w: (h // 2, w), repeatable=True, cheap=True),
    "bottom_half": Prim(dsl.bottom_half, lambda h, w: (h // 2, w), repeatable=True, cheap=True),
    "left_half": Prim(dsl.left_half, lambda h, w: (h, w // 2), repeatable=True, cheap=True),
    "right_half": Prim(dsl.right_half, lambda h, w: (h, w // 2), repeatable=True, cheap=True),
    "mirror_right": Prim(dsl.mirror_right, _scaled(1, 2), repeatable=True),
    "mirror_left": Prim(dsl.mirror_left, _scaled(1, 2), repeatable=True),
    "mirror_down": Prim(dsl.mirror_down, _scaled(2, 1), repeatable=True),
    "mirror_up": Prim(dsl.mirror_up, _scaled(2, 1), repeatable=True),
    "mirror_quad": Prim(dsl.mirror_quad, _scaled(2, 2)),
    "rotate_quad": Prim(dsl.rotate_quad, _scaled(2, 2)),
    "upscale_hw": Prim(dsl.upscale_hw, lambda h, w, kh, kw: (h * kh, w * kw), repeatable=True),
    "downscale": Prim(dsl.downscale, lambda h, w, kh, kw: (h // kh, w // kw), repeatable=True),
    "downscale_majority": Prim(
        dsl.downscale_majority, lambda h, w, kh, kw: (h // kh, w // kw), repeatable=True
    ),
    "tile": Prim(dsl.tile, lambda h, w, nh, nw: (h * nh, w * nw), repeatable=True),
    "upscale_by_colors": Prim(dsl.upscale_by_colors, ANY),
    "fractal": Prim(dsl.fractal, lambda h, w, _: (h * h, w * w)),
    # colour
    "map_colors": Prim(dsl.map_colors, SAME),
    "replace_color": Prim(dsl.replace_color, SAME),
    "keep_color": Prim(dsl.keep_color, SAME),
    "binarize": Prim(dsl.binarize, SAME),
    "recolor_minority": Prim(dsl.recolor_minority, SAME),
    "recolor_dominant": Prim(dsl.recolor_dominant, SAME),
    "invert_colors": Prim(dsl.invert_colors, SAME),
    # halves combined
    "combine_halves": Prim(dsl.combine_halves, _halved),
    "overlay_halves": Prim(dsl.overlay_halves, _halved),
    # objects
    "keep_largest": Prim(dsl.keep_largest, SAME, heavy=True),
    "keep_smallest": Prim(dsl.keep_smallest, SAME, heavy=True),
    "crop_largest": Prim(dsl.crop_largest, ANY, heavy=True),
    "crop_smallest": Prim(dsl.crop_smallest, ANY, heavy=True),
    "crop_odd_object": Prim(dsl.crop_odd_object, ANY, heavy=True),
    "remove_small_objects": Prim(dsl.remove_small_objects, SAME, heavy=True),
    "recolor_by_size": Prim(dsl.recolor_by_size, SAME, heavy=True),
    "recolor_largest": Prim(dsl.recolor_largest, SAME, heavy=True),
    "recolor_smallest": Prim(dsl.recolor_smallest, SAME, heavy=True),
    "recolor_enclosing": Prim(dsl.recolor_enclosing, SAME, heavy=True),
    "fill_bboxes": Prim(dsl.fill_bboxes, SAME, heavy=True),
    "hollow": Prim(dsl.hollow, SAME),
    "outline": Prim(dsl.outline, SAME, heavy=True),
    "fill_enclosed": Prim(dsl.fill_enclosed, SAME, heavy=True),
    # gravity
    "gravity_down": Prim(dsl.gravity_down, SAME),
    "gravity_up": Prim(dsl.gravity_up, SAME),
    "gravity_left": Prim(dsl.gravity_left, SAME),
    "gravity_right": Prim(dsl.gravity_right, SAME),
    # symmetry
    "symmetrize_h": Prim(dsl.symmetrize_h, SAME),
    "symmetrize_v": Prim(dsl.symmetrize_v, SAME),
    "symmetrize_diag": Prim(dsl.symmetrize_diag, SAME),
    "symmetrize_rot": Prim(dsl.symmetrize_rot, SAME),
    "symmetrize_all": Prim(dsl.symmetrize_all, SAME, heavy=True),
    # counting
    "count_to_row": Prim(dsl.count_to_row, ANY),
    "count_objects_to_row": Prim(dsl.count_objects_to_row, ANY, heavy=True),
    "color_column": Prim(dsl.color_column, ANY),
    "largest_color_canvas": Prim(
        dsl.largest_color_canvas, lambda h, w, bg, oh, ow: (oh, ow), heavy=True
    ),
    # drawing
    "draw_border": Prim(dsl.draw_border, SAME),
    "connect_pairs": Prim(dsl.connect_pairs, SAME, heavy=True),
    "extend_rays": Prim(dsl.extend_rays, SAME, heavy=True),
    "extend_diagonals": Prim(dsl.extend_diagonals, SAME, heavy=True),
    "extend_rows": Prim(dsl.extend_rows, SAME),
    "extend_cols": Prim(dsl.extend_cols, SAME),
}


SHAPE_RULES: dict[str, ShapeRule] = {name: prim.shape for name, prim in STEPS.items()}


def apply_step(step: Step, g: Grid) -> Grid | None:
    """Apply one step; ``None`` when it does not apply or leaves the ARC size limits."""
    try:
        out = STEPS[step[0]].fn(g, *step[1:])
    except ValueError:
        return None
    if not out or len(out) > dsl.MAX_SIDE or not out[0] or len(out[0]) > dsl.MAX_SIDE:
        return None
    return out


def run_program(program: Program, g: Grid) -> Grid | None:
    """Apply the program's steps in order; ``None`` as soon as one fails."""
    out = g
    for step in program:
        res = apply_step(step, out)
        if res is None:
            return None
        out = res
    return out


def step_name(step: Step) -> str:
    """Readable form, e.g. ``replace_color(1,2)``."""
    if len(step) == 1:
        return str(step[0])
    args = ",".join(_fmt(a) for a in step[1:])
    return f"{step[0]}({args})"


def _fmt(a: object) -> str:
    if isinstance(a, bool):
        return "T" if a else "F"
    if isinstance(a, tuple):
        return "".join("." if v < 0 else str(v) for v in a)
    return str(a)


def program_name(program: Program) -> str:
    """Readable form, steps joined by ``|`` in application order."""
    return "|".join(step_name(s) for s in program)


# ------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class TaskParams:
    """Parameters inferred from the demo pairs of a task."""

    bg: int
    in_colors: tuple[int, ...]
    out_colors: tuple[int, ...]
    paints: tuple[int, ...]
    holes: tuple[int, ...]
    cmap: tuple[int, ...] | None
    scale: tuple[int, int] | None
    down: tuple[int, int] | None
    out_shape: tuple[int, int] | None
    size_tables: tuple[tuple[bool, tuple[int, ...]], ...]


def _ratio(pairs: Sequence[Pair], up: bool) -> tuple[int, int] | None:
    ratios = set()
    for x, y in pairs:
        (a, b), (c, d) = dsl.shape(x), dsl.shape(y)
        if up:
            a, b, c, d = c, d, a, b
        if a % c or b % d:
            return None
        ratios.add((a // c, b // d))
    if len(ratios) != 1:
        return None
    ratio = ratios.pop()
    return None if ratio == (1, 1) else ratio


def learn_cmap(pairs: Sequence[Pair]) -> tuple[int, ...] | None:
    """A colour lookup table mapping every input onto its output cell by cell, if one exists."""
    lut = list(range(10))
    fixed = [False] * 10
    for x, y in pairs:
        if dsl.shape(x) != dsl.shape(y):
            return None
        for row_x, row_y in zip(x, y, strict=True):
            for a, b in zip(row_x, row_y, strict=True):
                if fixed[a]:
                    if lut[a] != b:
                        return None
                else:
                    fixed[a], lut[a] = True, b
    return tuple(lut)


def _size_table(pairs: Sequence[Pair], bg: int, diagonal: bool) -> tuple[int, ...] | None:
    table: dict[int, int] = {}
    for x, y in pairs:
        if dsl.shape(x) != dsl.shape(y):
            return None
        for o in dsl.objects(x, bg, diagonal):
            colours = {y[r][c] for r, c, _ in o}
            if len(colours) != 1:
                return None
            c = colours.pop()
            if table.setdefault(len(o), c) != c:
                return None
    if not table or all(c == bg for c in table.values()):
        return None
    return tuple(table.get(n, -1) for n in range(max(table) + 1))


def infer_params(pairs: Sequence[Pair]) -> TaskParams:
    """Infer background, palettes, colour map, scale factors... from the demo pairs."""
    counts = [0] * 10
    for x, _ in pairs:
        for c, n in enumerate(dsl.color_counts(x)):
            counts[c] += n
    bg = max(range(10), key=lambda c: (counts[c], -c))
    ins = sorted(set(chain.from_iterable(chain.from_iterable(x for x, _ in pairs))))
    outs = sorted(set(chain.from_iterable(chain.from_iterable(y for _, y in pairs))))
    new = [c for c in outs if c not in ins]
    paints = tuple(new or [c for c in outs if c != bg])[:3]
    holes = (bg, *(c for c in ins if c not in outs and c != bg))
    cmap = learn_cmap(pairs)
    if cmap == tuple(range(10)):
        cmap = None
    shapes = {dsl.shape(y) for _, y in pairs}
    tables: list[tuple[bool, tuple[int, ...]]] = []
    for diagonal in (False, True):
        table = _size_table(pairs, bg, diagonal)
        if table is not None and all(t != table for _, t in tables):
            tables.append((diagonal, table))
    return TaskParams(
        bg=bg,
        in_colors=tuple(ins),
        out_colors=tuple(outs),
        paints=paints,
        holes=holes[:3],
        cmap=cmap,
        scale=_ratio(pairs, up=True),
        down=_ratio(pairs, up=False),
        out_shape=shapes.pop() if len(shapes) == 1 else None,
        size_tables=tuple(tables),
    )


# --------------------------------------------------------------------- battery


def depth1_steps(p: TaskParams) -> list[Step]:
    """All single steps for a task, cheap and likely ones first."""
    bg = p.bg
    steps: list[Step] = [
        ("rot90",),
        ("rot180",),
        ("rot270",),
        ("flip_h",),
        ("flip_v",),
        ("transpose",),
        ("antitranspose",),
        ("crop_to_content", bg),
        ("trim_border",),
        ("compress", bg),
        ("remove_uniform_lines",),
        ("dedupe",),
        ("top_half",),
        ("bottom_half",),
        ("left_half",),
        ("right_half",),
        ("mirror_right",),
        ("mirror_left",),
        ("mirror_down",),
        ("mirror_up",),
        ("mirror_quad",),
        ("rotate_quad",),
        ("upscale_hw", 2, 2),
        ("upscale_hw", 3, 3),
        ("downscale", 2, 2),
        ("downscale", 3, 3),
        ("upscale_by_colors", bg),
        ("fractal", bg),
    ]
    if p.scale is not None and p.scale not in ((2, 2), (3, 3)):
        steps.append(("upscale_hw", *p.scale))
    if p.scale is not None:
        steps.append(("tile", *p.scale))
    if p.down is not None:
        if p.down not in ((2, 2), (3, 3)):
            steps.append(("downscale", *p.down))
        steps.append(("downscale_majority", *p.down))
    if p.cmap is not None:
        steps.append(("map_colors", p.cmap))
    for c in p.in_colors:
        if c != bg:
            steps.append(("keep_color", c, bg))
    for c in p.holes[1:]:
        steps.append(("replace_color", c, bg))
    steps += [("recolor_dominant", bg), ("invert_colors", bg)]
    for c in p.paints:
        steps += [("binarize", bg, c), ("recolor_minority", c)]
    steps += [("gravity_down", bg), ("gravity_up", bg), ("gravity_left", bg), ("gravity_right", bg)]
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        steps.append(("shift", dr, dc, bg))
    for hole in p.holes:
        steps += [
            ("symmetrize_h", hole),
            ("symmetrize_v", hole),
            ("symmetrize_diag", hole),
            ("symmetrize_rot", hole),
            ("symmetrize_all", hole),
        ]
    for vertical in (True, False):
        steps.append(("overlay_halves", vertical, bg))
        for op in ("and", "or", "xor", "nor"):
            for c in p.paints:
                steps.append(("combine_halves", vertical, op, bg, c))
    for diagonal in (False, True):
        steps += [("keep_largest", bg, diagonal), ("keep_smallest", bg, diagonal)]
        for multi in (False, True):
            steps += [("crop_largest", bg, diagonal, multi), ("crop_smallest", bg, diagonal, multi)]
        steps += [
            ("crop_odd_object", bg, diagonal),
            ("remove_small_objects", bg, 2, diagonal),
            ("remove_small_objects", bg, 3, diagonal),
        ]
    for diagonal, table in p.size_tables:
        steps.append(("recolor_by_size", bg, table, diagonal))
    for c in p.paints:
        steps += [("fill_enclosed", bg, c), ("recolor_enclosing", bg, c), ("draw_border", c)]
        for diagonal in (False, True):
            steps += [
                ("recolor_largest", bg, c, diagonal),
                ("recolor_smallest", bg, c, diagonal),
                ("fill_bboxes", bg, c, diagonal),
                ("outline", bg, c, diagonal),
            ]
        steps.append(("connect_pairs", bg, c))
    steps += [
        ("hollow", bg),
        ("connect_pairs", bg, -1),
        ("extend_diagonals", bg),
        ("extend_rows", bg),
        ("extend_cols", bg),
    ]
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        steps.append(("extend_rays", bg, dr, dc))
    steps += [("count_to_row", bg), ("count_objects_to_row", bg), ("color_column", bg)]
    if p.out_shape is not None:
        steps.append(("largest_color_canvas", bg, *p.out_shape))
    return list(dict.fromkeys(steps))


def _pair_ok(a: Step, b: Step) -> bool:
    pa, pb = STEPS[a[0]], STEPS[b[0]]
    if (pa.geometric and pb.geometric) or (pa.heavy and pb.heavy):
        return False
    return a != b or pa.repeatable


class Evaluator:
    """Runs programs on grids, sharing every intermediate result.

    Distinct grids are interned, so a step is computed at most once per distinct
    input grid however many programs share it.
    """

    def __init__(self) -> None:
        self._canon: dict[Grid, Grid] = {}
        self._memo: dict[tuple[Step, int], Grid | None] = {}

    def intern(self, g: Grid) -> Grid:
        """The canonical object equal to ``g``."""
        return self._canon.setdefault(g, g)

    def apply(self, step: Step, g: Grid) -> Grid | None:
        """Memoised :func:`apply_step` on an interned grid."""
        key = (step, id(g))
        memo = self._memo
        if key in memo:
            return memo[key]
        out = apply_step(step, g)
        if out is not None:
            out = self._canon.setdefault(out, out)
        memo[key] = out
        return out

    def run(self, program: Program, g: Grid, target: Shape | None = None) -> Grid | None:
        """Run ``program`` on ``g``; with ``target``, skip a last step that cannot reach it."""
        return self._run(program, self.intern(g), target)

    def _run(self, program: Program, out: Grid, target: Shape | None) -> Grid | None:
        for step in program[:-1]:
            nxt = self.apply(step, out)
            if nxt is None:
                return None
            out = nxt
        step = program[-1]
        if target is not None:
            rule = SHAPE_RULES[step[0]]
            if rule is not None and rule(len(out), len(out[0]), *step[1:]) != target:
                return None
        return self.apply(step, out)

    def run_all(
        self, programs: Sequence[Program], g: Grid, target: Shape | None = None
    ) -> list[Grid | None]:
        """Outputs of every program on ``g`` (see :meth:`run`)."""
        run, start = self._run, self.intern(g)
        return [run(program, start, target) for program in programs]


def fitted_cmaps(pairs: Sequence[Pair], steps: Sequence[Step], ev: Evaluator) -> list[Program]:
    """Programs ``step | map_colors(lut)`` whose lookup table is learned from the demos."""
    found: list[Program] = []
    for step in steps:
        if step[0] == "map_colors":
            continue
        outs = [ev.apply(step, ev.intern(x)) for x, _ in pairs]
        if any(o is None for o in outs):
            continue
        lut = learn_cmap([(o, y) for o, (_, y) in zip(outs, pairs, strict=True) if o is not None])
        if lut is not None and lut != tuple(range(10)):
            found.append((step, ("map_colors", lut)))
    return found


def build_battery(pairs: Sequence[Pair], ev: Evaluator | None = None) -> tuple[Program, ...]:
    """Every candidate program for a task, simplest first, in a deterministic order.

    Single steps, then single steps followed by a colour map fitted on the demos,
    then pairs of steps (skipping pairs of two geometric or two heavy steps), then
    triples of cheap steps: two crops or halves, then a crop, half or geometric step.
    """
    ev = ev or Evaluator()
    params = infer_params(pairs)
    steps = depth1_steps(params)
    programs: list[Program] = [(s,) for s in steps]
    programs += fitted_cmaps(pairs, steps, ev)
    programs += [(a, b) for a in steps for b in steps if _pair_ok(a, b)]
    cheap = [s for s in steps if STEPS[s[0]].cheap]
    reducers = [s for s in cheap if not STEPS[s[0]].geometric]
    programs += [
        (a, b, c)
        for a in reducers
        for b in reducers
        if _pair_ok(a, b)
        for c in cheap
        if _pair_ok(b, c)
    ]
    return tuple(dict.fromkeys(programs))
