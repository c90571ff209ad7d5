"""Tables to CSV and XLSX, safe to open in a spreadsheet.

* Every cell is flattened to a str, int, float, bool or None: nested records become
  dotted columns (``detail.misses``), lists are joined with "; ", anything else is
  its ``str``. openpyxl refuses lists and dicts (that was the alerts.xlsx 500: a
  conduct alert's ``detail.misses`` is a list).
* Text that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return) gets a leading single quote (OWASP CSV
  injection). Numbers stay numbers, negative ones included.
* ``content_disposition`` builds an RFC 6266 header from a name that has already been
  checked; it still refuses control characters and quotes rather than pass them on.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

Cell = str | int | float | bool | None
Row = dict[str, Cell]

#: First characters a spreadsheet takes as the start of a formula (or a DDE payload).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Control characters openpyxl refuses in a cell (it raises IllegalCharacterError).
_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def cell(value: Any) -> Cell:
    """One scalar cell value: lists joined, other objects as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return "; ".join(str(cell(x)) for x in items)
    return str(value)


def flatten(rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Nested mappings become dotted columns, at any depth; every value a scalar."""

    def walk(prefix: str, value: Any, out: Row) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, out)
        else:
            out[prefix] = cell(value)

    flat: list[Row] = []
    for r in rows:
        out: Row = {}
        walk("", r, out)
        flat.append(out)
    return flat


def neutralise(value: Cell) -> Cell:
    """Text that would start a formula, prefixed with a quote; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def columns(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def to_csv(rows: list[Row]) -> bytes:
    """UTF-8 with a BOM (Excel then opens Chinese text right); formulas neutralised."""
    buf = io.StringIO()
    cols = columns(rows)
    w = csv.writer(buf)
    w.writerow([neutralise(c) for c in cols])
    for r in rows:
        w.writerow(["" if (v := neutralise(r.get(c))) is None else v for c in cols])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _xlsx_text(value: Cell) -> Cell:
    value = neutralise(value)
    if isinstance(value, str):
        return _ILLEGAL_XLSX.sub("\ufffd", value)
    return value


def to_xlsx(rows: list[Row], title: str) -> bytes:
    """One sheet; numbers as numbers, text as text (never a formula)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = re.sub(r"[\[\]:*?/\\]", "_", title)[:31] or "table"
    cols = columns(rows)
    ws.append([_xlsx_text(c) for c in cols])
    for r in rows:
        ws.append([_xlsx_text(r.get(c)) for c in cols])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def content_disposition(filename: str) -> str:
    """``attachment`` with an RFC 6266 file name; ``filename*`` for non-ASCII names."""
    if any(ord(ch) < 0x20 or ch in '"\\;\x7f' for ch in filename) or not filename:
        raise ValueError(f"unsafe download name {filename!r}")
    if _SAFE_NAME.match(filename):
        return f'attachment; filename="{filename}"'
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
