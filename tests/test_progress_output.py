"""What training shows in a terminal: the lines around the progress bar in order, and a bar that
stays readable at 80 and 120 columns."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import sys
import termios
import threading
from contextlib import contextmanager
from typing import Iterator

from fast_nst.commands.train import main as train_main
from fast_nst.training.monitor import MIN_BAR_COLUMNS, ProgressBar, progress_fields

BAR = re.compile(r"\d+%\|")  # what every drawing of a tqdm bar holds


@contextmanager
def stderr_on_a_terminal(columns: int) -> Iterator[list[bytes]]:
    """sys.stderr on a pseudo-terminal ``columns`` wide, as in a real terminal (tqdm asks it for
    its width); yields the list that receives everything written to it once the block ends."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    received: list[bytes] = []

    def drain() -> None:  # a pty holds only a few KB: read while training writes
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer has closed it
                return
            if not data:
                return
            received.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    terminal = open(slave, "w", encoding="utf-8", buffering=1)
    previous, sys.stderr = sys.stderr, terminal
    try:
        yield received
    finally:
        sys.stderr = previous
        terminal.close()
        reader.join(timeout=30)
        os.close(master)


def _runs(text: str, header: str) -> list[str]:
    """The output of each training run in ``text``: from its header line to the next one."""
    starts = [m.start() for m in re.finditer(re.escape(header), text)]
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def test_header_bar_and_summary_come_in_order_in_a_terminal(tiny_config):
    """The header before the bar starts, the summary on its own line after the bar's last
    drawing, no bar drawn after it; the same on --resume."""
    conf = tiny_config("barcheck", max_steps=1, num_samples=0, image_log_every=100, checkpoint_every=100)
    with stderr_on_a_terminal(120) as received:
        assert train_main(["-c", str(conf)]) == 0
        assert train_main(["-c", str(conf), "--resume", "--set", "max_steps=2"]) == 0
    # The terminal turns "\n" into "\r\n"; tqdm redraws its line after "\r".
    text = b"".join(received).decode("utf-8").replace("\r\n", "\n")
    assert not BAR.search(text.split("Training barcheck on cpu")[0])  # nothing drawn before the header
    runs = _runs(text, "Training barcheck on cpu")
    assert len(runs) == 2, text
    for run, steps in zip(runs, ("steps 0 -> 1", "steps 1 -> 2")):
        header, rest = run.split("\n", 1)
        assert steps in header and not BAR.search(header), run
        assert "\nDone: " in rest, run  # the summary starts a line of its own
        bar, summary = rest.split("\nDone: ", 1)
        assert BAR.search(bar) and "100%|" in bar.split("\r")[-1], run  # the last drawing: 100 %
        assert not BAR.search(summary) and "%|" not in summary, run  # no bar after the summary
    assert "(resumed at step 1, now at step 2)" in runs[1]


def _line(columns: int, name: str, val: float | None = None) -> str:
    """The bar's line mid-run of a default-length run (41,390 steps) at ``columns`` columns."""
    means = {"total": 374936.2, "content": 123456.7, "style": 234567.8, "tv": 1234.5}
    fields = progress_fields(means, 12.3, 0.03, val)
    postfix = " ".join(f"{k}={v}" for k, v in fields.items())
    return ProgressBar.format_meter(20000, 41390, 3600.0, ncols=columns, prefix=name, unit="step",
                                    postfix=postfix)


def _bar_width(line: str) -> int:
    return len(line.split("|")[1])


def test_the_bar_stays_readable_at_80_and_120_columns():
    for columns in (80, 120):
        for name in ("wave", "rain_princess"):
            line = _line(columns, name, val=380000.1)
            assert len(line) <= columns, line
            assert "loss=3.749e5" in line and line.endswith("]"), line  # the total loss, uncut
            assert _bar_width(line) >= MIN_BAR_COLUMNS, line
            assert "20000/41390" in line and "<1:04:10" in line, line  # progress and time left
    wide = _line(120, "wave")
    assert all(f"{k}=" in wide for k in ("loss", "content", "style", "tv")), wide
    # Fields go from the end: whatever is shown is a prefix of the full list.
    narrow = _line(80, "wave", val=380000.1).split("<1:04:10, ")[1].rstrip("]")
    full = _line(400, "wave", val=380000.1).split("<1:04:10, ")[1].rstrip("]")
    assert full.startswith(narrow) and full.endswith("data_wait=3%") and narrow.startswith("loss=3.749e5 val=3.8e5")


def test_progress_fields_put_the_total_loss_first():
    fields = progress_fields({"total": 0.1234567, "content": 2e-7, "style": 1234567.0, "tv": 0.0}, 8.25, 0.5, 3.0)
    assert list(fields) == ["loss", "val", "content", "style", "tv", "img_s", "data_wait"]
    assert fields == {"loss": "0.1235", "val": "3", "content": "2e-7", "style": "1.23e6", "tv": "0",
                      "img_s": "8.2", "data_wait": "50%"}
