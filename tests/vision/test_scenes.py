"""Composed scenes: the hard cases are options, and a default scene is drawn as before."""

from __future__ import annotations

import numpy as np

from agent.vision import scenes

FACE = np.full((64, 64), 120, np.uint8)
GEO = scenes.Geometry(seat_x=160, seat_y=150, size=60)


def frames(
    sc: scenes.Script, *, wall: scenes.WallKind | scenes.U8 = "plain", noise: float = 3.0
) -> list[scenes.SceneFrame]:
    rng = np.random.default_rng(0)
    return list(scenes.compose(sc, [FACE], rng=rng, geometry=GEO, wall=wall, noise=noise))


def test_a_plain_wall_is_the_default_one() -> None:
    a = scenes.background(np.random.default_rng(3))
    b = scenes.background(np.random.default_rng(3), kind="plain")
    assert np.array_equal(a, b)
    sc = scenes.script([("seated", 300)])
    assert all(
        np.array_equal(x.gray, y.gray)
        for x, y in zip(frames(sc), frames(sc, wall="plain"), strict=True)
    )


def test_wall_kinds_have_more_edges_than_a_plain_wall() -> None:
    def edges(kind: scenes.WallKind) -> float:
        walls = [scenes.background(np.random.default_rng(s), kind=kind) for s in range(10)]
        return float(
            np.mean([np.abs(np.diff(w[:200].astype(float), axis=1)).mean() for w in walls])
        )

    plain = edges("plain")
    assert all(edges(k) > 2 * plain for k in ("textured", "patterned", "posters"))


def test_a_ready_background_is_used_as_given() -> None:
    wall = np.full((240, 320), 77, np.uint8)
    fr = frames(scenes.script([("away", 100)]), wall=wall, noise=0.0)[0]
    assert np.array_equal(fr.gray, wall)


def test_backlight_saturates_the_window_and_darkens_the_clerk() -> None:
    sc = scenes.script([("seated", 2000)], backlight=[scenes.Backlight(1000, 2000, 0.4)])
    out = frames(sc, noise=0.0)
    before, lit = out[5], out[15]
    assert lit.present and lit.box is not None and lit.standing is False  # labels kept
    window = lit.gray[5:40, 70:140]  # beside the mullion, above the head
    assert window.min() >= 230
    x, y, s = (round(v) for v in lit.box)
    face_lit = lit.gray[y + s // 4 : y + 3 * s // 4, x + s // 4 : x + 3 * s // 4].mean()
    face_before = before.gray[y + s // 4 : y + 3 * s // 4, x + s // 4 : x + 3 * s // 4].mean()
    assert abs(face_lit / face_before - 0.4) < 0.05


def test_a_passer_can_cross_at_the_empty_seat_at_a_share_of_the_clerks_size() -> None:
    p = scenes.Passer(0, 1000, 0, at_seat=True, scale=0.5)
    assert p.placed(GEO) == (GEO.seat_y, 30.0)
    assert scenes.Passer(0, 1000, 0, size=34, y=60).placed(GEO) == (60, 34)
    out = frames(scenes.script([("away", 1000)], passers=[p]), noise=0.0)
    assert not out[5].present and out[5].box is None  # a citizen is not the clerk
    # Half-way across, the passer's (flat, 120) face is centred on the seat.
    assert np.all(out[5].gray[145:155, 155:165] == 120)


def test_a_segment_can_swap_the_face_for_a_covered_one() -> None:
    cover = np.full((64, 64), 220, np.uint8)
    sc = scenes.script([scenes.Segment("seated", 500, 0), scenes.Segment("seated", 500, 1)])
    out = list(
        scenes.compose(sc, [FACE, cover], rng=np.random.default_rng(1), geometry=GEO, noise=0)
    )
    assert [f.face for f in out] == [0] * 5 + [1] * 5
    assert out[7].gray[150, 160] > out[2].gray[150, 160] + 50
