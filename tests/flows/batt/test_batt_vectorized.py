"""The NumPy mega-batch path gives exactly the pure-Python results."""

from __future__ import annotations

import numpy as np
import pytest

from flows.batt.batt import solve_task
from flows.batt.battery import Evaluator, Step, apply_step, build_battery
from flows.batt.dsl import Grid, make_grid
from flows.batt.tasks import ArcTask, load_tasks
from flows.batt.vectorized import VEC_STEPS, apply_vec, evaluate_batch, solve_task_vectorized

CASES: list[Step] = [
    ("rot90",),
    ("rot180",),
    ("rot270",),
    ("flip_h",),
    ("flip_v",),
    ("transpose",),
    ("antitranspose",),
    ("shift", 1, 0, 0),
    ("shift", 0, -1, 3),
    ("shift", -2, 3, 0),
    ("trim_border",),
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
    ("upscale_hw", 2, 3),
    ("upscale_hw", 1, 2),
    ("downscale", 2, 2),
    ("downscale", 1, 3),
    ("downscale_majority", 2, 2),
    ("downscale_majority", 3, 1),
    ("tile", 2, 3),
    ("fractal", 0),
    ("map_colors", (1, 2, 3, 4, 5, 6, 7, 8, 9, 0)),
    ("replace_color", 1, 2),
    ("keep_color", 1, 0),
    ("binarize", 0, 5),
    ("recolor_minority", 7),
    ("overlay_halves", True, 0),
    ("overlay_halves", False, 2),
    ("gravity_down", 0),
    ("gravity_up", 1),
    ("gravity_left", 0),
    ("gravity_right", 2),
    ("symmetrize_h", 0),
    ("symmetrize_v", 1),
    ("symmetrize_diag", 0),
    ("symmetrize_rot", 0),
    ("symmetrize_all", 0),
    ("outline", 0, 5, False),
    ("outline", 1, 5, True),
    ("hollow", 0),
    ("draw_border", 6),
    ("extend_rays", 0, 1, 0),
    ("extend_rays", 0, -1, 0),
    ("extend_rays", 0, 0, 1),
    ("extend_rays", 1, 0, -1),
    ("extend_rows", 0),
    ("extend_cols", 0),
    *[("combine_halves", v, op, 0, 4) for v in (True, False) for op in ("and", "or", "xor", "nor")],
]

SHAPES = [(1, 1), (1, 4), (2, 2), (3, 5), (4, 4), (6, 3), (5, 5), (16, 16)]

FAST_TASKS = ["017c7c7b", "8be77c9e", "a79310a0", "9172f3a0", "0520fde7", "6150a2bd", "25ff71a9"]


def random_stack(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 4, size=(6, *shape)).astype(np.uint8)
    stack[0] = 0
    stack[1] = stack[1] * (rng.random(shape) < 0.3)
    return stack


def test_every_vectorised_step_is_covered() -> None:
    assert {step[0] for step in CASES} == set(VEC_STEPS)


@pytest.mark.parametrize("step", CASES, ids=[str(s) for s in CASES])
def test_vectorised_step_equals_pure_primitive(step: Step) -> None:
    for seed, shape in enumerate(SHAPES):
        stack = random_stack(shape, seed)
        grids = [make_grid(g) for g in stack]
        expected = [apply_step(step, g) for g in grids]
        out = apply_vec(step, stack)
        if out is None:
            assert expected == [None] * len(grids), shape
        else:
            assert [make_grid(g) for g in out] == expected, shape


def test_evaluate_batch_equals_evaluator() -> None:
    (task,) = load_tasks("training", ids=["a79310a0"])
    programs = build_battery(task.train)
    grids: list[Grid] = [x for x, _ in task.train]
    batch = evaluate_batch(programs, grids)
    for grid, outs in zip(grids, batch, strict=True):
        assert outs == Evaluator().run_all(programs, grid)
    targets = [(len(y), len(y[0])) for _, y in task.train]
    pruned = evaluate_batch(programs, grids, targets)
    for k, (grid, target) in enumerate(zip(grids, targets, strict=True)):
        assert pruned[k] == Evaluator().run_all(programs, grid, target)


@pytest.mark.parametrize("task_id", FAST_TASKS)
def test_vectorised_task_equals_pure_task(task_id: str) -> None:
    (task,) = load_tasks("training", ids=[task_id])
    assert solve_task_vectorized(task) == solve_task(task)


def G(text: str) -> Grid:
    return tuple(tuple(int(ch) for ch in row) for row in text.split("/"))


def test_vectorised_hand_made_task() -> None:
    task = ArcTask(
        "hand",
        train=((G("10/02"), G("20/10")), (G("33"), G("33"))),
        test=((G("50/00"), G("50/00")), (G("7"), G("7"))),
    )
    assert solve_task_vectorized(task) == solve_task(task)
