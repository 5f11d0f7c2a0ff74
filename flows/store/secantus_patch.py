"""Work-around for a SecantusDB 0.7.0b3 range-query bug on compound indexes (issue 19, finding 3).

**The bug.** With an index on ``(a, b, c)``, a filter ``{a: "k", b: {$lte: 2}}`` walks the index from
the prefix ``a = "k"`` and stops at the first entry whose key is greater than ``("k", 2)``. But when
``b`` is not the index's last field every entry with ``b = 2`` is ``("k", 2, c...)``, which sorts
*after* ``("k", 2)``, so the walk stops before them: the documents with ``b = 2`` are silently
missing (3 answers instead of 6 in the issue's example). The same happens for ``$gte`` / ``$gt``
+ ``$lt`` pairs on a descending field (the server flips them into an inclusive upper bound). The
planner code is ``Storage._range_scan_index`` (called by ``_try_compound_range_id_keys``); the
server's own leading-field scan (``_range_scan_index_leading``) already has the right rule.

**The fix.** :func:`_range_scan_index` below is the upstream method with one change: an inclusive
upper bound also accepts the entries that *start with* the bound followed by the compound-key
separator (the same test ``_range_scan_index_leading`` uses). It never stops earlier than the
original, so it returns a superset of the original's candidates; the server checks every candidate
against the full filter (``matches()``) after the index walk, so extra candidates cannot change an
answer, and the ones that were missing are now there.

**Where it applies.** :func:`apply` patches the ``Storage`` class in the current process. The
embedded server is started as ``python -m flows.store.secantusd`` (``flows.store.embedded.start_server``), which
applies it before running the ``secantusd-py`` main; the test fixture in ``tests/conftest.py`` calls it
before starting its in-process server. A server started directly with ``secantusd-py`` (or a real
MongoDB) does not get it.

**Dropping it.** ``tests/flows/test_secantus_patch.py::test_the_unpatched_server_still_has_the_bug``
fails as soon as an installed SecantusDB answers correctly without the patch. Then delete this
module and ``flows/store/secantusd.py``, point ``flows.store.embedded`` back at ``secantusd-py``, remove the
``apply()`` call in ``tests/conftest.py``, and keep the regression test (``test_compound_range_...``).
The patch is only applied to the versions in :data:`AFFECTED_VERSIONS`.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: SecantusDB versions known to have the bug (the patch is a copy of this version's method).
AFFECTED_VERSIONS = frozenset({"0.7.0b3"})

_ORIGINAL_ATTR = "_alflow_original_range_scan_index"


def _range_scan_index(
    self: Any,
    db: str,
    coll: str,
    name: str,
    lower: bytes | None,
    lower_inclusive: bool,
    upper: bytes | None,
    upper_inclusive: bool,
    *,
    prefix: bytes | None = None,
) -> list[int]:
    """``secantus.storage.Storage._range_scan_index`` (0.7.0b3) with the inclusive-upper-bound fix.

    Returns the RecordIds of the index entries of ``name`` between ``lower`` and ``upper`` (encoded
    index keys; ``None``: unbounded), restricted to keys starting with ``prefix`` when given.
    """
    import wiredtiger as wt
    from secantus.sortkey import COMPOUND_SEP
    from secantus.storage import _ENTRY_SEP, _IDX_ENTRIES_TABLE, _escape_kb, _unpack_entry

    c = self._cursor(_IDX_ENTRIES_TABLE)
    esc_prefix = _escape_kb(prefix) if prefix is not None else None
    esc_lower = _escape_kb(lower) if lower is not None else None
    esc_upper = _escape_kb(upper) if upper is not None else None
    # alflow fix: entries whose field equals the upper bound but carry further compound fields
    upper_eq_prefix = esc_upper + _escape_kb(COMPOUND_SEP) if esc_upper is not None else None
    if esc_lower is not None:
        seed = esc_lower + _ENTRY_SEP
    elif esc_prefix is not None:
        seed = esc_prefix
    else:
        seed = b""
    c.set_key(db, coll, name, seed)
    rc = c.search_near()
    if rc == wt.WT_NOTFOUND:
        return []
    if rc < 0 and c.next() != 0:
        return []
    out: list[int] = []
    while True:
        k = c.get_key()
        if (k[0], k[1], k[2]) != (db, coll, name):
            break
        packed = bytes(k[3])
        row_esc, row_id = _unpack_entry(packed)
        if esc_prefix is not None and not row_esc.startswith(esc_prefix):
            break
        if esc_lower is not None and not lower_inclusive and row_esc == esc_lower:
            if c.next() != 0:
                break
            continue
        if esc_upper is not None:
            if upper_inclusive:
                if row_esc > esc_upper and not row_esc.startswith(upper_eq_prefix):
                    break
            elif row_esc >= esc_upper:
                break
        if row_id is not None:
            out.append(row_id)
        if c.next() != 0:
            break
    return out


def installed_version() -> str:
    """The installed SecantusDB version string (``secantus.__version__``)."""
    import secantus

    return str(secantus.__version__)


def is_applied() -> bool:
    """True when :func:`apply` has patched ``Storage`` in this process."""
    from secantus.storage import Storage

    return hasattr(Storage, _ORIGINAL_ATTR)


def apply() -> bool:
    """Patch ``secantus.storage.Storage`` in this process (idempotent).

    Returns True if the patch is in place, False if the installed version is not in
    :data:`AFFECTED_VERSIONS` (then nothing is changed and a warning is logged).
    """
    from secantus.storage import Storage

    if is_applied():
        return True
    version = installed_version()
    if version not in AFFECTED_VERSIONS:
        log.warning(
            "SecantusDB %s: compound-range patch not applied (written for %s); "
            "run tests/flows/test_secantus_patch.py to check whether it is still needed",
            version,
            ", ".join(sorted(AFFECTED_VERSIONS)),
        )
        return False
    setattr(Storage, _ORIGINAL_ATTR, Storage._range_scan_index)
    Storage._range_scan_index = _range_scan_index
    return True


def remove() -> None:
    """Undo :func:`apply` (used by the test that checks the unpatched server still needs it)."""
    from secantus.storage import Storage

    original = Storage.__dict__.get(_ORIGINAL_ATTR)
    if original is not None:
        Storage._range_scan_index = original
        delattr(Storage, _ORIGINAL_ATTR)
