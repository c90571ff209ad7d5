"""Shared contract: the format of a signed update bundle (a zip file).

::

    manifest.json   what is in it: format, version, serial, targets, files (path, sha256, size)
    manifest.sig    the Ed25519 signature of manifest.json's exact bytes (64 bytes)
    files/<path>    the payload: model files, or a settings bundle's overrides.json

``server/bundles.py`` builds and signs bundles; ``agent/update.py`` verifies and installs
them. Both import this module and nothing else of each other.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

BUNDLE_FORMAT: Final = 1
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
FILES: Final = "files/"
ZIP_MAGIC: Final = b"PK\x03\x04"
#: Model bundles are a few MB; anything much larger is refused before it is unpacked.
MAX_BUNDLE_BYTES: Final = 64 * 1024 * 1024

_SAFE_PATH = re.compile(
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,3}$"
)


class Closed(BaseModel):
    """Base of the bundle's documents: closed, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(Closed):
    path: Annotated[str, Field(pattern=_SAFE_PATH.pattern)] = Field(
        description="Relative POSIX path inside the release (no '..', no leading '/')."
    )
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: int = Field(ge=0, le=MAX_BUNDLE_BYTES)


class Manifest(Closed):
    format: Literal[1] = Field(1, description="Bundle format version.")
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")] = Field(
        description="Human version, e.g. 'fd1-smile-cf87e06a'; reported in health."
    )
    serial: int = Field(ge=1, description="Monotonic; a terminal never installs a lower one.")
    created_ms: int = Field(ge=0)
    targets: tuple[str, ...] = Field(
        (), max_length=4096, description="'site/window' identities; empty = every terminal."
    )
    files: tuple[FileEntry, ...] = Field(min_length=1, max_length=64)
    kind: Literal["models", "settings"] = Field(
        "models",
        description="What the bundle carries: models (on the window's config topic) or "
        "settings (overrides.json, on its settings topic). Left out of a models "
        "manifest, so terminals of before settings bundles take it as they always did.",
    )


def manifest_bytes(manifest: Manifest) -> bytes:
    """The exact bytes that are signed: a models manifest without ``kind``."""
    exclude = {"kind"} if manifest.kind == "models" else None
    return manifest.model_dump_json(indent=1, exclude=exclude).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_bundle(payload: bytes) -> bool:
    """Whether a ``config`` payload is a bundle (zip) rather than something else."""
    return payload.startswith(ZIP_MAGIC)
