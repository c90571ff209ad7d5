"""The installer's placement check: composed scenes saved as replay folders, judged by
``warmwindow vision check-placement`` run in-process; and the pure analysis on its own."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.vision import scenes
from agent.vision.cli import main
from agent.vision.detector import Face
from agent.vision.placement import PlacementCheck, PlacementConfig
from agent.vision.quality import QualityConfig

U8 = npt.NDArray[np.uint8]
EXAMPLE_SITE = Path(__file__).resolve().parents[2] / "firmware_config" / "sites" / "qingpu"
#: What the installer asks, shortened: sit, stand, sit again (25 s at 10 fps).
SIT_STAND_SIT: list[tuple[scenes.Pose, int]] = [
    ("seated", 10_000),
    ("standing", 7_000),
    ("seated", 8_000),
]


def replay(
    folder: Path,
    faces: list[U8],
    segments: Sequence[tuple[scenes.Pose, int]] = SIT_STAND_SIT,
    *,
    geometry: scenes.Geometry | None = None,
    lighting: Sequence[scenes.Lighting] = (),
    passers: Sequence[scenes.Passer] = (),
    seed: int = 0,
) -> Path:
    sc = scenes.script(segments, lighting=lighting, passers=passers)
    frames = scenes.compose(
        sc, faces, rng=np.random.default_rng(seed), geometry=geometry or scenes.Geometry()
    )
    assert scenes.save(frames, folder) > 0
    return folder


def check(capsys: pytest.CaptureFixture[str], folder: Path, *extra: str) -> tuple[int, str]:
    code = main(["check-placement", "--replay", str(folder), *extra])
    return code, capsys.readouterr().out


def statuses(out: str) -> dict[str, str]:
    """Each check's status (OK, CHANGE, UNKNOWN) by its title, read off the report."""
    rows = [ln for ln in out.splitlines() if ln.startswith("  ") and "->" not in ln]
    return {ln[10:28].strip(): ln.split()[0] for ln in rows}


@pytest.fixture(scope="module")
def faces(face_bank: Callable[..., list[U8]]) -> list[U8]:
    return face_bank(0, 2, 11)


def test_a_good_placement_is_ready(
    tmp_path: Path, faces: list[U8], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check(capsys, replay(tmp_path, faces, geometry=scenes.Geometry(rise=1.2)))
    assert code == 0, out
    assert "Verdict: READY" in out
    assert set(statuses(out).values()) == {"OK"}
    assert len(statuses(out)) == 9


def test_too_small_a_rise_names_the_posture_check(
    tmp_path: Path, faces: list[U8], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check(capsys, replay(tmp_path, faces, geometry=scenes.Geometry(rise=0.45)))
    assert code == 1, out
    assert "Verdict: CHANGE PLACEMENT" in out
    assert "Move the camera lower or closer" in out
    # Only the posture is wrong: the other checks still pass.
    assert {k for k, v in statuses(out).items() if v != "OK"} == {"standing/seated"}


def test_a_dark_scene_fails_the_exposure_check(
    tmp_path: Path, faces: list[U8], capsys: pytest.CaptureFixture[str]
) -> None:
    dark = [scenes.Lighting(0, 1, 0.25)]
    code, out = check(capsys, replay(tmp_path, faces, lighting=dark))
    assert code == 1, out
    assert statuses(out)["picture exposure"] == "CHANGE"
    assert "-> The picture is dark" in out


def test_an_empty_seat_cannot_be_judged(
    tmp_path: Path, faces: list[U8], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check(capsys, replay(tmp_path, faces, [("away", 20_000)]))
    assert code == 1, out
    assert statuses(out)["face found"] == "UNKNOWN"
    assert "the clerk's face in 0% of the frames" in out
    assert "Verdict: CANNOT JUDGE" in out


def test_json_carries_the_figures(
    tmp_path: Path, faces: list[U8], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = replay(tmp_path, faces, geometry=scenes.Geometry(rise=0.45, size=60))
    code, out = check(capsys, folder, "--json")
    report = json.loads(out)
    assert code == report["exit_code"] == 1
    assert report["verdict"] == "change placement"
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["posture"] == "change" and status["face"] == "ok"
    m = report["measures"]
    assert m["frames"] == 250 and m["fps"] == pytest.approx(10, rel=0.01)
    assert m["face_found_share"] > 0.9
    assert m["standing_rise"] == pytest.approx(0.45, abs=0.15)
    assert m["required_rise"] == pytest.approx(0.8)
    assert m["face_px"] == pytest.approx(60, rel=0.15)


def test_duration_cuts_the_replay_short(
    tmp_path: Path, faces: list[U8], capsys: pytest.CaptureFixture[str]
) -> None:
    """10 s of a sit-stand-sit replay is only the seated start: standing is not seen."""
    code, out = check(capsys, replay(tmp_path, faces), "--duration", "8", "--json")
    report = json.loads(out)
    assert report["measures"]["frames"] == 80
    assert {c["name"]: c["status"] for c in report["checks"]}["posture"] == "unknown"
    assert code == 1 and report["verdict"] == "cannot judge"


def test_bad_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-placement", "--replay", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["check-placement", "--replay", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err


# The pure analysis, with faces given rather than detected.


def frame(level: int, *, face: tuple[int, int, int] | None = None, face_level: int = 0) -> U8:
    """A textured picture of mean ``level``, optionally a face square at (x, y, size)."""
    rng = np.random.default_rng(level)
    img = np.clip(level + rng.normal(0, 25, (240, 320)), 0, 255).astype(np.uint8)
    if face is not None:
        x, y, s = face
        patch = face_level + rng.normal(0, 30, (s, s))
        img[y : y + s, x : x + s] = np.clip(patch, 0, 255).astype(np.uint8)
    return img


def test_a_backlit_face_is_named(tmp_path: Path) -> None:
    """Bright picture (a window behind), dark face: backlight, not a dark picture."""
    pc = PlacementCheck(asked_fps=10)
    box = (130, 90, 60)
    for t in range(0, 20_000, 100):
        pc.add(t, frame(200, face=box, face_level=70), [Face(130, 90, 60, 60, 0.9)])
    r = pc.report()
    exp = r.check("face_exposure")
    assert exp.status == "change" and "backlit" in exp.instruction
    assert r.check("frame_exposure").status == "ok"
    assert r.check("posture").status == "unknown"  # never stood
    assert r.verdict == "change placement"


def test_a_small_face_near_the_edge_and_a_rival_face() -> None:
    pc = PlacementCheck(asked_fps=10)
    clerk = Face(10, 100, 30, 30, 0.9)  # 9 % of the width, centre at 8 %
    rival = Face(200, 60, 26, 26, 0.9)  # a citizen at 0.87 of the clerk's size
    for t in range(0, 20_000, 100):
        faces = [clerk, rival] if 5000 <= t < 10_000 else [clerk]
        pc.add(t, frame(120, face=(10, 100, 30), face_level=120), faces)
    r = pc.report()
    assert r.check("face_size").status == "change"
    assert "Move the camera closer" in r.check("face_size").instruction
    assert r.check("position").status == "change" and "left edge" in r.check("position").instruction
    assert r.check("face").status == "ok"  # the clerk, not the citizen, was followed
    other = r.check("other_faces")
    assert other.status == "change" and "50 frames" in other.instruction


def test_a_covered_lens_and_a_slow_camera() -> None:
    pc = PlacementCheck(asked_fps=10)
    for t in range(0, 10_000, 400):  # 2.5 fps of the 10 asked
        pc.add(t, np.full((240, 320), 8, np.uint8), [])
    r = pc.report()
    assert "almost uniform" in r.check("frame_exposure").instruction
    rate = r.check("frame_rate")
    assert rate.status == "change" and "2.5 fps" in rate.instruction
    assert r.verdict == "change placement" and r.exit_code == 1


def test_done_counts_from_the_first_frame() -> None:
    pc = PlacementCheck(PlacementConfig(duration_ms=1000))
    assert not pc.done(5000)
    pc.add(5000, frame(120), [])
    assert not pc.done(5999) and pc.done(6000)


def test_a_window_camera_gets_the_instructions(
    tmp_path: Path, faces: list[U8], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--site``/``--window`` opens the window's camera through the agent's factory (a
    replay camera here, at its recorded pace) and tells the clerk what to do."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE_SITE, site)
    frames = replay(tmp_path / "cam", faces, [("seated", 2000)])
    w01 = site / "windows" / "w01.toml"
    w01.write_text(
        w01.read_text(encoding="utf-8").replace(
            'source = "picamera2"', f'source = "replay"\ndevice = "{frames.as_posix()}"'
        ),
        encoding="utf-8",
    )
    code = main(["check-placement", "--site", str(site), "--window", "w01", "--duration", "5"])
    out = capsys.readouterr().out
    assert "[ 0 s] Sit in your usual place" in out
    assert "Now stand up" not in out  # the recording ended before 20 s
    assert code == 1 and statuses(out)["standing/seated"] == "UNKNOWN"


def test_ready_means_inside_the_pipelines_own_limits() -> None:
    """Every exposure limit of the check is stricter than where the pipeline stops
    reading the view or the face (agent.vision.quality), so a ready camera has margin."""
    p, q = PlacementConfig(), QualityConfig()
    assert p.frame_dark > q.view_dark_mean and p.uniform_std > q.view_flat_std
    assert p.saturated_share < q.view_glare_share
    assert p.face_dark > q.face_dark_mean and p.face_bright < q.face_bright_mean
    assert p.face_flat > q.face_flat_std
