"""Rebuild popular_distributions.txt: the most-downloaded PyPI distributions, most downloaded first, one
normalized name a line. Source: a tab-separated PyPI name list whose header names the columns `name` and
`rank_among_15000_most_downloaded` (the download rank, blank for the rest).

Usage: python tools/data/build_popular.py PYPI_TSV
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

OUT = Path(__file__).with_name("popular_distributions.txt")
RANK = "rank_among_15000_most_downloaded"


def main(source: str) -> None:
    csv.field_size_limit(1 << 24)
    ranked: dict[str, int] = {}
    with open(source, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if (row.get(RANK) or "").strip().isdigit():
                name = re.sub(r"[-_.]+", "-", row["name"]).lower()
                ranked[name] = min(int(row[RANK]), ranked.get(name, 1 << 30))
    names = sorted(ranked, key=lambda n: (ranked[n], n))
    header = (
        f"# The {len(names)} most-downloaded PyPI distributions, most downloaded first (tools/data/build_popular.py).\n"
    )
    OUT.write_text(header + "\n".join(names) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
