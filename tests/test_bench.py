"""benchmarks/suite.py runs every part of benchmarks/bench.py (--quick: toy sizes), so a GPU
run's one shot at it is not spent on a broken script; benchmarks/make_doc.py renders its JSON."""

import json
import re

from conftest import REPO, run_cli


def test_suite_quick_measures_every_part_and_writes_json(tmp_path):
    r = run_cli("benchmarks/suite.py", "--quick", "--results_dir", str(tmp_path), "--device", "cpu")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (out,) = tmp_path.glob("*-quick.json")
    results = json.loads(out.read_text())
    assert results["device_type"] == "cpu" and results["torch"] and results["plan"] == "quick"
    parts = results["parts"]
    assert list(parts) == ["train", "data", "e2e", "inference", "quality", "video"]
    assert all(p["status"] == "ok" for p in parts.values()), {k: p["status"] for k, p in parts.items()}
    paths = {(row["what"], row["path"]) for p in parts.values() for row in p["rows"]}
    assert ("train batch 2", "reference (eager fp32)") in paths
    for label in ("fast fp32", "fast bf16", "fast fp32 CL", "fast fp32 CL vgg only"):
        assert ("train batch 2", label) in paths, label
    assert ("data loader", "decode JPEG (draft mode)") in paths and ("data loader", "pre-resized cache") in paths
    (loop,) = parts["e2e"]["rows"]
    assert "prepare cache" in loop["path"] and re.search(r"img/s \(waited for data \d+%\)", loop["result"])
    assert [row["what"] for row in parts["inference"]["rows"]] == ["stylize 32 x 32"] * 2 + ["stylize 40 x 24"] * 2
    psnrs = {row["path"]: row["value"] for row in parts["quality"]["rows"]}
    assert psnrs["bf16 stylizer vs eager fp32"] >= 40 and psnrs["fp32 stylizer vs eager fp32"] >= 100
    for p in parts.values():
        for row in p["rows"]:
            assert row["value"] is not None and row["unit"] in ("img/s", "ms", "dB", "frames/s"), row
            assert "GiB" in row["peak_memory"]
    assert "| train | train batch 2 | reference (eager fp32) |" in r.stdout


def test_make_doc_renders_every_results_file(tmp_path):
    results = {"device": "Test GPU", "device_type": "cuda", "torch": "2.14.1", "cuda": "12.8", "date": "2026-12-01",
               "plan": "gpu", "cpu_threads": 16, "python": "3.12",
               "parts": {"train": {"status": "ok", "seconds": 1.0, "command": "--only train", "rows": [
                   {"what": "train batch 16", "path": "fast bf16", "result": "1234.5 img/s", "value": 1234.5,
                    "unit": "img/s", "peak_memory": "3.00 GiB GPU"}]},
                         "video": {"status": "timed out after 30 s", "seconds": 30, "command": "--only video",
                                   "rows": []}}}
    (tmp_path / "2026-12-01-test-gpu.json").write_text(json.dumps(results))
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\nafter\n")
    r = run_cli("benchmarks/make_doc.py", "--results_dir", str(tmp_path), "--doc", str(doc))
    assert r.returncode == 0, r.stderr
    text = doc.read_text()
    assert "old" not in text and text.startswith("# Benchmarks\n\nintro") and text.rstrip().endswith("after")
    assert "| Test GPU | train | train batch 16 | fast bf16 | 1234.5 img/s | 3.00 GiB GPU |" in text
    assert "video: timed out after 30 s" in text and "torch 2.14.1, CUDA 12.8" in text
    assert (REPO / "docs" / "benchmarks.md").read_text().count("<!-- results:start -->") == 1
