"""Every DSL primitive against hand-checked results, plus algebraic properties."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.batt import dsl
from flows.batt.dsl import Grid


def G(text: str) -> Grid:
    """Parse ``"12/34"`` into ``((1, 2), (3, 4))``."""
    return tuple(tuple(int(ch) for ch in row) for row in text.split("/"))


R = G("123/456")
C = G("0012/0110")
OBJ = G("110/002/022")


@st.composite
def grids(draw: st.DrawFn, max_side: int = 6, colors: int = 4) -> Grid:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    cells = st.integers(0, colors - 1)
    return tuple(tuple(draw(cells) for _ in range(w)) for _ in range(h))


def test_there_are_at_least_80_primitives_and_each_is_tested() -> None:
    names = [
        n
        for n, f in inspect.getmembers(dsl, inspect.isfunction)
        if not n.startswith("_") and f.__module__ == dsl.__name__
    ]
    assert len(names) >= 80
    source = Path(__file__).read_text()
    untested = [n for n in names if f"dsl.{n}(" not in source]
    assert untested == []


# ---------------------------------------------------------------- construction


def test_construction_and_shape() -> None:
    assert dsl.make_grid([[1, 2], [3, 4]]) == G("12/34")
    assert dsl.make_grid(np.array([[1, 2]])) == G("12")
    assert dsl.to_lists(G("12/34")) == [[1, 2], [3, 4]]
    assert dsl.canvas(2, 3, 7) == G("777/777")
    assert (dsl.height(R), dsl.width(R), dsl.shape(R)) == (2, 3, (2, 3))


def test_size_limits() -> None:
    dsl.check_size(30, 30)
    for h, w in ((31, 1), (0, 1), (1, 0)):
        with pytest.raises(ValueError):
            dsl.check_size(h, w)
    with pytest.raises(ValueError):
        dsl.canvas(0, 1, 0)


# -------------------------------------------------------------------- geometry


def test_rotations_and_flips() -> None:
    assert dsl.rot90(R) == G("41/52/63")
    assert dsl.rot180(R) == G("654/321")
    assert dsl.rot270(R) == G("36/25/14")
    assert dsl.flip_h(R) == G("321/654")
    assert dsl.flip_v(R) == G("456/123")
    assert dsl.transpose(R) == G("14/25/36")
    assert dsl.antitranspose(R) == G("63/52/41")


def test_shift_and_roll() -> None:
    assert dsl.shift(R, 1, 0, 0) == G("000/123")
    assert dsl.shift(R, 0, -1, 0) == G("230/560")
    assert dsl.shift(R, 0, 5, 9) == G("999/999")
    assert dsl.roll(R, 0, 1) == G("312/645")
    assert dsl.roll(R, 1, 0) == G("456/123")


@given(grids())
def test_dihedral_identities(g: Grid) -> None:
    assert dsl.rot90(dsl.rot90(dsl.rot90(dsl.rot90(g)))) == g
    assert dsl.rot90(dsl.rot90(g)) == dsl.rot180(g)
    assert dsl.rot90(dsl.rot180(g)) == dsl.rot270(g)
    assert dsl.flip_h(dsl.flip_h(g)) == g
    assert dsl.transpose(dsl.transpose(g)) == g
    assert dsl.antitranspose(g) == dsl.rot180(dsl.transpose(g))
    assert dsl.flip_h(g) == dsl.rot90(dsl.transpose(g))


@given(grids(), st.integers(-7, 7), st.integers(-7, 7))
def test_roll_is_invertible(g: Grid, dr: int, dc: int) -> None:
    assert dsl.roll(dsl.roll(g, dr, dc), -dr, -dc) == g


# ---------------------------------------------------------------------- colour


def test_colour_statistics() -> None:
    assert dsl.color_counts(C) == (4, 3, 1, 0, 0, 0, 0, 0, 0, 0)
    assert dsl.palette(C) == (0, 1, 2)
    assert dsl.most_common_color(C) == 0
    assert dsl.most_common_color(G("21")) == 1
    assert dsl.least_common_color(C) == 2
    assert dsl.least_common_color(G("21")) == 1
    assert dsl.colors_by_count(C, 0) == (1, 2)
    assert dsl.count_color(C, 1) == 3


def test_recolouring() -> None:
    assert dsl.replace_color(C, 1, 5) == G("0052/0550")
    assert dsl.swap_colors(C, 0, 1) == G("1102/1001")
    assert dsl.map_colors(C, (9, 8, 7, 3, 4, 5, 6, 7, 8, 9)) == G("9987/9889")
    assert dsl.keep_color(C, 2, 0) == G("0002/0000")
    assert dsl.binarize(C, 0, 5) == G("0055/0550")
    assert dsl.fill_grid(C, 3) == G("3333/3333")
    assert dsl.recolor_minority(G("1121"), 7) == G("1171")
    assert dsl.recolor_dominant(C, 0) == G("0011/0110")
    assert dsl.invert_colors(G("0010"), 0) == G("1101")
    for f in (dsl.recolor_dominant, dsl.invert_colors):
        with pytest.raises(ValueError):
            f(G("00"), 0)


def test_masks() -> None:
    assert dsl.color_mask(C, 1) == G("0010/0110")
    assert dsl.apply_mask(G("00/00"), G("10/01"), 4) == G("40/04")


# ------------------------------------------------------------------- combining


def test_cellwise_combinations() -> None:
    a, b = G("10/10"), G("11/00")
    assert dsl.overlay(G("12/34"), G("05/00"), 0) == G("15/34")
    assert dsl.cell_and(a, b, 0, 7) == G("70/00")
    assert dsl.cell_or(a, b, 0, 7) == G("77/70")
    assert dsl.cell_xor(a, b, 0, 7) == G("07/70")
    assert dsl.cell_nor(a, b, 0, 7) == G("00/07")
    with pytest.raises(ValueError):
        dsl.cell_and(a, G("1"), 0, 7)


def test_halves() -> None:
    assert dsl.halves(G("1/2/3"), True) == (G("1"), G("3"))
    assert dsl.halves(G("1234"), False) == (G("12"), G("34"))
    with pytest.raises(ValueError):
        dsl.halves(G("1"), True)
    assert dsl.combine_halves(G("10511/00510"), False, "and", 0, 2) == G("20/00")
    assert dsl.overlay_halves(G("12/00/30"), True, 0) == G("32")


# ------------------------------------------------------------------------ size


def test_crops() -> None:
    assert dsl.crop(R, 0, 1, 2, 2) == G("23/56")
    with pytest.raises(ValueError):
        dsl.crop(R, 1, 1, 2, 2)
    assert dsl.content_bbox(G("000/010/011"), 0) == (1, 1, 2, 2)
    assert dsl.crop_to_content(G("000/010/011"), 0) == G("10/11")
    with pytest.raises(ValueError):
        dsl.crop_to_content(G("00"), 0)
    assert dsl.trim_border(G("111/121/111")) == G("2")
    with pytest.raises(ValueError):
        dsl.trim_border(G("11/11"))
    assert dsl.pad(G("5"), 1, 0) == G("000/050/000")


def test_scaling() -> None:
    assert dsl.upscale_hw(G("12"), 2, 1) == G("12/12")
    assert dsl.upscale(G("12"), 2) == G("1122/1122")
    with pytest.raises(ValueError):
        dsl.upscale(dsl.canvas(16, 16, 0), 2)
    assert dsl.downscale(G("1122/1122/3344/3344"), 2, 2) == G("12/34")
    with pytest.raises(ValueError):
        dsl.downscale(G("123"), 2, 2)
    assert dsl.downscale_majority(G("1121/1222"), 2, 2) == G("12")
    assert dsl.downscale_majority(G("12/21"), 2, 2) == G("1")
    assert dsl.upscale_by_colors(G("12/00"), 0) == G("1122/1122/0000/0000")
    assert dsl.fractal(G("10/01"), 0) == G("1000/0100/0010/0001")


def test_tiling_and_concatenation() -> None:
    assert dsl.tile(G("12"), 2, 2) == G("1212/1212")
    assert dsl.hconcat(G("1/2"), G("3/4")) == G("13/24")
    assert dsl.vconcat(G("12"), G("34")) == G("12/34")
    with pytest.raises(ValueError):
        dsl.hconcat(G("1"), G("3/4"))
    with pytest.raises(ValueError):
        dsl.vconcat(G("1"), G("34"))


def test_mirrors() -> None:
    assert dsl.mirror_right(G("12")) == G("1221")
    assert dsl.mirror_left(G("12")) == G("2112")
    assert dsl.mirror_down(G("1/2")) == G("1/2/2/1")
    assert dsl.mirror_up(G("1/2")) == G("2/1/1/2")
    assert dsl.mirror_quad(G("12/34")) == G("1221/3443/3443/1221")
    assert dsl.rotate_quad(G("12/34")) == G("1231/3442/2443/1321")
    with pytest.raises(ValueError):
        dsl.rotate_quad(G("12"))


def test_half_and_split() -> None:
    assert dsl.top_half(G("1/2/3")) == G("1")
    assert dsl.bottom_half(G("1/2/3")) == G("3")
    assert dsl.left_half(G("123")) == G("1")
    assert dsl.right_half(G("123")) == G("3")
    assert dsl.split_rows(G("1/2/3/4"), 2) == (G("1/2"), G("3/4"))
    assert dsl.split_rows(G("1/5/2"), 2) == (G("1"), G("2"))
    with pytest.raises(ValueError):
        dsl.split_rows(G("1/2/3/4"), 3)
    assert dsl.split_cols(G("12534"), 2) == (G("12"), G("34"))


def test_line_removal() -> None:
    assert dsl.dedupe_rows(G("1/1/2/1")) == G("1/2/1")
    assert dsl.dedupe_cols(G("1123")) == G("123")
    assert dsl.dedupe(G("112/112/334")) == G("12/34")
    assert dsl.compress(G("000/102/000/304"), 0) == G("12/34")
    assert dsl.remove_uniform_lines(G("555/152/555/354")) == G("12/34")


@given(grids(), st.integers(1, 3), st.integers(1, 3))
def test_upscale_then_downscale_is_identity(g: Grid, kh: int, kw: int) -> None:
    assert dsl.downscale(dsl.upscale_hw(g, kh, kw), kh, kw) == g
    assert dsl.downscale_majority(dsl.upscale_hw(g, kh, kw), kh, kw) == g


@given(grids())
def test_idempotent_primitives(g: Grid) -> None:
    assert dsl.dedupe(dsl.dedupe(g)) == dsl.dedupe(g)
    assert dsl.gravity_down(dsl.gravity_down(g, 0), 0) == dsl.gravity_down(g, 0)
    if any(any(row) for row in g):
        once = dsl.crop_to_content(g, 0)
        assert dsl.crop_to_content(once, 0) == once
        assert dsl.compress(dsl.compress(g, 0), 0) == dsl.compress(g, 0)


# --------------------------------------------------------------------- objects


def test_objects() -> None:
    assert dsl.objects(OBJ, 0) == (((0, 0, 1), (0, 1, 1)), ((1, 2, 2), (2, 1, 2), (2, 2, 2)))
    assert len(dsl.objects(G("10/02"), 0)) == 2
    assert dsl.objects(G("10/02"), 0, True, True) == (((0, 0, 1), (1, 1, 2)),)
    assert len(dsl.objects(G("10/02"), 0, True, False)) == 2
    assert dsl.count_objects(OBJ, 0) == 2
    assert dsl.count_objects(G("10/01"), 0, True) == 1


def test_object_properties() -> None:
    ell = ((1, 2, 2), (2, 1, 2), (2, 2, 2))
    assert dsl.obj_size(ell) == 3
    assert dsl.obj_colors(((0, 0, 1), (1, 1, 2))) == (1, 2)
    assert dsl.obj_color(((0, 0, 1), (0, 1, 2), (1, 0, 2))) == 2
    assert dsl.obj_bbox(ell) == (1, 1, 2, 2)
    assert dsl.obj_shape(ell) == (2, 2)
    assert dsl.normalize_obj(ell) == ((0, 1, 2), (1, 0, 2), (1, 1, 2))
    assert dsl.shift_obj(((0, 0, 1),), 2, 3) == ((2, 3, 1),)
    assert dsl.recolor_obj(((0, 0, 1), (0, 1, 1)), 4) == ((0, 0, 4), (0, 1, 4))
    objs = dsl.objects(OBJ, 0)
    assert dsl.largest_object(objs) == ell
    assert dsl.smallest_object(objs) == ((0, 0, 1), (0, 1, 1))
    for f in (dsl.largest_object, dsl.smallest_object):
        with pytest.raises(ValueError):
            f(())


def test_object_drawing() -> None:
    assert dsl.paint(G("00/00"), ((0, 1, 3), (5, 5, 1))) == G("03/00")
    assert dsl.erase(G("12/34"), ((0, 0, 1),), 0) == G("02/34")
    assert dsl.obj_to_grid(((1, 2, 2), (2, 1, 2), (2, 2, 2)), 0) == G("02/22")
    assert dsl.obj_subgrid(G("12/34"), ((0, 0, 1), (1, 1, 4))) == G("12/34")


def test_object_selection() -> None:
    assert dsl.keep_largest(OBJ, 0, False) == G("000/002/022")
    assert dsl.keep_smallest(OBJ, 0, False) == G("110/000/000")
    assert dsl.crop_largest(OBJ, 0, False, False) == G("02/22")
    assert dsl.crop_smallest(OBJ, 0, False, False) == G("11")
    assert dsl.crop_odd_object(G("10101/00000/20000"), 0, False) == G("2")
    with pytest.raises(ValueError):
        dsl.crop_odd_object(G("101"), 0, False)
    assert dsl.remove_small_objects(OBJ, 0, 3, False) == G("000/002/022")


def test_object_recolouring() -> None:
    assert dsl.recolor_by_size(OBJ, 0, (-1, -1, 5, 7), False) == G("550/007/077")
    assert dsl.recolor_by_size(OBJ, 0, (-1, -1, -1), False) == OBJ
    assert dsl.recolor_largest(OBJ, 0, 4, False) == G("110/004/044")
    assert dsl.recolor_smallest(OBJ, 0, 4, False) == G("440/002/022")
    assert dsl.recolor_enclosing(G("11100/10100/11102"), 0, 3) == G("33300/30300/33302")


def test_object_outlines_and_boxes() -> None:
    assert dsl.fill_bboxes(G("1000/0100/0000"), 0, 5, True) == G("1500/5100/0000")
    assert dsl.fill_bboxes(G("1000/0100/0000"), 0, 5, False) == G("1000/0100/0000")
    assert dsl.hollow(G("111/111/111"), 0) == G("111/101/111")
    assert dsl.outline(G("000/010/000"), 0, 2, False) == G("020/212/020")
    assert dsl.outline(G("000/010/000"), 0, 2, True) == G("222/212/222")


# -------------------------------------------------------------- masks & fills


def test_fills() -> None:
    assert dsl.flood_fill(G("110/100/001"), 0, 0, 5) == G("550/500/001")
    assert dsl.flood_fill(G("11"), 0, 0, 1) == G("11")
    with pytest.raises(ValueError):
        dsl.flood_fill(G("11"), 3, 0, 2)
    assert dsl.enclosed_mask(G("111/101/111"), 0) == G("000/010/000")
    assert dsl.enclosed_mask(G("111/100/111"), 0) == G("000/000/000")
    assert dsl.fill_enclosed(G("111/101/111"), 0, 4) == G("111/141/111")


# --------------------------------------------------------------------- gravity


def test_gravity() -> None:
    g = G("10/00/02")
    assert dsl.gravity_down(g, 0) == G("00/00/12")
    assert dsl.gravity_up(g, 0) == G("12/00/00")
    assert dsl.gravity_left(G("0102"), 0) == G("1200")
    assert dsl.gravity_right(G("1020"), 0) == G("0012")
    assert dsl.gravity_right(G("1200"), 0) == G("0012")


# -------------------------------------------------------------------- symmetry


def test_symmetry_completion() -> None:
    assert dsl.symmetrize_h(G("120"), 0) == G("121")
    assert dsl.symmetrize_v(G("1/0"), 0) == G("1/1")
    assert dsl.symmetrize_diag(G("12/00"), 0) == G("12/20")
    with pytest.raises(ValueError):
        dsl.symmetrize_diag(G("12"), 0)
    assert dsl.symmetrize_rot(G("12/00"), 0) == G("12/21")
    assert dsl.symmetrize_all(G("10/00"), 0) == G("11/11")
    assert dsl.symmetrize_all(G("100"), 0) == G("101")
    assert dsl.is_symmetric_h(G("121")) and not dsl.is_symmetric_h(G("12"))
    assert dsl.is_symmetric_v(G("1/2/1")) and not dsl.is_symmetric_v(G("1/2"))


@given(grids())
def test_symmetrize_h_restores_punched_mirror_image(g: Grid) -> None:
    full = dsl.mirror_right(g)
    w = dsl.width(g)
    holed = tuple(
        tuple(9 if c < w and (r + c) % 2 == 0 else v for c, v in enumerate(row))
        for r, row in enumerate(full)
    )
    assert dsl.symmetrize_h(holed, 9) == full
    assert dsl.symmetrize_h(full, 9) == full


# -------------------------------------------------------------------- counting


def test_counting() -> None:
    assert dsl.count_cells(G("102/000"), 0) == 2
    assert dsl.count_to_row(G("102/010"), 0) == G("111")
    assert dsl.count_objects_to_row(G("101/000/101"), 0) == G("1111")
    assert dsl.color_column(G("1223"), 0) == G("2/1/3")
    assert dsl.largest_color_canvas(G("1022/0022"), 0, 1, 2) == G("22")
    with pytest.raises(ValueError):
        dsl.count_to_row(G("00"), 0)


# --------------------------------------------------------------------- drawing


def test_lines_and_borders() -> None:
    blank = dsl.canvas(3, 3, 0)
    assert dsl.draw_line(blank, 0, 0, 2, 2, 1) == G("100/010/001")
    assert dsl.draw_line(blank, 0, 2, 0, 0, 1) == G("111/000/000")
    with pytest.raises(ValueError):
        dsl.draw_line(blank, 0, 0, 1, 2, 1)
    assert dsl.draw_border(blank, 1) == G("111/101/111")
    assert dsl.draw_border(G("00"), 3) == G("33")
    assert dsl.draw_border(G("0/0/0"), 3) == G("3/3/3")


def test_connections_and_rays() -> None:
    assert dsl.connect_pairs(G("1001/0000/1000"), 0, -1) == G("1111/1000/1000")
    assert dsl.connect_pairs(G("1001/0000/1000"), 0, 5) == G("1551/5000/1000")
    assert dsl.connect_pairs(G("102"), 0, -1) == G("102")
    assert dsl.extend_rays(G("100/000/020"), 0, 1, 0) == G("100/100/120")
    assert dsl.extend_rays(G("1/0/2/0"), 0, 1, 0) == G("1/1/2/2")
    assert dsl.extend_rays(G("0102"), 0, 0, -1) == G("1122")
    assert dsl.extend_diagonals(G("000/010/000"), 0) == G("101/010/101")
    assert dsl.extend_rows(G("010/000/123"), 0) == G("111/000/123")
    assert dsl.extend_cols(G("10/00/02"), 0) == G("12/12/12")


@settings(max_examples=50)
@given(grids(max_side=8))
def test_objects_partition_the_foreground(g: Grid) -> None:
    for diagonal in (False, True):
        for multi in (False, True):
            cells = [cell for o in dsl.objects(g, 0, diagonal, multi) for cell in o]
            assert len(cells) == len(set(cells)) == dsl.count_cells(g, 0)
