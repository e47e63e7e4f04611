"""The battery: parameter inference, program construction and memoised evaluation."""

from __future__ import annotations

import pickle
from itertools import pairwise

from flows.batt import dsl
from flows.batt.battery import (
    STEPS,
    Evaluator,
    Pair,
    apply_step,
    build_battery,
    depth1_steps,
    fitted_cmaps,
    infer_params,
    learn_cmap,
    program_name,
    run_program,
    step_name,
)
from flows.batt.dsl import Grid


def G(text: str) -> Grid:
    return tuple(tuple(int(ch) for ch in row) for row in text.split("/"))


FLIP_SWAP: list[Pair] = [
    (G("100/220"), G("004/033")),
    (G("010/002/100"), G("040/300/004")),
]
"""Mirror left-right, then recolour 1 -> 4 and 2 -> 3."""

UPSCALE: list[Pair] = [(G("10/02"), G("1100/1100/0022/0022")), (G("3"), G("33/33"))]


def test_infer_params_of_a_recolouring_task() -> None:
    p = infer_params(FLIP_SWAP)
    assert p.bg == 0
    assert p.in_colors == (0, 1, 2)
    assert p.out_colors == (0, 3, 4)
    assert p.paints == (3, 4)
    assert p.holes == (0, 1, 2)
    assert p.cmap is None
    assert (p.scale, p.down, p.out_shape) == (None, None, None)


def test_infer_params_of_a_scaling_task() -> None:
    p = infer_params(UPSCALE)
    assert p.scale == (2, 2)
    assert p.down is None
    assert p.cmap is None


def test_learn_cmap() -> None:
    assert learn_cmap([(G("12"), G("34")), (G("21"), G("43"))]) == (0, 3, 4, 3, 4, 5, 6, 7, 8, 9)
    assert learn_cmap([(G("11"), G("23"))]) is None
    assert learn_cmap([(G("1"), G("11"))]) is None


def test_size_table_is_learned_from_demos() -> None:
    pairs = [(G("1011/0000/1000"), G("2033/0000/2000")), (G("11/00"), G("33/00"))]
    tables = infer_params(pairs).size_tables
    assert (False, (-1, 2, 3)) in tables
    step = ("recolor_by_size", 0, (-1, 2, 3), False)
    assert apply_step(step, G("101/001")) == G("203/003")


def test_apply_step_reports_failures_as_none() -> None:
    assert apply_step(("downscale", 2, 2), G("123")) is None
    assert apply_step(("tile", 2, 1), dsl.canvas(16, 3, 1)) is None
    assert apply_step(("mirror_right",), dsl.canvas(2, 16, 1)) is None
    assert apply_step(("crop_to_content", 0), G("00")) is None
    assert apply_step(("rot90",), G("12")) == G("1/2")


def test_run_program_composes_left_to_right() -> None:
    program = (("flip_h",), ("replace_color", 1, 4))
    assert run_program(program, G("10/02")) == G("04/20")
    assert run_program((("downscale", 2, 2), ("rot90",)), G("1")) is None


def test_names_are_readable() -> None:
    assert step_name(("rot90",)) == "rot90"
    assert step_name(("combine_halves", True, "xor", 0, 3)) == "combine_halves(T,xor,0,3)"
    assert step_name(("recolor_by_size", 0, (-1, 2, 3), False)) == "recolor_by_size(0,.23,F)"
    assert program_name((("flip_h",), ("upscale_hw", 2, 2))) == "flip_h|upscale_hw(2,2)"


def test_depth1_steps_use_inferred_parameters() -> None:
    steps = depth1_steps(infer_params(UPSCALE))
    assert ("upscale_hw", 2, 2) in steps
    assert ("tile", 2, 2) in steps
    assert all(s[0] in STEPS for s in steps)
    assert len(steps) == len(set(steps))


def test_fitted_cmaps_find_flip_then_recolour() -> None:
    steps = depth1_steps(infer_params(FLIP_SWAP))
    found = fitted_cmaps(FLIP_SWAP, steps, Evaluator())
    assert (("flip_h",), ("map_colors", (0, 4, 3, 3, 4, 5, 6, 7, 8, 9))) in found


def test_battery_is_large_deterministic_and_ordered_by_depth() -> None:
    battery = build_battery(FLIP_SWAP)
    assert battery == build_battery(FLIP_SWAP)
    assert len(battery) > 5000
    assert len(set(battery)) == len(battery)
    depths = [len(p) for p in battery]
    assert depths == sorted(depths)
    assert set(depths) == {1, 2, 3}
    assert pickle.loads(pickle.dumps(battery)) == battery
    for program in battery:
        pairs = list(pairwise(program))
        assert not any(STEPS[a[0]].geometric and STEPS[b[0]].geometric for a, b in pairs)
        assert not any(STEPS[a[0]].heavy and STEPS[b[0]].heavy for a, b in pairs)
        if len(program) == 3:
            assert all(STEPS[s[0]].cheap for s in program)


def test_battery_contains_the_solution() -> None:
    battery = build_battery(FLIP_SWAP)
    exact = [p for p in battery if all(run_program(p, x) == y for x, y in FLIP_SWAP)]
    assert exact
    assert program_name(exact[0]) == "flip_h|map_colors(0433456789)"


def test_evaluator_matches_run_program_and_prunes_only_impossible_shapes() -> None:
    battery = build_battery(UPSCALE)
    grid = G("12/03")
    ev = Evaluator()
    assert ev.run_all(battery, grid) == [run_program(p, grid) for p in battery]
    target = (4, 4)
    pruned = ev.run_all(battery, grid, target)
    for program, out in zip(battery, pruned, strict=True):
        plain = run_program(program, grid)
        if plain is not None and dsl.shape(plain) == target:
            assert out == plain
        else:
            assert out is None or dsl.shape(out) != target
    assert any(
        out is None and run_program(p, grid) is not None
        for p, out in zip(battery, pruned, strict=True)
    )


def test_evaluator_keeps_repeated_steps_apart() -> None:
    program = (("top_half",), ("top_half",))
    grid = dsl.canvas(8, 2, 1)
    assert Evaluator().run(program, grid, (2, 2)) == dsl.canvas(2, 2, 1)
