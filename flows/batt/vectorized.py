"""A NumPy "mega-batch" evaluation of the battery, identical to the pure-Python path.

All inputs of a task (demo and test) and all candidate programs are evaluated
together, level by level: at each program position the distinct intermediate
grids that need the same step are stacked by shape into ``(n, h, w)`` arrays
and transformed in one NumPy call. Steps without a vectorised form fall back
to the pure primitive, one grid at a time. Results are interchangeable with
:func:`flows.batt.batt.solve_task`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flows.batt.batt import BattResult, TaskResult, is_solved, pick_predictions, score_demo
from flows.batt.battery import SHAPE_RULES, Program, Shape, Step, apply_step, build_battery
from flows.batt.dsl import MAX_SIDE, Grid
from flows.batt.tasks import ArcTask

Stack = np.ndarray
"""A ``(n, h, w)`` uint8 array of same-shape grids."""

VecFn = Callable[..., Stack | None]


def _halves(x: Stack, vertical: bool) -> tuple[Stack, Stack] | None:
    size = x.shape[1] if vertical else x.shape[2]
    if size < 2:
        return None
    if vertical:
        return x[:, : size // 2], x[:, (size + 1) // 2 :]
    return x[:, :, : size // 2], x[:, :, (size + 1) // 2 :]


def _shift(x: Stack, dr: int, dc: int, fill: int) -> Stack:
    _, h, w = x.shape
    out = np.full_like(x, fill)
    if abs(dr) < h and abs(dc) < w:
        out[:, max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)] = x[
            :, max(-dr, 0) : h - max(dr, 0), max(-dc, 0) : w - max(dc, 0)
        ]
    return out


def _trim(x: Stack) -> Stack | None:
    return x[:, 1:-1, 1:-1] if x.shape[1] >= 3 and x.shape[2] >= 3 else None


def _rotate_quad(x: Stack) -> Stack | None:
    if x.shape[1] != x.shape[2]:
        return None
    top = np.concatenate([x, np.rot90(x, -1, (1, 2))], axis=2)
    bottom = np.concatenate([np.rot90(x, 1, (1, 2)), x[:, ::-1, ::-1]], axis=2)
    return np.concatenate([top, bottom], axis=1)


def _downscale(x: Stack, kh: int, kw: int) -> Stack | None:
    _, h, w = x.shape
    return None if h % kh or w % kw else x[:, ::kh, ::kw]


def _counts(x: Stack, axes: tuple[int, ...]) -> np.ndarray:
    """Per-colour counts over ``axes``, colours on a new last axis."""
    return (x[..., None] == np.arange(10, dtype=x.dtype)).sum(axis=axes)


def _downscale_majority(x: Stack, kh: int, kw: int) -> Stack | None:
    n, h, w = x.shape
    if h % kh or w % kw:
        return None
    blocks = x.reshape(n, h // kh, kh, w // kw, kw)
    return _counts(blocks, (2, 4)).argmax(axis=-1).astype(np.uint8)


def _fractal(x: Stack, bg: int) -> Stack | None:
    n, h, w = x.shape
    if h * h > MAX_SIDE or w * w > MAX_SIDE:
        return None
    big = np.where(x[:, :, None, :, None] != bg, x[:, None, :, None, :], np.uint8(bg))
    return big.reshape(n, h * h, w * w)


def _most_common(x: Stack) -> np.ndarray:
    return _counts(x, (1, 2)).argmax(axis=-1).astype(np.uint8)


def _combine(x: Stack, vertical: bool, op: str, bg: int, c: int) -> Stack | None:
    parts = _halves(x, vertical)
    if parts is None:
        return None
    a, b = parts[0] != bg, parts[1] != bg
    hit = {"and": a & b, "or": a | b, "xor": a ^ b, "nor": ~(a | b)}[op]
    return np.where(hit, np.uint8(c), np.uint8(bg))


def _overlay_halves(x: Stack, vertical: bool, bg: int) -> Stack | None:
    parts = _halves(x, vertical)
    if parts is None:
        return None
    a, b = parts
    return np.where(b == bg, a, b)


def _gravity(x: Stack, bg: int, axis: int, towards_end: bool) -> Stack:
    key = (x != bg) if towards_end else (x == bg)
    order = np.argsort(key, axis=axis, kind="stable")
    return np.take_along_axis(x, order, axis=axis)


def _fill_from(out: Stack, image: Stack, hole: int) -> Stack:
    return np.where(out == hole, image, out)


def _symmetrize_all(x: Stack, hole: int) -> Stack:
    images = [x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    if x.shape[1] == x.shape[2]:
        images += [
            x.transpose(0, 2, 1),
            x[:, ::-1, ::-1].transpose(0, 2, 1),
            np.rot90(x, -1, (1, 2)),
            np.rot90(x, 1, (1, 2)),
        ]
    out = x
    for image in images:
        out = _fill_from(out, image, hole)
    return out


def _outline(x: Stack, bg: int, c: int, diagonal: bool) -> Stack:
    _, h, w = x.shape
    fg = np.pad(x != bg, ((0, 0), (1, 1), (1, 1)))
    near = np.zeros(x.shape, dtype=bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if (dr or dc) and (diagonal or not (dr and dc)):
                near |= fg[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
    return np.where((x == bg) & near, np.uint8(c), x)


def _hollow(x: Stack, bg: int) -> Stack:
    out = x.copy()
    mid = x[:, 1:-1, 1:-1]
    inner = (
        (mid != bg)
        & (x[:, :-2, 1:-1] == mid)
        & (x[:, 2:, 1:-1] == mid)
        & (x[:, 1:-1, :-2] == mid)
        & (x[:, 1:-1, 2:] == mid)
    )
    out[:, 1:-1, 1:-1][inner] = bg
    return out


def _border(x: Stack, c: int) -> Stack:
    out = x.copy()
    out[:, 0, :] = out[:, -1, :] = c
    out[:, :, 0] = out[:, :, -1] = c
    return out


def _rays(x: Stack, bg: int, dr: int, dc: int) -> Stack:
    """Orthogonal rays: every background cell takes the nearest foreground behind it."""
    axis = 1 if dr else 2
    flip = (dr or dc) < 0
    y = np.flip(x, axis) if flip else x
    size = y.shape[axis]
    pos = np.arange(size).reshape((1, size, 1) if axis == 1 else (1, 1, size))
    last = np.maximum.accumulate(np.where(y != bg, pos, -1), axis=axis)
    src = np.take_along_axis(y, np.maximum(last, 0), axis=axis)
    out = np.where((y == bg) & (last >= 0), src, y)
    return np.flip(out, axis) if flip else out


def _extend_rows(x: Stack, bg: int) -> Stack:
    present = _counts(x, (2,)) > 0
    present[..., bg] = False
    single = present.sum(axis=-1) == 1
    colour = present.argmax(axis=-1).astype(np.uint8)
    return np.where((x == bg) & single[:, :, None], colour[:, :, None], x)


def _map(x: Stack, lut: Sequence[int]) -> Stack:
    return np.asarray(lut, dtype=np.uint8)[x]


VEC_STEPS: dict[str, VecFn] = {
    "rot90": lambda x: np.rot90(x, -1, (1, 2)),
    "rot180": lambda x: x[:, ::-1, ::-1],
    "rot270": lambda x: np.rot90(x, 1, (1, 2)),
    "flip_h": lambda x: x[:, :, ::-1],
    "flip_v": lambda x: x[:, ::-1],
    "transpose": lambda x: x.transpose(0, 2, 1),
    "antitranspose": lambda x: x[:, ::-1, ::-1].transpose(0, 2, 1),
    "shift": _shift,
    "trim_border": _trim,
    "top_half": lambda x: (_halves(x, True) or (None,))[0],
    "bottom_half": lambda x: (_halves(x, True) or (None, None))[1],
    "left_half": lambda x: (_halves(x, False) or (None,))[0],
    "right_half": lambda x: (_halves(x, False) or (None, None))[1],
    "mirror_right": lambda x: np.concatenate([x, x[:, :, ::-1]], axis=2),
    "mirror_left": lambda x: np.concatenate([x[:, :, ::-1], x], axis=2),
    "mirror_down": lambda x: np.concatenate([x, x[:, ::-1]], axis=1),
    "mirror_up": lambda x: np.concatenate([x[:, ::-1], x], axis=1),
    "mirror_quad": lambda x: VEC_STEPS["mirror_down"](VEC_STEPS["mirror_right"](x)),
    "rotate_quad": _rotate_quad,
    "upscale_hw": lambda x, kh, kw: np.repeat(np.repeat(x, kh, axis=1), kw, axis=2),
    "downscale": _downscale,
    "downscale_majority": _downscale_majority,
    "tile": lambda x, nh, nw: np.tile(x, (1, nh, nw)),
    "fractal": _fractal,
    "map_colors": _map,
    "replace_color": lambda x, a, b: np.where(x == a, np.uint8(b), x),
    "keep_color": lambda x, c, bg: np.where(x == c, x, np.uint8(bg)),
    "binarize": lambda x, bg, c: np.where(x == bg, x, np.uint8(c)),
    "recolor_minority": lambda x, c: np.where(x == _most_common(x)[:, None, None], x, np.uint8(c)),
    "combine_halves": _combine,
    "overlay_halves": _overlay_halves,
    "gravity_down": lambda x, bg: _gravity(x, bg, 1, True),
    "gravity_up": lambda x, bg: _gravity(x, bg, 1, False),
    "gravity_right": lambda x, bg: _gravity(x, bg, 2, True),
    "gravity_left": lambda x, bg: _gravity(x, bg, 2, False),
    "symmetrize_h": lambda x, hole: _fill_from(x, x[:, :, ::-1], hole),
    "symmetrize_v": lambda x, hole: _fill_from(x, x[:, ::-1], hole),
    "symmetrize_diag": lambda x, hole: (
        _fill_from(x, x.transpose(0, 2, 1), hole) if x.shape[1] == x.shape[2] else None
    ),
    "symmetrize_rot": lambda x, hole: _fill_from(x, x[:, ::-1, ::-1], hole),
    "symmetrize_all": _symmetrize_all,
    "outline": _outline,
    "hollow": _hollow,
    "draw_border": _border,
    "extend_rays": _rays,
    "extend_rows": _extend_rows,
    "extend_cols": lambda x, bg: _extend_rows(x.transpose(0, 2, 1), bg).transpose(0, 2, 1),
}
"""Vectorised forms of battery steps; any other step runs through the pure primitive."""


def apply_vec(step: Step, x: Stack) -> Stack | None:
    """Apply a vectorised step to a stack; ``None`` when it fails for these shapes."""
    if x.shape[1] > MAX_SIDE or x.shape[2] > MAX_SIDE:
        return None
    out = VEC_STEPS[step[0]](x, *step[1:])
    if out is None or not 0 < out.shape[1] <= MAX_SIDE or not 0 < out.shape[2] <= MAX_SIDE:
        return None
    return out


class _Nodes:
    """Distinct grids seen during an evaluation, as arrays and (lazily) tuple grids."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self.grids: list[Grid | None] = []
        self._index: dict[tuple[int, int, bytes], int] = {}

    def add(self, a: np.ndarray, grid: Grid | None = None) -> int:
        key = (a.shape[0], a.shape[1], a.tobytes())
        node = self._index.get(key)
        if node is None:
            node = self._index[key] = len(self.arrays)
            self.arrays.append(np.ascontiguousarray(a))
            self.grids.append(grid)
        return node

    def add_grid(self, g: Grid) -> int:
        return self.add(np.array(g, dtype=np.uint8), g)

    def grid(self, node: int) -> Grid:
        g = self.grids[node]
        if g is None:
            g = self.grids[node] = tuple(map(tuple, self.arrays[node].tolist()))
        return g


def _apply_vec_many(step: Step, nodes: Sequence[int], store: _Nodes) -> list[int]:
    """Result node (-1 on failure) of a vectorised step on each node, one call per shape."""
    results = [-1] * len(nodes)
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, node in enumerate(nodes):
        groups.setdefault(store.arrays[node].shape, []).append(k)
    for members in groups.values():
        out = apply_vec(step, np.stack([store.arrays[nodes[k]] for k in members]))
        if out is not None:
            for k, a in zip(members, out, strict=True):
                results[k] = store.add(a)
    return results


def _fits(step: Step, nodes: np.ndarray, store: _Nodes, targets: Sequence[Shape]) -> np.ndarray:
    """Whether ``step`` can map each node (rows x grids) onto its grid's target shape."""
    rule = SHAPE_RULES[step[0]]
    ok = np.ones(nodes.shape, dtype=bool)
    if rule is None or nodes.size == 0:
        return ok
    by_shape: dict[tuple[int, ...], Shape] = {}
    predicted = {}
    for n in np.unique(nodes[nodes >= 0]).tolist():
        hw = store.arrays[n].shape
        if hw not in by_shape:
            by_shape[hw] = rule(*hw, *step[1:])
        predicted[n] = by_shape[hw]
    for k, target in enumerate(targets):
        bad = [n for n, shape in predicted.items() if shape != target]
        if bad:
            ok[:, k] = ~np.isin(nodes[:, k], bad)
    return ok


def evaluate_batch(
    programs: Sequence[Program], grids: Sequence[Grid], targets: Sequence[Shape] | None = None
) -> list[list[Grid | None]]:
    """Outputs of every program on every grid: ``result[k][p]`` for grid ``k``, program ``p``.

    With ``targets`` (one output shape per grid), a last step that provably cannot
    reach the target is skipped and reported as ``None``, as in the pure path.
    """
    store = _Nodes()
    starts = np.array([store.add_grid(g) for g in grids], dtype=np.int64)
    state = np.tile(starts, (len(programs), 1))
    lengths = np.array([len(p) for p in programs])
    memo: dict[tuple[Step, int], int] = {}
    for level in range(int(lengths.max(initial=0))):
        by_step: dict[Step, list[int]] = {}
        for p, program in enumerate(programs):
            if len(program) > level:
                by_step.setdefault(program[level], []).append(p)
        plans = []
        fallback: dict[int, list[Step]] = {}
        for step, row_list in by_step.items():
            rows = np.array(row_list)
            cur = state[rows]
            if targets is not None:
                final = lengths[rows] == level + 1
                cur[final] = np.where(_fits(step, cur[final], store, targets), cur[final], -1)
            valid = cur >= 0
            known, inverse = np.unique(cur[valid], return_inverse=True)
            plans.append((step, rows, cur, valid, known.tolist(), inverse))
            todo = [n for n in known.tolist() if (step, n) not in memo]
            if step[0] in VEC_STEPS:
                memo.update(
                    zip([(step, n) for n in todo], _apply_vec_many(step, todo, store), strict=True)
                )
            else:
                for n in todo:
                    fallback.setdefault(n, []).append(step)
        # Pure steps run grid by grid, so per-grid caches (objects) are reused.
        for node, steps in fallback.items():
            grid = store.grid(node)
            for step in steps:
                out = apply_step(step, grid)
                memo[(step, node)] = -1 if out is None else store.add_grid(out)
        for step, rows, cur, valid, known_list, inverse in plans:
            mapped = np.array([memo[(step, n)] for n in known_list], dtype=np.int64)
            new = np.full(cur.shape, -1, dtype=np.int64)
            new[valid] = mapped[inverse]
            state[rows] = new
    by_node: list[Grid | None] = [store.grid(n) for n in range(len(store.arrays))]
    by_node.append(None)
    return [[by_node[n] for n in state[:, k].tolist()] for k in range(len(grids))]


def solve_task_vectorized(task: ArcTask) -> TaskResult:
    """Same result as :func:`flows.batt.batt.solve_task`, computed as NumPy mega-batches.

    All candidates run on all demo inputs at once (scoring the demo samples and
    finding the demo-consistent candidates); those run on all test inputs at once.
    """
    demos = task.train
    programs = build_battery(demos)
    targets = [(len(y), len(y[0])) for _, y in demos]
    outputs = evaluate_batch(programs, [x for x, _ in demos], targets)
    results: list[BattResult] = [
        score_demo(task.task_id, programs, outputs[k], y) for k, (_, y) in enumerate(demos)
    ]
    consistent = [
        p for p in range(len(programs)) if all(outputs[k][p] == y for k, (_, y) in enumerate(demos))
    ]
    tests = (
        evaluate_batch([programs[p] for p in consistent], [x for x, _ in task.test])
        if consistent
        else [[] for _ in task.test]
    )
    for test_outputs in tests:
        results.append(
            pick_predictions(
                task.task_id, programs, len(consistent), zip(consistent, test_outputs, strict=True)
            )
        )
    return TaskResult(task_id=task.task_id, samples=results, solved=is_solved(task, results))
