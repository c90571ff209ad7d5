"""Properties that must hold for any input sequence, checked on seeded random scripts.

The scenario tests pin exact outcomes; these catch what no one thought to script:
a session without a summary, an event the wire would reject, time running backwards.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agent.config import Role
from agent.events import Draft
from agent.observation import Observation
from agent.protocol import Rating
from agent.rules import Call, Evaluation, Finish, Presence, Shutdown, Sign, Step, Tick
from tests.rules.script import CFG, rules, validate


def random_script(seed: int, steps: int = 250, presence: bool = False) -> list[Step]:
    """Random steps; with ``presence``, a front desk's sensor comes and goes too."""
    rnd = random.Random(seed)
    t = 0
    out: list[Step] = []
    for _ in range(steps):
        # Mostly short gaps (frames), sometimes long ones so every timeout fires.
        t += rnd.choice([0, 100, 500, 1_000, 2_999, 3_000, 5_000, 20_000, 90_000, 400_000])
        roll = rnd.random()
        if roll < 0.55:
            face = rnd.random() < 0.8
            out.append(
                Observation(
                    t_ms=t,
                    face_present=face,
                    smile=rnd.choice([None, 0.0, 0.3, 0.5, 0.8, 0.97, 0.99]) if face else None,
                    standing=rnd.choice([None, True, False]) if face else None,
                )
            )
        elif roll < 0.65:
            if presence and rnd.random() < 0.7:
                out.append((t, Presence(here=rnd.random() < 0.5)))
                continue
            out.append((t, Call(source=rnd.choice(["bell", "queue"]),
                                ticket=rnd.choice([None, "A1", "A2"]),
                                call_id=rnd.choice([None, None, "q-1", "q-2"]),
                                priority_category=rnd.choice([None, None, "elderly"]),
                                priority=rnd.random() < 0.2)))  # fmt: skip
        elif roll < 0.7:
            out.append((t, Finish()))
        elif roll < 0.82:
            out.append((t, Evaluation(rnd.choice(list(Rating)))))
        elif roll < 0.9:
            out.append((t, Sign(up=rnd.random() < 0.5)))
        else:
            out.append((t, Tick(in_hours=rnd.choice([None, None, True, False]))))
    out.append((t + 1, Shutdown()))
    return out


def check(drafts: list[Draft], front_desk: bool = False) -> None:
    times = [d.ts_ms for d in drafts]
    assert times == sorted(times), "events must come out in time order"
    for d in drafts:
        validate(d)

    opened = [d.session_id for d in drafts if d.kind.__name__ == "SessionOpened"]
    assert len(set(opened)) == len(opened)
    per_session: dict[object, Counter[str]] = {sid: Counter() for sid in opened}
    ratings: dict[object, list[Rating]] = {sid: [] for sid in opened}
    for d in drafts:
        if d.session_id is None:
            continue
        name = d.kind.__name__
        key = f"{name}:{d.fields['phase']}" if name in ("StoodUp", "Smiled") else name
        per_session[d.session_id][key] += 1
        if name == "Evaluated" and not d.fields["suspect"]:
            ratings[d.session_id].append(d.fields["rating"])
    for sid, counts in per_session.items():
        # After Shutdown every session is complete, with each outcome exactly once.
        assert counts["SessionOpened"] == 1
        assert counts["SessionSummary"] == 1, sid
        assert counts["StoodUp:greeting"] == counts["Smiled:greeting"] == 1, sid
        # A front desk judges no farewell; a window every time.
        farewells = 0 if front_desk else 1
        assert counts["StoodUp:farewell"] == counts["Smiled:farewell"] == farewells, sid
        assert len(ratings[sid]) <= 1
    for d in drafts:
        if d.kind.__name__ == "SessionSummary":
            f = d.fields
            valid = ratings[d.session_id]
            assert f["rating"] == (valid[0] if valid else None)
            assert f["opened_ms"] <= f["closed_ms"] <= d.ts_ms
            if front_desk:
                assert f["greeted_first"] is (f["stood_on_call"] and f["smiled_at_greeting"])
                assert f["smiled_at_farewell"] is None and f["stood_at_farewell"] is False
            else:
                assert f["greeted_first"] is None
                assert f["smiled_at_farewell"] is (f["farewell_smile_after_ms"] is not None)
            if f["priority_category"] is not None:
                assert f["priority"] is True
            see_off = f["see_off_ms"]
            if f["stood_at_farewell"]:
                # Passed: the full see-off, or cut short by the next call / shutdown.
                assert see_off is not None and see_off <= CFG.see_off_s * 1000
            else:
                # Failed: never stood in time, or sat down before the see-off time.
                assert see_off is None or see_off < CFG.see_off_s * 1000
        elif d.kind.__name__ == "Away":
            f = d.fields
            if f["ended_ms"] is None:
                assert f["violation"] is True
                assert d.ts_ms >= f["started_ms"] + CFG.away_after_s * 1000
            else:
                assert f["ended_ms"] - f["started_ms"] >= CFG.away_after_s * 1000
        elif d.kind.__name__ == "SignWhilePresent":
            assert d.fields["duration_ms"] >= CFG.sign_present_flag_s * 1000

    opens = Counter(
        d.fields["started_ms"]
        for d in drafts
        if d.kind.__name__ == "Away" and d.fields["ended_ms"] is None
    )
    assert all(n == 1 for n in opens.values())


@pytest.mark.parametrize("seed", range(40))
def test_random_scripts_keep_the_invariants(seed: int) -> None:
    check(rules().run(random_script(seed)))


@pytest.mark.parametrize("seed", range(20))
def test_random_front_desk_scripts_keep_the_invariants(seed: int) -> None:
    check(rules(role="front_desk").run(random_script(seed, presence=True)), front_desk=True)


def test_a_window_given_presence_behaves_as_without_it() -> None:
    for seed in range(10):
        script = random_script(seed, steps=120, presence=True)
        without = [s for s in script if not (isinstance(s, tuple) and isinstance(s[1], Presence))]
        assert rules().run(script) == rules().run(without)


@pytest.mark.parametrize("role", ["comprehensive", "front_desk"])
def test_random_scripts_do_not_depend_on_tick_density(role: Role) -> None:
    for seed in range(10):
        script = random_script(seed, steps=120, presence=role == "front_desk")
        # Drop ticks that carry no opening-hours change: outcomes must not move.
        sparse = [s for s in script if not (isinstance(s, tuple) and s[1] == Tick(in_hours=None))]

        def plain(drafts: list[Draft]) -> list[tuple[str, int, dict[str, object]]]:
            return [(d.kind.__name__, d.ts_ms, d.fields) for d in drafts]

        assert plain(rules(role=role).run(script)) == plain(rules(role=role).run(sparse))
