"""Who may sign in at a centre's terminals: the clerk directory, as salted hashes only.

Part of the shared contract: the server builds it (``warmwindow clerks directory``) from
the credentials managers enrol, and the terminal's ``agent.signin`` looks badges and PINs
up in it. ``credential_digest`` is SHA-256 over the method, the site slug, the
directory's random ``salt`` and the normalised value, so no plain number is stored and
digests from one directory match nothing in another. Salting cannot make short secrets
safe from someone holding the directory (a 4-6 key PIN is one of under 20,000), so the
directory travels only to that centre's terminals.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from agent.protocol import ClerkId, Slug

Method: TypeAlias = Literal["badge", "pin"]
Refusal: TypeAlias = Literal["unknown", "other_centre"]
#: A salted SHA-256, lower-case hex.
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
#: The directory's random salt: 16 to 64 bytes, lower-case hex.
Salt = Annotated[str, Field(pattern=r"^[0-9a-f]{32,128}$")]

PIN_KEYS: Final = "12345"
PIN_LENGTHS: Final = range(4, 7)
_BADGE = re.compile(r"^[0-9A-Z]{1,32}$")
_PIN = re.compile(rf"^[{PIN_KEYS}]{{{PIN_LENGTHS.start},{PIN_LENGTHS.stop - 1}}}$")


def valid_badge(number: str) -> bool:
    """A badge number a reader can type: 1-32 letters or digits (once normalised)."""
    return bool(_BADGE.match(normalise_badge(number)))


def valid_pin(pin: str) -> bool:
    """A PIN the panel can type: 4-6 presses of its keys."""
    return bool(_PIN.match(pin))


def normalise_badge(number: str) -> str:
    """A badge number as it is hashed: without surrounding space, upper case."""
    return number.strip().upper()


def credential_digest(site: str, salt: str, method: Method, value: str) -> str:
    """The salted SHA-256 of one credential (badge numbers normalised first)."""
    if method == "badge":
        value = normalise_badge(value)
    data = "\x00".join(("warmwindow-clerk-credential-v1", method, site, salt, value))
    return hashlib.sha256(data.encode()).hexdigest()


# --------------------------------------------------------------------------- directory


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClerkCredentials(_Model):
    """One clerk of this centre and the hashes of what signs them in."""

    clerk_id: ClerkId = Field(description="Staff id (the roster's and the queue system's).")
    badges: tuple[Digest, ...] = Field(
        (), max_length=8, description="Digests of the clerk's badge numbers (a replacement too)."
    )
    pin: Digest | None = Field(None, description="Digest of the clerk's panel PIN; None: none.")


class ClerkDirectory(_Model):
    """Who may sign in at this centre's terminals, as salted hashes only.

    Loaded from JSON (``model_validate_json``; it will come with the retained config);
    ``build`` makes one from plain values::

        ClerkDirectory.build("qingpu", {"c-li": Credentials(badges=("0012345678",),
                             pin="1234")}, elsewhere=["0099000001"])
    """

    site: Slug = Field(description="The centre's site slug; part of every digest.")
    salt: Salt = Field(description="This directory's random salt; part of every digest.")
    clerks: tuple[ClerkCredentials, ...] = Field(
        (), max_length=2_000, description="This centre's clerks: the ones who may sign in here."
    )
    elsewhere: frozenset[Digest] = Field(
        frozenset(),
        max_length=200_000,
        description="Digests of badges of the city's other centres' clerks, without their ids: "
        "refused as other_centre rather than unknown.",
    )

    _badges: dict[str, str] = PrivateAttr(default_factory=dict)
    _pins: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unambiguous(self) -> Self:
        _index(self)
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._badges, self._pins = _index(self)

    @property
    def clerk_ids(self) -> frozenset[str]:
        """The staff ids of this centre's clerks."""
        return frozenset(c.clerk_id for c in self.clerks)

    def digest(self, method: Method, value: str) -> str:
        return credential_digest(self.site, self.salt, method, value)

    def lookup(self, method: Method, value: str) -> Match:
        """Whom a badge number or PIN signs in, or why it is refused."""
        return self.lookup_digest(method, self.digest(method, value))

    def lookup_digest(self, method: Method, digest: str) -> Match:
        clerk = (self._badges if method == "badge" else self._pins).get(digest)
        if clerk is not None:
            return Match(clerk)
        if method == "badge" and digest in self.elsewhere:
            return Match(None, "other_centre")
        return Match(None, "unknown")

    @classmethod
    def build(
        cls,
        site: str,
        clerks: Mapping[str, Credentials],
        *,
        elsewhere: Iterable[str] = (),
        salt: str | None = None,
    ) -> ClerkDirectory:
        """A directory from plain badge numbers and PINs (the server's and the tests'
        helper); ``salt`` defaults to 16 fresh random bytes. ValueError names the clerk
        whose badge or PIN cannot be entered at a terminal."""
        salt = salt if salt is not None else secrets.token_hex(16)
        rows = []
        for clerk_id, cred in clerks.items():
            for badge in cred.badges:
                if not valid_badge(badge):
                    raise ValueError(f"a badge of {clerk_id} is not 1-32 letters or digits")
            if cred.pin is not None and not valid_pin(cred.pin):
                raise ValueError(f"the PIN of {clerk_id} is not 4-6 of the keys {PIN_KEYS}")
            rows.append(
                {
                    "clerk_id": clerk_id,
                    "badges": tuple(credential_digest(site, salt, "badge", b) for b in cred.badges),
                    "pin": None
                    if cred.pin is None
                    else credential_digest(site, salt, "pin", cred.pin),
                }
            )
        return cls.model_validate(
            {
                "site": site,
                "salt": salt,
                "clerks": rows,
                "elsewhere": frozenset(
                    credential_digest(site, salt, "badge", b) for b in elsewhere
                ),
            }
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """A clerk's plain badge numbers and PIN, for ``ClerkDirectory.build`` only."""

    badges: tuple[str, ...] = ()
    pin: str | None = None


def _index(d: ClerkDirectory) -> tuple[dict[str, str], dict[str, str]]:
    """Digest -> clerk id for badges and PINs; ValueError where one would be ambiguous."""
    badges: dict[str, str] = {}
    pins: dict[str, str] = {}
    seen: set[str] = set()
    for clerk in d.clerks:
        if clerk.clerk_id in seen:
            raise ValueError(f"clerk {clerk.clerk_id} is listed twice")
        seen.add(clerk.clerk_id)
        for digest in clerk.badges:
            other = badges.setdefault(digest, clerk.clerk_id)
            if other != clerk.clerk_id:
                raise ValueError(f"a badge of {clerk.clerk_id} is also {other}'s")
            if digest in d.elsewhere:
                raise ValueError(f"a badge of {clerk.clerk_id} is also listed elsewhere")
        if clerk.pin is not None:
            other = pins.setdefault(clerk.pin, clerk.clerk_id)
            if other != clerk.clerk_id:
                # Two clerks with one PIN: the terminal could not tell who typed it.
                raise ValueError(f"{clerk.clerk_id} and {other} have the same PIN")
    return badges, pins


@dataclass(frozen=True, slots=True)
class Match:
    """What a credential is: one of this centre's clerks, or refused and why."""

    clerk_id: str | None
    refused: Refusal | None = None
