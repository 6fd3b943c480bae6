"""Render every ``benchmarks/results/*.json`` (written by benchmarks/suite.py) into the results
section of docs/benchmarks.md, between ``<!-- results:start -->`` and ``<!-- results:end -->``,
one table per results file with the device named on every row.

    python benchmarks/make_doc.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def render(results: dict, name: str) -> str:
    head = (f"### {results['device']} ({results['date']}; torch {results['torch']}"
            + (f", CUDA {results['cuda']}" if results.get("cuda") else "")
            + f"; plan {results['plan']}; `{name}`)")
    lines = [head, "", "| device | part | what | path | result | peak memory |", "| --- | --- | --- | --- | --- | --- |"]
    notes = []
    for part, body in results["parts"].items():
        if body["status"] != "ok":
            notes.append(f"- {part}: {body['status']}")
        for row in body["rows"]:
            lines.append(f"| {results['device']} | {part} | {row['what']} | {row['path']} | {row['result']} | "
                         f"{row['peak_memory']} |")
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results_dir", type=Path, default=HERE / "results")
    p.add_argument("--doc", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    files = sorted(f for f in args.results_dir.glob("*.json") if not f.stem.endswith("-quick"))
    sections = [render(json.loads(f.read_text()), f.name) for f in files]
    body = "\n\n".join(sections) if sections else "(no results yet: run python benchmarks/suite.py)"
    text = args.doc.read_text()
    if START not in text or END not in text:
        print(f"error: {args.doc} has no {START} ... {END} section", file=sys.stderr)
        return 1
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    args.doc.write_text(f"{before}{START}\n{body}\n{END}{after}")
    print(f"Wrote {len(sections)} results table(s) into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
