"""Every benchmark in one command, each part in its own process with its own time limit (a hang
costs that part, not the rest), results as one JSON file and a markdown table.

    python benchmarks/suite.py                       # on whatever device it finds (GPU: < 8 min)
    python benchmarks/suite.py --data photos/         # your JPEGs instead of generated ones
    python benchmarks/suite.py --quick --results_dir /tmp/r   # toy sizes: does every part run?

Writes ``benchmarks/results/<date>-<device>.json`` (device, torch and CUDA versions, every row
with its settings) and prints the table; ``python benchmarks/make_doc.py`` turns every results
file into the tables of docs/benchmarks.md. Without ``--data`` it generates training JPEGs and
prepares their cache itself, so the loader is measured both decoding and from the cache.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import torch

HERE = Path(__file__).resolve().parent
# (part, bench.py arguments, seconds it may take on a GPU): 7.5 minutes in all, under the 8.
PARTS = (
    ("train", ["--only", "train", "--compile", "--channels_last"], 150),
    ("data", ["--only", "data"], 45),
    ("e2e", ["--only", "e2e", "--compile"], 120),
    ("inference", ["--only", "inference", "--compile"], 75),
    ("quality", ["--only", "quality", "--compile"], 30),
    ("video", ["--only", "video"], 30),
)
# --quick runs every part at toy sizes; a CPU run at bench.py's CPU sizes takes longer per part.
TIME_FACTOR = {"quick": 1.0, "cpu": 4.0, "gpu": 1.0}


def device_info(device: str) -> dict:
    cuda = device != "cpu" and torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine()),
        "device_type": "cuda" if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def run_part(name: str, args: list[str], timeout: float, common: list[str], workdir: Path) -> dict:
    """One part in a subprocess: its rows (what it measured before a time-out too), status, time."""
    rows_file = workdir / f"{name}.jsonl"
    cmd = [sys.executable, str(HERE / "bench.py"), *args, *common, "--json", str(rows_file)]
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        status = "ok" if r.returncode == 0 else f"error (exit {r.returncode}): {r.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    return {"status": status, "seconds": round(time.perf_counter() - t, 1), "command": " ".join(args), "rows": rows}


def prepare_data(folder: Optional[Path], tmp: Path, common: list[str], quick: bool) -> Path:
    """The photos for the loader and e2e parts, with their pre-resized cache prepared."""
    if folder is None:
        folder = tmp / "photos"
        subprocess.run([sys.executable, str(HERE / "bench.py"), *common, "--make_photos", str(folder)],
                       check=True, capture_output=True, text=True)
    size = "32" if quick else ("128" if not torch.cuda.is_available() else "256")  # bench.py's e2e size
    subprocess.run([sys.executable, "-m", "fast_nst.data", "prepare", str(folder), "--image_size", size],
                   check=True, capture_output=True, text=True)
    return folder


def table(results: dict) -> str:
    lines = [f"fast-nst benchmark suite on {results['device']} (torch {results['torch']}"
             + (f", CUDA {results['cuda']}" if results["cuda"] else "") + f"), {results['date']}",
             "", "| part | what | path | result | peak memory |", "| --- | --- | --- | --- | --- |"]
    for name, part in results["parts"].items():
        if part["status"] != "ok":
            lines.append(f"| {name} | ({part['status']}) | | | |")
        for row in part["rows"]:
            lines.append(f"| {name} | {row['what']} | {row['path']} | {row['result']} | {row['peak_memory']} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--data", type=Path, help="folder of JPEGs (default: generated)")
    p.add_argument("--quick", action="store_true", help="toy sizes: checks every part runs")
    p.add_argument("--results_dir", type=Path, default=HERE / "results")
    p.add_argument("--only", action="append", choices=[name for name, _, _ in PARTS])
    args = p.parse_args(argv)
    info = device_info(args.device)
    plan = "quick" if args.quick else ("gpu" if info["device_type"] == "cuda" else "cpu")
    results = {**info, "date": datetime.date.today().isoformat(), "plan": plan, "parts": {}}
    common = (["--quick"] if args.quick else []) + ["--device", info["device_type"] if args.device == "auto" else args.device]
    with tempfile.TemporaryDirectory() as tmp:
        folder = prepare_data(args.data, Path(tmp), common, args.quick)
        # A measuring run takes one part at a time (parts would share the device and distort each
        # other's numbers); --quick only checks that every part runs, two at once.
        with ThreadPoolExecutor(max_workers=2 if args.quick else 1) as pool:
            started = {}
            for name, part_args, seconds in PARTS:
                if args.only and name not in args.only:
                    continue
                extra = ["--data", str(folder)] if name in ("data", "e2e") else []
                if args.quick:  # compiling takes most of a toy run; the test suite checks compile itself
                    part_args = [a for a in part_args if a != "--compile"]
                started[name] = pool.submit(run_part, name, part_args + extra, seconds * TIME_FACTOR[plan],
                                            common, Path(tmp))
            for name, future in started.items():
                results["parts"][name] = future.result()
                print(f"{name}: {results['parts'][name]['status']} ({results['parts'][name]['seconds']} s)", flush=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", info["device"]).strip("-").lower() or "device"
    out = args.results_dir / f"{results['date']}-{slug}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    print(f"\nWrote {out}")
    return 0 if all(part["status"] == "ok" for part in results["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
