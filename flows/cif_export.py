"""CIF files of stored structures: one name and one header for every place that writes them (the
structure stage's folder, the campaign report, ``alflow structures export-cif``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def cif_file_name(doc: dict[str, Any]) -> str:
    """``<formula>__<verdict>__<template_id>`` of a ``structures`` document (``unjudged`` without a
    verdict; characters other than letters, digits and ``.-_`` become ``_``), without the suffix."""
    name = f"{doc['formula']}__{doc.get('verdict') or 'unjudged'}__{doc['template_id']}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def write_cif(doc: dict[str, Any], folder: Path) -> Path:
    """Write the CIF of a ``structures`` document (it must hold ``cif``) to ``folder`` as
    :func:`cif_file_name` ``.cif``, after a comment line with the verdict, E_form and E_hull (eV/atom)
    and the judge that computed them (the document's ``model``). Returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cif_file_name(doc)}.cif"
    head = (
        f"# alflow: {doc['formula']} verdict {doc.get('verdict')}, E_form {doc.get('e_form')} eV/atom, "
        f"E_hull {doc.get('e_hull')} eV/atom (judge: {doc.get('model') or 'unknown'})\n"
    )
    path.write_text(head + doc["cif"])
    return path
