"""Untrusted text: which characters a rater may send, and how text leaves in a CSV export.

Comments may hold line breaks and tabs, never other control characters (NUL, escape
sequences, C1 codes): PostgreSQL refuses NUL in text, and terminals and spreadsheets act on
the others. Exported cells are quoted, stripped of control characters, and every formula
trigger (``= + - @``) at the start of the cell or after a separator (``, ; |`` or a line
break) gets a ``'`` in front, so no spreadsheet evaluates it (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["FORBIDDEN_CONTROL", "check_no_control", "safe_cell", "to_csv"]

FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 except \t \n, DEL, C1
_EXPORT_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # the same, and tab
_FORMULA = re.compile(r"(^|[,;|\n])(\s*)([=+\-@])")


def check_no_control(text: str) -> str:
    """``text`` unchanged, or ``ValueError`` naming the first control character.

    >>> check_no_control("sharp edges\\nlooks real")
    'sharp edges\\nlooks real'
    """
    found = FORBIDDEN_CONTROL.search(text)
    if found:
        raise ValueError(f"control character U+{ord(found.group()):04X} is not allowed")
    return text


def safe_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: control characters removed, formulas defused.

    Dicts and lists (e.g. display settings) become JSON text first.

    >>> safe_cell("x;=1+1"), safe_cell("=SUM(A1)"), safe_cell("a\\x00b"), safe_cell(3)
    ("x;'=1+1", "'=SUM(A1)", 'ab', 3)
    """
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True)
    if not isinstance(value, str):
        return value
    return _FORMULA.sub(r"\1\2'\3", _EXPORT_CONTROL.sub("", value))


def to_csv(rows: Iterable[Mapping[str, object]], fieldnames: Sequence[str]) -> str:
    """CSV text with every cell quoted and passed through :func:`safe_cell`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: safe_cell(v) for k, v in row.items()})
    return buf.getvalue()
