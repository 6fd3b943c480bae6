"""benchmarks/bench.py runs every path (--quick: toy sizes), so a GPU session's one shot at it is
not spent on a broken script."""

import re

from conftest import run_cli


def test_bench_quick_measures_every_path(tmp_path):
    out = tmp_path / "rows.md"
    r = run_cli("benchmarks/bench.py", "--quick", "--channels_last", "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    paths = [(what.lstrip("| "), path) for what, path, *_ in rows if what != "| what"]
    assert ("train batch 2", "reference (eager fp32)") in paths
    for label in ("fast fp32", "fast bf16", "fast fp32 CL", "fast fp32 CL vgg only"):
        assert ("train batch 2", label) in paths, label
    assert ("data loader", "decode JPEG (draft mode)") in paths
    loop = [value for what, _, value, _ in rows if what.lstrip("| ").startswith("train.py loop")]
    assert len(loop) == 1 and re.search(r"img/s \(waited for data \d+%\)", loop[0]), loop
    assert [w for w, _ in paths if w.startswith("stylize")] == ["stylize 32 x 32"] * 2 + ["stylize 40 x 24"] * 2
    for what, path, value, memory in rows[1:]:
        assert re.search(r"\d+(\.\d+)? (img/s|ms)", value), (what, path, value)
        assert "GiB" in memory
