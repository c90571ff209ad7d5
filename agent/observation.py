"""What perception tells the rules, one frame (or scripted step) at a time."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Unseen(StrEnum):
    """Why something the rules need could not be seen in a frame."""

    #: The face is there but the mouth is not: a mask, a hand, a cup.
    MOUTH_COVERED = "mouth_covered"
    #: The face is turned too far for the mouth (or the smile) to be read.
    TURNED = "turned"
    #: The face is too dark, too bright or too blurred to read (backlight, glare).
    FACE_EXPOSURE = "face_exposure"
    #: No face found, but someone is at the seat (a turned or masked clerk).
    FACE_LOST = "face_lost"
    #: The camera cannot see the seat at all: a blocked lens, darkness, glare.
    VIEW = "view"


@dataclass(frozen=True, slots=True)
class Observation:
    """The clerk as seen at ``t_ms`` (device clock, UTC ms).

    ``smile`` and ``standing`` are None when they could not be seen: no clerk face
    (then ``face_present`` is False) or, for ``smile``, a face whose mouth cannot be
    read. ``standing`` is the debounced posture (hysteresis and minimum durations
    already applied).

    What is missing is "not observed", never a failure, unless the camera saw the seat
    empty: ``face_present`` False, ``view_ok`` True and ``seat_occupied`` False (the
    seat compared with what the clerk in it looks like) is an absent clerk, who neither
    stands nor smiles (``seen_empty``). ``seat_occupied`` True (someone is at the seat
    though no face is found, or may be: the body was seen there moments ago) or
    ``view_ok`` False (the camera sees nothing usable) make presence, posture and smile
    unknown; so does ``seat_occupied`` None (no seat cue) for a stand or a smile.

    The away rule is the one place where no face with no seat cue counts as absence
    (``seen_absent``): it needs ``away_after_s`` (60 s) of it without a break, and a
    clerk at the seat is found by the detector long before that; a window nobody came
    to in the morning must still be reported. ``unseen`` says why something was not
    seen, for health counters and the installer's check.
    """

    t_ms: int
    face_present: bool
    smile: float | None = None
    standing: bool | None = None
    view_ok: bool = True
    seat_occupied: bool | None = None
    unseen: Unseen | None = None

    @property
    def seen_absent(self) -> bool:
        """No clerk for the away rule: no face, a usable view, nobody seen at the seat."""
        return not self.face_present and self.view_ok and self.seat_occupied is not True

    @property
    def seen_empty(self) -> bool:
        """The camera saw the seat, and saw it empty."""
        return not self.face_present and self.view_ok and self.seat_occupied is False

    @property
    def smile_seen(self) -> bool:
        """The smile (or its absence) is known: a readable mouth, or an empty seat."""
        return self.seen_empty or (self.face_present and self.smile is not None)

    @property
    def posture_seen(self) -> bool:
        """The posture (or the clerk's absence) is known."""
        return self.seen_empty or (self.face_present and self.standing is not None)
