"""Merge a blender_matrix.sh results table into docs/blender-versions.md.

    python scripts/matrix_doc.py DOC RESULTS DAY

The table between `<!-- matrix:start -->` and `<!-- matrix:end -->` keeps one row per bpy version:
a version in RESULTS replaces its row (with DAY as the day it ran), the others stay, sorted by version.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_BLOCK = re.compile(r"(?s)<!-- matrix:start -->\n(.*?)<!-- matrix:end -->")
_HEADER = "| bpy | Blender | Python | tests/blender | tests/packaging | ran |\n| --- | --- | --- | --- | --- | --- |\n"


def _rows(table: str, day: str | None = None) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if re.fullmatch(r"\d+\.\d+\.\d+", cells[0]):
            rows[cells[0]] = cells[:5] + [day or (cells[5] if len(cells) > 5 else "")]
    return rows


def merge(doc: str, results: str, day: str) -> str:
    found = _BLOCK.search(doc)
    if not found:
        raise SystemExit("the page needs one <!-- matrix:start --> ... <!-- matrix:end --> block")
    rows = {**_rows(found.group(1)), **_rows(results, day)}
    body = "".join("| " + " | ".join(rows[v]) + " |\n" for v in sorted(rows, key=lambda v: tuple(map(int, v.split(".")))))
    return doc[: found.start()] + "<!-- matrix:start -->\n" + _HEADER + body + "<!-- matrix:end -->" + doc[found.end() :]


if __name__ == "__main__":
    doc_path, results_path, day = sys.argv[1:4]
    path = Path(doc_path)
    path.write_text(merge(path.read_text(encoding="utf-8"), Path(results_path).read_text(encoding="utf-8"), day), encoding="utf-8")
