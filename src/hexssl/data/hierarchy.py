"""The class hierarchy of an image folder: ``hierarchy.csv`` and the labels it gives.

Rows are ``class,superclass[,name]`` (an optional header); :func:`assign_labels` turns the
scanned entries and that mapping into class and superclass labels.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from hexssl.data.scan import Entry
from hexssl.errors import DataError

HEADER = ["class", "superclass"]


_HEADER_WORDS = frozenset({"class", "superclass", "super", "name", "class_name", "label"})


def read_hierarchy(data: bytes, source: str) -> dict[str, str]:
    """Decode the bytes of a hierarchy.csv (UTF-8, with or without BOM) and parse them."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{source}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
            'save it as UTF-8 ("CSV UTF-8" in spreadsheet programs)'
        ) from None
    return parse_hierarchy(text, source)


def parse_hierarchy(text: str, source: str = "hierarchy.csv") -> dict[str, str]:
    """``class,superclass[,name]`` rows -> {class: superclass}.

    Reads what spreadsheet programs write (a UTF-8 BOM, CRLF line ends, quoted cells).
    An optional header must read ``class,superclass[,name]``; lines starting with ``#``
    are comments. Refuses rows of another width, empty cells and a class given two
    different superclasses (DataError naming the line).

    Example:
        >>> parse_hierarchy("class,superclass\\r\\ncat,animal\\r\\n")
        {'cat': 'animal'}
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    rows = [(reader.line_num, [c.strip() for c in r]) for r in reader]
    rows = [(n, r) for n, r in rows if any(r) and not r[0].startswith("#")]
    if rows and _is_header(rows[0][1], source):
        rows = rows[1:]
    out: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for line, row in rows:
        _check_row(row, line, source)
        klass, sup = row[0], row[1]
        if out.get(klass, sup) != sup:
            raise DataError(
                f"{source} line {line}: class {klass!r} has superclass {sup!r}, but line "
                f"{line_of[klass]} gives {out[klass]!r}; keep one row per class"
            )
        out[klass], line_of[klass] = sup, line_of.get(klass, line)
    return out


def _is_header(row: list[str], source: str) -> bool:
    """True for the header ``class,superclass[,name]``; any other header is refused."""
    lower = [c.lower() for c in row]
    if lower[:2] == HEADER and len(row) <= 3:
        return True
    if _HEADER_WORDS & set(lower):
        raise DataError(
            f"{source} line 1: header {','.join(row)!r} is not 'class,superclass[,name]'; "
            "rename its columns to that order (or drop the header row)"
        )
    return False


def _check_row(row: list[str], line: int, source: str) -> None:
    if len(row) not in (2, 3) or not row[0] or not row[1]:
        raise DataError(
            f"{source} line {line}: {row} is not a row 'class,superclass[,name]' "
            "(two or three cells, class and superclass not empty)"
        )


def assign_labels(
    entries: Sequence[Entry], hierarchy: dict[str, str], classes: Sequence[str] | None
) -> tuple[Tensor, Tensor, list[str], list[str]]:
    """Labels (sorted class names, like ImageFolder) and superlabels from the hierarchy.

    Shape:
        returns: labels (N,), superlabels (N,), class_names, superclass_names
    """
    found = {e.klass for e in entries if e.klass}
    class_names = list(classes) if classes is not None else sorted(found)
    if hierarchy and found:  # unlabeled trees have no class folders to match
        _warn_mismatch(found, hierarchy, classes is None)
    super_names = sorted({hierarchy[c] for c in class_names if c in hierarchy})
    class_idx = {c: i for i, c in enumerate(class_names)}
    super_of_class = [
        super_names.index(hierarchy[c]) if c in hierarchy else -1 for c in class_names
    ]
    unknown = sorted(found - set(class_idx))
    if unknown:
        warnings.warn(
            f"classes {unknown[:5]} are not in the class list; their labels are -1", stacklevel=3
        )
    labels = torch.tensor([class_idx.get(e.klass, -1) for e in entries], dtype=torch.long)
    lookup = torch.tensor([*super_of_class, -1], dtype=torch.long)  # index -1 -> -1
    return labels, lookup[labels], class_names, super_names


def _warn_mismatch(found: set[str], hierarchy: dict[str, str], train: bool) -> None:
    """Name class folders missing from hierarchy.csv, and (train split) listed classes
    without images, which are not counted as classes."""
    unlisted = sorted(found - set(hierarchy))
    if unlisted:
        warnings.warn(
            f"{len(unlisted)} class folder(s) missing from hierarchy.csv get no superclass "
            f"(-1): {unlisted[:10]}; add a row 'class,superclass' for each",
            stacklevel=4,
        )
    empty = sorted(set(hierarchy) - found)
    if empty and train:
        warnings.warn(
            f"hierarchy.csv lists {len(empty)} class(es) with no images, not counted as "
            f"classes: {empty[:10]}",
            stacklevel=4,
        )
