"""Reliability: what fast-nst does when data, files, signals, numbers or users misbehave.

Every case a user can hit runs the real command lines (``train.py`` / ``eval.py``) in a
process of its own, forked from a preloaded interpreter (``tests/forkrun.py``: the same process
without the ~4.5 s of imports each command would start with). A few failures can only be
simulated inside the process (a monkeypatched download, a forced NaN); a few extra checks of
pure error messages call the same CLI entry points (``fast_nst.commands.train.main`` /
``eval_main``) in-process.
See docs/reliability.md for the table of cases.

Speed: each case is a *scenario* (a function running its processes and returning what the
tests assert on). When this module starts, every scenario its selected tests need is started in
a background thread; the processes share ``PARALLEL`` slots, so both CPU cores stay busy while the
tests consume results in file order. A test only waits for its own scenario.
(``python train.py`` started as typed, with its interpreter's start-up: test_end_to_end.py.)
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import pickle
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import (assert_clean_error, assert_clean_in_process, fork_cli, in_process, make_photo,
                      tiny_values, write_config)
from forkrun import ForkedProcess

REPO = Path(__file__).resolve().parent.parent
NEEDS_NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
PARALLEL = (os.cpu_count() or 2) + 1  # one extra: the long runs mostly wait to be signalled


# ---- running subprocesses in shared slots -------------------------------------------------------

_SLOTS = threading.Semaphore(PARALLEL)
_TAKE = threading.Lock()


@contextmanager
def slots(n: int = 1):
    """Hold ``n`` of the ``PARALLEL`` subprocess slots (taken together, so no deadlock)."""
    with _TAKE:
        for _ in range(n):
            _SLOTS.acquire()
    try:
        yield
    finally:
        for _ in range(n):
            _SLOTS.release()


def cli(script: str, *args, **kwargs) -> subprocess.CompletedProcess:
    """:func:`conftest.fork_cli` in a slot."""
    with slots():
        return fork_cli(_STATE["zygote"], script, *map(str, args), **kwargs)


_COMMANDS = {"train.py": "fast_nst.commands.train", "eval.py": "fast_nst.commands.eval"}


def inline(script: str, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The command's ``main()`` in this process, its output captured: for cases that end in a
    message and an exit code, a subprocess's start-up (~3 s of CPU each) proves nothing more.
    Main thread only (signal handlers; ``cwd`` changes the process's folder for the call)."""
    assert threading.current_thread() is threading.main_thread(), "inline() runs commands in the main thread"
    main = importlib.import_module(_COMMANDS[script]).main
    out, err, previous = io.StringIO(), io.StringIO(), os.getcwd()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if cwd is not None:
                os.chdir(cwd)
            code = main([str(a) for a in args])
        finally:
            os.chdir(previous)
    return subprocess.CompletedProcess([script, *map(str, args)], code, out.getvalue(), err.getvalue())


def inline_many(jobs: dict[str, tuple]) -> dict[str, subprocess.CompletedProcess]:
    """:func:`run_many`'s jobs run one after another with :func:`inline`."""
    return {name: inline(job[0], *job[1], **(job[2] if len(job) > 2 else {})) for name, job in jobs.items()}


def run_many(jobs: dict[str, tuple]) -> dict[str, subprocess.CompletedProcess]:
    """Run ``{name: (script, [args], {fork_cli kwargs})}`` concurrently; {name: result}."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(cli, job[0], *job[1], **(job[2] if len(job) > 2 else {}))
                   for name, job in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


# ---- scenarios: started in the background when the module starts --------------------------------

@dataclass
class Ctx:
    base: Path  # a fresh folder for this scenario
    train_dir: Path  # conftest's twelve photos
    style_file: Path


_SCENARIOS: dict[str, Callable[[Ctx], object]] = {}
_NEEDS: dict[str, tuple[str, ...]] = {}
_STATE: dict = {}


def scenario(*needs: str):
    def register(fn):
        _SCENARIOS[fn.__name__] = fn
        _NEEDS[fn.__name__] = needs
        return fn
    return register


def result(name: str):
    """The scenario's return value (re-raising its failure), starting it now if not yet started."""
    futures: dict[str, Future] = _STATE["futures"]
    if name not in futures:
        futures[name] = _STATE["pool"].submit(_SCENARIOS[name], _STATE["ctx"](name))
    return futures[name].result()


@pytest.fixture(scope="module", autouse=True)
def _start_scenarios(request, tmp_path_factory, train_dir, style_file, zygote):
    mine = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    wanted = [n for n in _SCENARIOS if any(n in i.fixturenames for i in mine)]
    for name in list(wanted):
        wanted += [d for d in _NEEDS[name] if d not in wanted]
    _STATE.update(
        zygote=zygote,
        futures={},
        ctx=lambda name: Ctx(tmp_path_factory.mktemp(name), train_dir, style_file),
        pool=ThreadPoolExecutor(max_workers=len(_SCENARIOS), thread_name_prefix="scenario"),
    )
    for name in _SCENARIOS:  # registration order: longest dependency chains first
        if name in wanted:
            _STATE["futures"][name] = _STATE["pool"].submit(_SCENARIOS[name], _STATE["ctx"](name))
    yield
    _STATE["pool"].shutdown(wait=True, cancel_futures=True)
    _STATE.clear()


# ---- helpers ------------------------------------------------------------------------------------

@dataclass
class Run:
    """A config file and where its run writes: <model_path>/<naming>/."""

    conf: Path
    name: str
    model_path: Path

    @property
    def run_dir(self) -> Path:
        return self.model_path / self.name

    @property
    def model_file(self) -> Path:
        return self.run_dir / f"{self.name}.pth"

    def step_files(self) -> list[Path]:
        return sorted((self.run_dir / "checkpoints").glob("step_*.pth"))

    def args(self, *extra) -> list[str]:
        return ["-c", str(self.conf), "--no_progress", *map(str, extra)]


def tiny_run(base: Path, name: str, train_dir, style_file, **overrides) -> Run:
    """Config for a seconds-long CPU run (32 px, random loss network), written to base/conf/."""
    values = tiny_values(base / "models", train_dir, style_file,
                         **{"image_log_every": 100, "num_samples": 1, **overrides})
    conf = write_config(base / "conf" / f"{name}.yml", **values)
    return Run(conf, name, Path(values["model_path"]))


def assert_nothing_trained(run: Run) -> None:
    assert run.step_files() == [], run.step_files()
    assert not run.model_file.exists()


def read_ckpt(path: Path) -> dict:
    from fast_nst.io.checkpoint import read_checkpoint

    return read_checkpoint(path)


def ckpt_step(path: Path) -> int:
    return int(read_ckpt(path)["step"])


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = read_ckpt(a)["model_state"], read_ckpt(b)["model_state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6, rtol=0), k


def popen_train(run: Run, *args: str, log: Path, new_session: bool = False) -> ForkedProcess:
    """Start train.py in the background with its progress bar; stderr goes to ``log``."""
    return _STATE["zygote"].popen([REPO / "train.py", "-c", run.conf, *args], stderr=log,
                                  new_session=new_session)


def steps_shown(log: Path, total: int) -> int:
    """The highest step the tqdm bar printed ("  3/2000 [")."""
    found = re.findall(rf"(\d+)/{total} \[", log.read_text(errors="replace"))
    return max(map(int, found), default=0)


def wait_until(condition, proc: ForkedProcess, log: Path, timeout: float = 180,
               interval: float = 0.02):
    """Poll ``condition()`` until it is truthy; fail if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(interval)
    pytest.fail(f"timed out waiting for training progress:\n{log.read_text()[-3000:]}")


def stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def write_bad_files(folder: Path, seed: int = 0) -> list[Path]:
    """Zero-byte, truncated JPEG, text-named-.jpg and corrupt-PNG files; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    zero = folder / "zero_bytes.jpg"
    zero.write_bytes(b"")
    full = make_photo(folder / "tmp_full.jpg", (64, 64), seed=seed + 50).read_bytes()
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(full[: len(full) * 2 // 5])
    text = folder / "notes.jpg"
    text.write_text("this is not an image\n" * 20)
    png = bytearray(make_photo(folder / "tmp_full.png", (64, 64), seed=seed + 51).read_bytes())
    i = png.find(b"IDAT")
    for k in range(i + 8, min(len(png) - 12, i + 60)):
        png[k] ^= 0x5A  # scrambled compressed data: the header parses, decoding fails
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(bytes(png))
    (folder / "tmp_full.jpg").unlink()
    (folder / "tmp_full.png").unlink()
    return [zero, truncated, text, corrupt]


# =================================================================================================
# Scenarios (registration order = start order: the longest chains first)
# =================================================================================================

MODEL_NAME = "exact"  # naming of the straight run, whose model the eval.py cases use
# With the stability term and the weight average: its random motions, and the average with the
# weights it follows, must resume exactly too.
EXACT = dict(max_steps=6, checkpoint_every=2, keep_checkpoints=5, stability_weight=100.0, ema_decay=0.9)


@scenario()
def straight(ctx: Ctx) -> Run:
    """Run A: 6 steps without interruption (checkpoints 2, 4 and 6 kept). Its model is also the
    eval.py cases' model, and its step-2 checkpoint the start of the explicit-path resume and of
    the non-finite-loss case."""
    run = tiny_run(ctx.base, MODEL_NAME, ctx.train_dir, ctx.style_file, model_path=str(ctx.base / "A"), **EXACT)
    r = cli("train.py", *run.args())
    assert r.returncode == 0, r.stderr
    return run


@scenario("straight")
def exact(ctx: Ctx):
    """B: A's config for 3 steps, then --resume to 6. C: a new run folder resuming from A's
    step-2 checkpoint given by path."""
    b = tiny_run(ctx.base / "b", MODEL_NAME, ctx.train_dir, ctx.style_file, model_path=str(ctx.base / "B"), **EXACT)
    c = tiny_run(ctx.base / "c", MODEL_NAME, ctx.train_dir, ctx.style_file, model_path=str(ctx.base / "C"), **EXACT)
    first_b = cli("train.py", *b.args("--set", "max_steps=3"))  # needs nothing from A
    a = result("straight")
    second = run_many({
        "B": ("train.py", b.args("--resume", "--set", "max_steps=6")),
        "C": ("train.py", c.args("--resume", a.run_dir / "checkpoints" / "step_00000002.pth")),
    })
    return {"A": a, "B": b, "C": c}, first_b, second


@scenario()
def killed(ctx: Ctx):
    """P1 is SIGKILLed right after its first checkpoint appears. P2 resumes the run and is
    SIGKILLed while writing a checkpoint (as soon as its temporary file appears). P3 resumes again
    and finishes."""
    run = tiny_run(ctx.base, "killed", ctx.train_dir, ctx.style_file, max_steps=2000, checkpoint_every=1,
                   keep_checkpoints=3, log_every=1000, num_samples=0)
    folder = run.run_dir / "checkpoints"

    def entries():
        return os.listdir(folder) if folder.is_dir() else []

    def survivors():
        """{file name: step, or the error reading it} for every step_*.pth."""
        found = {}
        for p in run.step_files():
            try:
                found[p.name] = ckpt_step(p)
            except Exception as e:
                found[p.name] = f"{type(e).__name__}: {e}"
        return found

    out = {}
    with slots():
        logs = [ctx.base / "p1.log", ctx.base / "p2.log"]
        p1 = popen_train(run, log=logs[0])
        try:
            wait_until(lambda: any(re.fullmatch(r"step_\d+\.pth", n) for n in entries()), p1, logs[0],
                       interval=0.002)
            p1.kill()
            p1.wait(timeout=60)
        finally:
            stop([p1])
        out["p1"] = dict(code=p1.returncode, survivors=survivors())
        out["p1"]["newest"] = max((v for v in out["p1"]["survivors"].values() if isinstance(v, int)), default=None)
        p2 = popen_train(run, "--resume", log=logs[1])
        try:
            tmp = f".tmp{p2.pid}"
            seen = wait_until(lambda: [n for n in entries() if n.startswith(".step_") and n.endswith(tmp)],
                              p2, logs[1], interval=0.0005)
            p2.kill()
            p2.wait(timeout=60)
        finally:
            stop([p2])
        out["p2"] = dict(code=p2.returncode, seen=seen, log=logs[1].read_text(), survivors=survivors())
        out["p2"]["newest"] = max((v for v in out["p2"]["survivors"].values() if isinstance(v, int)), default=None)
    newest = out["p2"]["newest"]
    out["p3"] = cli("train.py", *run.args("--resume", "--set", f"max_steps={newest + 2}")) if newest else None
    return run, out


@scenario()
def interrupted(ctx: Ctx):
    """Two long runs stopped mid-training: SIGINT to the process group (Ctrl-C in a terminal) and
    SIGTERM to the main process (kill, systemd, Slurm); then the SIGINT run resumes.
    (Loader workers: see ctrl_c_workers.)"""
    common = dict(max_steps=2000, checkpoint_every=1000, log_every=1000, num_samples=0)
    runs = {"SIGINT": tiny_run(ctx.base, "sigint", ctx.train_dir, ctx.style_file, **common),
            "SIGTERM": tiny_run(ctx.base, "sigterm", ctx.train_dir, ctx.style_file, **common)}
    logs = {k: ctx.base / f"{k}.log" for k in runs}
    with slots(2):
        procs = {k: popen_train(r, log=logs[k], new_session=True) for k, r in runs.items()}
        try:
            for k in runs:
                wait_until(lambda: steps_shown(logs[k], 2000) >= 2, procs[k], logs[k])
                if k == "SIGINT":
                    os.killpg(procs[k].pid, signal.SIGINT)
                else:
                    procs[k].send_signal(signal.SIGTERM)
            for p in procs.values():
                p.wait(timeout=120)
        finally:
            stop(procs.values())
    saved, stopped = {}, {}
    for k, r in runs.items():
        saved[k] = r.step_files()
        stopped[k] = read_ckpt(saved[k][-1]) if saved[k] else None
        if stopped[k] is not None:
            stopped[k]["model_file_existed"] = r.model_file.exists()
    resumed = None
    if stopped["SIGINT"] is not None:
        resumed = cli("train.py", *runs["SIGINT"].args("--resume", "--set",
                                                       f"max_steps={stopped['SIGINT']['step'] + 2}"))
    return runs, procs, {k: logs[k].read_text() for k in runs}, saved, stopped, resumed


def child_pids(pid: int) -> list[int]:
    """Processes forked by ``pid`` that run the same command line (DataLoader workers)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and Path(f"/proc/{entry}/cmdline").read_bytes() == cmdline:
                kids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return kids


@scenario()
def ctrl_c_workers(ctx: Ctx):
    """Ctrl-C in a terminal reaches the DataLoader workers too. Deterministic worst case: SIGINT
    reaches the two workers first; ten steps later (or when training dies) the whole group gets it."""
    run = tiny_run(ctx.base, "workers", ctx.train_dir, ctx.style_file, num_workers=2, max_steps=2000,
                   checkpoint_every=1000, log_every=1000, num_samples=0)
    log = ctx.base / "train.log"
    with slots():
        p = popen_train(run, log=log, new_session=True)
        try:
            wait_until(lambda: steps_shown(log, 2000) >= 2, p, log)
            workers = wait_until(lambda: child_pids(p.pid), p, log)
            s0 = steps_shown(log, 2000)
            for w in workers:
                os.kill(w, signal.SIGINT)
            deadline = time.monotonic() + 60
            while p.poll() is None and steps_shown(log, 2000) < s0 + 10 and time.monotonic() < deadline:
                time.sleep(0.02)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
            p.wait(timeout=120)
        finally:
            stop([p])
    return run, p, log.read_text(), workers


def eval_errors(ctx: Ctx):
    """Every eval.py misuse at once (in-process, main thread): hostile, foreign and damaged model files, and bad inputs."""
    base = ctx.base
    model_file = result("straight").model_file
    photo = make_photo(base / "photo.jpg", (40, 32), seed=1)
    models = base / "models"
    models.mkdir()
    good = torch.load(model_file, map_location="cpu", weights_only=True)

    marker = base / "PWNED_by_model"
    torch.save({"format": "fast-nst", "payload": _Payload(marker)}, models / "hostile.pth")
    # The payload is live: loading such a file unsafely does create a file.
    probe = base / "probe_marker"
    torch.save(_Payload(probe), base / "probe.pth")
    torch.load(base / "probe.pth", weights_only=False)
    payload_live = probe.exists()

    (models / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    (models / "empty.pth").write_bytes(b"")
    (models / "text.pth").write_text("this is a text file, not a model\n")
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "conv1.bias": torch.zeros(8)}, models / "foreign.pth")
    torch.save({**good, "format_version": 99}, models / "newer.pth")
    torch.save({k: v for k, v in good.items() if k != "model_state"}, models / "missing_key.pth")
    state = dict(good["model_state"])
    state["encoder.0.1.weight"] = torch.zeros(16, 3, 9, 9)
    torch.save({**good, "model_state": state}, models / "wrong_shape.pth")

    inputs = base / "inputs"
    (inputs / "empty_folder").mkdir(parents=True)
    (inputs / "empty_folder" / "notes.txt").write_text("no images")
    (inputs / "text.jpg").write_text("not an image")
    full = make_photo(inputs / "full.jpg", (64, 64), seed=2).read_bytes()
    (inputs / "truncated.jpg").write_bytes(full[: len(full) // 3])
    big = make_photo(inputs / "big.png", (64, 64), seed=3)
    self_in = make_photo(inputs / "self.jpg", (40, 32), seed=4)
    (inputs / "sub").mkdir()
    blocker = base / "regular_file"
    blocker.write_text("a file, not a folder")
    mixed = inputs / "mixed"
    make_photo(mixed / "a.jpg", (40, 32), seed=5)
    make_photo(mixed / "b.png", (32, 24), seed=6)
    (mixed / "c.jpg").write_text("broken")
    out = base / "out"

    def ev(model, image, *extra, output=None):
        output = output or out / f"{Path(model).stem}_{Path(image).stem}.jpg"
        args = ["--model_file", model, "--image_file", image, "--device", "cpu", "--output_file", output]
        return ("eval.py", [*args, *extra])

    jobs = {name: ev(models / f"{name}.pth", photo) for name in (
        "hostile", "random", "empty", "text", "foreign", "newer", "missing_key", "wrong_shape")}
    jobs.update({
        "missing_image": ev(model_file, inputs / "no_such_photo.jpg"),
        "empty_folder": ev(model_file, inputs / "empty_folder", output=out / "from_empty"),
        "not_image": ev(model_file, inputs / "text.jpg"),
        "truncated_image": ev(model_file, inputs / "truncated.jpg"),
        "bomb": ev(model_file, big, "--max_image_pixels", "100"),
        "unwritable": ev(model_file, photo, output=blocker / "out.jpg"),
        "same_as_input": ev(model_file, self_in, output=inputs / "sub" / ".." / "self.jpg"),
        "folder_one_bad": ev(model_file, mixed, output=out / "mixed"),
    })
    before = {"self": self_in.read_bytes()}
    results = inline_many(jobs)
    return dict(base=base, out=out, models=models, results=results, marker=marker,
                payload_live=payload_live, before=before, photo=photo, model_file=model_file)


@scenario("straight")
def eval_formats(ctx: Ctx):
    """One folder run of eval.py over every awkward image kind, next to plain references."""
    model_file = result("straight").model_file
    src = ctx.base / "in"
    src.mkdir()
    grey8 = np.tile(np.linspace(40, 216, 40).round().astype(np.uint8), (32, 1))  # (32, 40) gradient
    Image.fromarray(grey8.astype(np.uint16) * 257).save(src / "grey16.png")  # mode I;16
    Image.fromarray(grey8).convert("RGB").save(src / "grey16_ref.png")
    Image.fromarray(np.full((32, 40), 128 * 257, np.uint16)).save(src / "midgrey16.png")
    Image.fromarray(np.full((32, 40), 128, np.uint8)).convert("RGB").save(src / "midgrey8_ref.png")
    Image.fromarray(np.full((32, 40), 255, np.uint8)).convert("RGB").save(src / "white_ref.png")
    photo = Image.open(make_photo(ctx.base / "photo.png", (40, 32), seed=8)).convert("RGB")
    photo.convert("L").save(src / "grey_l.png")
    photo.convert("L").convert("RGB").save(src / "grey_l_ref.png")
    photo.convert("CMYK").save(src / "cmyk.jpg", quality=100)
    photo.save(src / "cmyk_ref.png")
    rgba = photo.copy()
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 40).round().astype(np.uint8), (32, 1))))
    rgba.save(src / "rgba.png")
    pal = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    pal.save(src / "palette.png")
    pal.convert("RGB").save(src / "palette_ref.png")
    wide = Image.open(make_photo(ctx.base / "wide.png", (40, 24), seed=9)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: rotate 90 degrees clockwise to display
    wide.save(src / "exif6.jpg", exif=exif, quality=95)
    make_photo(src / "one.png", (1, 1), seed=10)
    make_photo(src / "three_by_seven.png", (3, 7), seed=11)
    out = ctx.base / "out"
    r = cli("eval.py", "--model_file", model_file, "--image_file", src, "--output_file", out, "--device", "cpu")
    return src, out, r


@scenario()
def rerun(ctx: Ctx):
    """A finished run (keep_checkpoints=2 of 5), then the same command again without flags, a
    --resume where there are no checkpoints, and finally --overwrite."""
    run = tiny_run(ctx.base, "again", ctx.train_dir, ctx.style_file, max_steps=5, checkpoint_every=1,
                   keep_checkpoints=2)
    first = cli("train.py", *run.args())
    assert first.returncode == 0, first.stderr

    def snapshot():
        return {p.name: p.read_bytes() for p in run.step_files() + [run.model_file] if p.exists()}

    before = snapshot()
    kept = {p.name: ckpt_step(p) for p in run.step_files()}
    errors = run_many({
        "again": ("train.py", run.args()),
        "no_ckpt": ("train.py", run.args("--set", "naming=fresh", "--resume")),
    })
    after_errors = snapshot()
    overwrite = cli("train.py", *run.args("--overwrite", "--set", "max_steps=1"))
    return run, before, kept, errors, after_errors, overwrite


@scenario("straight")
def blowup(ctx: Ctx):
    """--resume from a good step-2 checkpoint with a style weight that overflows float32, so the
    loss is infinite from step 3 on."""
    good = ctx.base / "saved" / "step_00000002.pth"
    good.parent.mkdir()
    shutil.copy(result("straight").run_dir / "checkpoints" / "step_00000002.pth", good)
    good_bytes = good.read_bytes()
    run = tiny_run(ctx.base, "blowup", ctx.train_dir, ctx.style_file, max_steps=4, checkpoint_every=1)
    r = cli("train.py", *run.args("--resume", good, "--set", "style_weight=1e300"))
    return run, good, good_bytes, r


@scenario()
def bad_data(ctx: Ctx):
    mixed = ctx.base / "mixed"
    for i in range(6):
        make_photo(mixed / f"good_{i}.jpg", (48, 40), seed=i)
    bad = write_bad_files(mixed)
    only_bad = ctx.base / "only_bad"
    write_bad_files(only_bad, seed=7)
    tiny = ctx.base / "tiny"
    for i, size in enumerate([(5, 7), (7, 5), (1, 1), (3, 2)]):
        make_photo(tiny / f"tiny_{i}.png", size, seed=i)
        make_photo(tiny / f"tiny_{i}.jpg", size, seed=i + 10)
    runs = {
        # 10 files, batch 2, 5 steps: exactly one epoch, so every file is read.
        # Two loader workers: the warnings must come back from worker processes.
        "mixed": tiny_run(ctx.base, "mixed", mixed, ctx.style_file, max_steps=5, num_workers=2),
        "only_bad": tiny_run(ctx.base, "only_bad", only_bad, ctx.style_file),
        "tiny": tiny_run(ctx.base, "tiny", tiny, ctx.style_file, max_steps=4),
    }
    results = run_many({k: ("train.py", r.args()) for k, r in runs.items()})
    return runs, results, bad, only_bad


def fail_fast(ctx: Ctx):
    """train.py's checks before step 1 (in-process, main thread)."""
    base = ctx.base
    (base / "empty_train").mkdir()
    (base / "empty_train" / "readme.txt").write_text("no photos here")
    not_image = base / "style_not_image.jpg"
    not_image.write_text("not a painting")
    blocker = base / "regular_file"
    blocker.write_text("a file, not a folder")

    def make(name, **kw):
        kw.setdefault("model_path", str(base / "models"))
        return tiny_run(base, name, kw.pop("train_dir", ctx.train_dir), kw.pop("style_file", ctx.style_file), **kw)

    runs = {
        "missing_train_dir": (make("missing_train_dir", train_dir=base / "no_such_dir"), []),
        "empty_train_dir": (make("empty_train_dir", train_dir=base / "empty_train"), []),
        "missing_style": (make("missing_style", style_file=base / "no_such_style.jpg"), []),
        "style_not_image": (make("style_not_image", style_file=not_image), []),
        "style_url": (make("style_url", style_file="https://127.0.0.1:9/x.jpg"), []),
        "unwritable": (make("unwritable", model_path=str(blocker / "models")), []),
        **({} if torch.cuda.is_available() else {"cuda": (make("cuda", device="cuda"), [])}),
        "bad_key": (make("bad_key"), ["--set", "max_step=5"]),
        "bad_type": (make("bad_type", batch_size="two"), []),
    }
    # A style URL is cached under ./data/styles: run everything from the scenario's folder.
    results = inline_many({k: ("train.py", run.args(*extra), {"cwd": base}) for k, (run, extra) in runs.items()})
    return base, {k: run for k, (run, _) in runs.items()}, results


# One fixture per scenario (same name): what the tests below assert on.
@pytest.fixture(scope="module", name="straight")
def _straight_fixture(_start_scenarios):
    return result("straight")


@pytest.fixture(scope="module", name="exact")
def _exact_fixture(_start_scenarios):
    return result("exact")


@pytest.fixture(scope="module", name="killed")
def _killed_fixture(_start_scenarios):
    return result("killed")


@pytest.fixture(scope="module", name="interrupted")
def _interrupted_fixture(_start_scenarios):
    return result("interrupted")


@pytest.fixture(scope="module", name="ctrl_c_workers")
def _ctrl_c_workers_fixture(_start_scenarios):
    return result("ctrl_c_workers")


@pytest.fixture(scope="module", name="eval_errors")
def _eval_errors_fixture(_start_scenarios, tmp_path_factory, train_dir, style_file):
    return eval_errors(Ctx(tmp_path_factory.mktemp("eval_errors"), train_dir, style_file))


@pytest.fixture(scope="module", name="eval_formats")
def _eval_formats_fixture(_start_scenarios):
    return result("eval_formats")


@pytest.fixture(scope="module", name="rerun")
def _rerun_fixture(_start_scenarios):
    return result("rerun")


@pytest.fixture(scope="module", name="blowup")
def _blowup_fixture(_start_scenarios):
    return result("blowup")


@pytest.fixture(scope="module", name="bad_data")
def _bad_data_fixture(_start_scenarios):
    return result("bad_data")


@pytest.fixture(scope="module", name="fail_fast")
def _fail_fast_fixture(tmp_path_factory, train_dir, style_file):
    return fail_fast(Ctx(tmp_path_factory.mktemp("fail_fast"), train_dir, style_file))



# =================================================================================================
# 1. Bad training data
# =================================================================================================

def test_unreadable_training_files_are_skipped_with_one_warning_each(bad_data):
    runs, results, bad, _ = bad_data
    r, run = results["mixed"], runs["mixed"]
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    for path in bad:
        assert r.stderr.count(f"warning: skipping unreadable training file {path}") == 1, (path, r.stderr)
    assert r.stderr.count("skipping unreadable training file") == len(bad)
    assert f"Skipped {len(bad)} unreadable training files" in r.stderr
    assert ckpt_step(run.model_file) == 5


def test_train_dir_with_only_unreadable_files_fails_cleanly(bad_data):
    runs, results, _, only_bad = bad_data
    assert_clean_error(results["only_bad"], "No readable images found", str(only_bad))
    assert_nothing_trained(runs["only_bad"])


def test_tiny_training_images_are_upscaled(bad_data):
    runs, results, _, _ = bad_data
    r, run = results["tiny"], runs["tiny"]
    assert r.returncode == 0, r.stderr
    assert "unreadable" not in r.stderr
    assert ckpt_step(run.model_file) == 4
    assert [ckpt_step(p) for p in run.step_files()] == [2, 4]


# =================================================================================================
# 2. Fail fast, before step 1
# =================================================================================================

def _fail_fast_case(fail_fast, name, *fragments):
    base, runs, results = fail_fast
    r = results[name]
    assert_clean_error(r, *fragments)
    assert "steps 0 ->" not in r.stderr, "training started before the error"
    assert_nothing_trained(runs[name])
    return base, runs[name], r


def test_missing_train_dir_fails_fast(fail_fast):
    _fail_fast_case(fail_fast, "missing_train_dir", "no_such_dir", "does not exist",
                    "python -m fast_nst.download coco")


def test_empty_train_dir_fails_fast_with_download_hint(fail_fast):
    _fail_fast_case(fail_fast, "empty_train_dir", "empty_train", "contains no images",
                    "python -m fast_nst.download coco")


def test_missing_style_image_fails_fast(fail_fast):
    _fail_fast_case(fail_fast, "missing_style", "Style image", "no_such_style.jpg", "not found")


def test_style_image_that_is_not_an_image_fails_fast(fail_fast):
    _fail_fast_case(fail_fast, "style_not_image", "Style image", "style_not_image.jpg", "not an image")


def test_unfetchable_style_url_fails_fast(fail_fast):
    base, _, _ = _fail_fast_case(fail_fast, "style_url", "https://127.0.0.1:9/x.jpg",
                                 "set style_image to its local path")
    cache = base / "data" / "styles"
    assert not cache.exists() or list(cache.iterdir()) == []  # no partial download left


def test_unwritable_model_path_fails_fast(fail_fast):
    _fail_fast_case(fail_fast, "unwritable", "Cannot write to the run folder", "regular_file",
                    "Set model_path to a writable folder")


@NEEDS_NO_CUDA
def test_cuda_device_without_cuda_fails_fast(fail_fast):
    _fail_fast_case(fail_fast, "cuda", "device 'cuda'", "CUDA is not available", "--set device=cpu")


def test_unknown_config_key_fails_fast(fail_fast):
    _fail_fast_case(fail_fast, "bad_key", "unknown key 'max_step'", "did you mean 'max_steps'")


def test_wrong_config_type_fails_fast(fail_fast):
    _fail_fast_case(fail_fast, "bad_type", "bad_type.yml", "key 'batch_size' must be int", "'two'")


def test_bad_config_value_fails_fast(tmp_path, train_dir, style_file, capsys):
    from fast_nst.commands.train import main as train_main

    run = tiny_run(tmp_path, "bad_value", train_dir, style_file)
    code, err = in_process(capsys, train_main, *run.args("--set", "image_size=8"))
    assert_clean_in_process(code, err, "--set image_size=8", "image_size", "at least 16")
    assert_nothing_trained(run)


def test_a_thin_style_image_fails_fast(tmp_path, train_dir, style_file, capsys):
    """A 1 x 300 px style image (it ended in max_pool2d's "Output size is too small" traceback)
    is refused in one line with the style_size that fits: resized, as it is, and in style_images."""
    from fast_nst.commands.train import main as train_main

    thin = tmp_path / "thin.png"
    Image.new("RGB", (1, 300), (200, 10, 10)).save(thin)
    run = tiny_run(tmp_path, "thin", train_dir, style_file, style_image=str(thin))
    multi = tiny_run(tmp_path, "thin_multi", train_dir, style_file, style_image="", model_type="johnson_multi",
                     style_images=[str(style_file), str(thin)])
    for case, extra, key, size in ((run, (), "style_image", "1 x 48 px at style_size 48"),
                                   (run, ("--set", "style_size=null"), "style_image", "1 x 300 px (style_size: null)"),
                                   (multi, (), "style_images", "1 x 48 px at style_size 48")):
        code, err = in_process(capsys, train_main, *case.args(*extra))
        assert_clean_in_process(code, err, f"Style image ({key}: {thin}) cannot be used: style image of {size}: style "
                                "images need at least 8 px per side", "set style_size: 2400 or more")
        assert "Training " not in err, err
        assert_nothing_trained(case)


def test_vgg_download_failure_names_url_and_destination(tmp_path, train_dir, style_file, monkeypatch, capsys):
    import fast_nst.core.untrusted.downloads
    from fast_nst.commands.train import main as train_main
    from fast_nst.core.errors import DownloadError

    calls = []

    def fail(url, dest, *args, **kwargs):
        calls.append((url, Path(dest)))
        raise DownloadError("simulated: network is unreachable")

    monkeypatch.setattr(fast_nst.core.untrusted.downloads, "download_url", fail)
    dest = tmp_path / "pretrained" / "vgg16-397923af.pth"
    run = tiny_run(tmp_path, "vgg_download", train_dir, style_file, loss_model_weights="imagenet",
                   loss_model_file=str(dest))
    code, err = in_process(capsys, train_main, *run.args())
    assert_clean_in_process(code, err, VGG16_URL, str(dest), "simulated: network is unreachable",
                            "loss_model_weights=random")
    assert calls and calls[0] == (VGG16_URL, dest)
    assert not dest.exists()
    assert_nothing_trained(run)


def _vgg_case(tmp_path, train_dir, style_file, capsys, weights: Path, *fragments):
    from fast_nst.commands.train import main as train_main

    run = tiny_run(tmp_path, "vgg_file", train_dir, style_file, loss_model_weights="imagenet",
                   loss_model_file=str(weights))
    code, err = in_process(capsys, train_main, *run.args())
    assert_clean_in_process(code, err, *fragments)
    assert_nothing_trained(run)


def test_vgg_weights_file_not_found_fails_fast(tmp_path, train_dir, style_file, capsys):
    weights = tmp_path / "nowhere" / "my_vgg.pth"
    _vgg_case(tmp_path, train_dir, style_file, capsys, weights, "VGG16 weights not found", str(weights),
              "python -m fast_nst.download vgg16")


def test_damaged_vgg_weights_file_fails_fast(tmp_path, train_dir, style_file, capsys):
    weights = tmp_path / "pretrained" / "vgg16-397923af.pth"
    weights.parent.mkdir()
    weights.write_text("<html>404 Not Found</html>\n")  # what a failed `wget -O` leaves
    _vgg_case(tmp_path, train_dir, style_file, capsys, weights, "not a VGG16 weights file", str(weights),
              VGG16_URL)


def test_empty_vgg_weights_file_fails_fast(tmp_path, train_dir, style_file, capsys):
    weights = tmp_path / "pretrained" / "vgg16-397923af.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"")  # what `curl -o` leaves when the connection fails
    _vgg_case(tmp_path, train_dir, style_file, capsys, weights, "not a VGG16 weights file", str(weights),
              VGG16_URL)


# =================================================================================================
# 3. SIGINT / SIGTERM
# =================================================================================================

@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_saves_checkpoint_and_exits(interrupted, sig, code):
    runs, procs, logs, saved, stopped, _ = interrupted
    err = logs[sig]
    assert procs[sig].returncode == code, err[-3000:]
    assert "Traceback" not in err, err
    assert f"Stopped ({sig}) at step" in err and "Resume with" in err and "--resume" in err
    assert "error:" not in err  # a stop the user asked for is not an error
    assert len(saved[sig]) == 1, saved[sig]  # checkpoint_every=1000: only the interrupt wrote one
    ckpt = stopped[sig]  # loaded with read_checkpoint
    assert ckpt["kind"] == "training" and "optimizer_state" in ckpt and ckpt["step"] >= 2
    # The message docs/reliability.md quotes, line for line
    assert f"Stopped ({sig}) at step {ckpt['step']}/2000; checkpoint saved to {saved[sig][0]}.\nResume with: " in err
    assert not ckpt["model_file_existed"]


def test_resume_after_sigint_continues_from_saved_step(interrupted):
    runs, _, _, _, stopped, r = interrupted
    run, start = runs["SIGINT"], stopped["SIGINT"]["step"]
    assert r.returncode == 0, r.stderr
    assert f"steps {start} -> {start + 2}" in r.stderr
    assert ckpt_step(run.model_file) == start + 2
    assert ckpt_step(run.step_files()[-1]) == start + 2


def test_ctrl_c_reaching_loader_workers_still_saves_checkpoint(ctrl_c_workers):
    run, p, err, workers = ctrl_c_workers
    assert len(workers) == 2, workers
    assert "Traceback" not in err, err[-3000:]
    assert p.returncode == 130, err[-3000:]
    assert "Stopped (SIGINT) at step" in err and "Resume with" in err
    files = run.step_files()
    assert files and read_ckpt(files[-1])["kind"] == "training"


# =================================================================================================
# 4. kill -9
# =================================================================================================

def _assert_all_load(survivors: dict) -> None:
    assert survivors, "no checkpoint survived"
    broken = {name: v for name, v in survivors.items() if not isinstance(v, int)}
    assert not broken, broken
    for name, step in survivors.items():
        assert name == f"step_{step:08d}.pth"


def test_kill9_right_after_checkpoint_then_resume(killed):
    _, out = killed
    p1, p2 = out["p1"], out["p2"]
    assert p1["code"] == -signal.SIGKILL
    _assert_all_load(p1["survivors"])
    # P2 is `--resume` after the kill: it started from P1's newest checkpoint and trained on.
    assert f"steps {p1['newest']} -> 2000" in p2["log"], p2["log"][-3000:]
    assert "Traceback" not in p2["log"]


def test_kill9_while_checkpoint_is_written_then_resume(killed):
    run, out = killed
    p2, p3 = out["p2"], out["p3"]
    assert p2["code"] == -signal.SIGKILL
    assert p2["seen"], "the kill should land while a checkpoint's temporary file exists"
    _assert_all_load(p2["survivors"])
    assert p2["newest"] >= out["p1"]["newest"]
    assert p3 is not None and p3.returncode == 0, p3 and p3.stderr
    assert "Traceback" not in p3.stderr
    assert f"steps {p2['newest']} -> {p2['newest'] + 2}" in p3.stderr
    assert ckpt_step(run.model_file) == p2["newest"] + 2
    for p in run.step_files():
        assert read_ckpt(p)["kind"] == "training"


# =================================================================================================
# 5. Keep the last few checkpoints
# =================================================================================================

def test_keep_checkpoints_keeps_only_the_newest(rerun):
    _, _, kept, _, _, _ = rerun  # keep_checkpoints=2, checkpoint_every=1, max_steps=5
    assert kept == {"step_00000004.pth": 4, "step_00000005.pth": 5}


# =================================================================================================
# 6. Exact resume
# =================================================================================================

def test_resume_reproduces_uninterrupted_run(exact):
    at, first_b, second = exact
    assert first_b.returncode == 0, first_b.stderr
    assert second["B"].returncode == 0, second["B"].stderr
    assert "steps 3 -> 6" in second["B"].stderr
    assert ckpt_step(at["A"].model_file) == ckpt_step(at["B"].model_file) == 6
    assert_same_weights(at["A"].model_file, at["B"].model_file)


def test_resume_from_explicit_checkpoint_path(exact):
    """--resume PATH with another run's checkpoint, into a run folder with no checkpoints yet."""
    at, _, second = exact
    r = second["C"]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    assert "steps 2 -> 6" in r.stderr
    assert ckpt_step(at["C"].model_file) == 6
    assert_same_weights(at["A"].model_file, at["C"].model_file)


def test_averaging_run_ships_the_average_and_resumes_from_the_trained_weights(exact):
    """ema_decay: checkpoints hold the average as model_state (what stylizes) and the trained
    weights as training_state; the final model is the last average, without training state."""
    at, _, _ = exact
    run = at["A"]
    ckpts = {ckpt_step(p): read_ckpt(p) for p in run.step_files()}
    six, final = ckpts[6], read_ckpt(run.model_file)
    assert "training_state" not in final and final["kind"] == "model"
    for key, value in final["model_state"].items():
        assert torch.equal(value, six["model_state"][key]), key
    moved = [k for k, v in six["model_state"].items() if v.is_floating_point()
             and not torch.equal(v, six["training_state"][k])]
    assert len(moved) > 10, "the average should differ from the trained weights"


def _scalar_steps(run_dir: Path, tag: str = "loss/total") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_tensorboard_resume_has_no_duplicate_steps(exact):
    at, _, _ = exact
    steps = _scalar_steps(at["B"].run_dir)
    assert len(steps) == len(set(steps)), steps
    assert {1, 2, 4, 5, 6} <= set(steps) <= set(range(1, 7)), steps
    assert _scalar_steps(at["A"].run_dir) == [1, 2, 3, 4, 5, 6]


def test_tensorboard_resume_keeps_every_step_once(exact):
    at, _, _ = exact
    assert sorted(_scalar_steps(at["B"].run_dir)) == [1, 2, 3, 4, 5, 6]


# =================================================================================================
# 7. No silent overwrite
# =================================================================================================

def test_second_run_without_flags_refuses(rerun):
    run, before, _, errors, after_errors, _ = rerun
    assert_clean_error(errors["again"], str(run.run_dir), "--resume", "--overwrite")
    assert set(before) == {"step_00000004.pth", "step_00000005.pth", "again.pth"}
    assert after_errors == before  # nothing touched


def test_overwrite_starts_afresh(rerun):
    run, _, _, _, _, overwrite = rerun
    assert overwrite.returncode == 0, overwrite.stderr
    assert "steps 0 -> 1" in overwrite.stderr
    assert [p.name for p in run.step_files()] == ["step_00000001.pth"]  # the old 4 and 5 deleted
    assert ckpt_step(run.model_file) == 1
    assert len(list(run.run_dir.glob("events.out.tfevents.*"))) == 1  # the old run's log deleted


def test_resume_without_checkpoints_fails_cleanly(rerun):
    run, _, _, errors, _, _ = rerun
    assert_clean_error(errors["no_ckpt"], "--resume: no checkpoints", str(run.model_path / "fresh"),
                       "Start without --resume")
    assert_nothing_trained(Run(run.conf, "fresh", run.model_path))


def test_resume_and_overwrite_together_rejected(tmp_path, train_dir, style_file, capsys):
    from fast_nst.commands.train import main as train_main

    run = tiny_run(tmp_path, "both", train_dir, style_file)
    code, err = in_process(capsys, train_main, *run.args("--resume", "--overwrite"))
    assert_clean_in_process(code, err, "--resume and --overwrite")
    assert_nothing_trained(run)


# =================================================================================================
# 8. Non-finite loss
# =================================================================================================

def test_infinite_loss_stops_and_keeps_last_good_checkpoint(blowup):
    run, good, good_bytes, r = blowup
    assert_clean_error(r, "Non-finite loss at step 3", "total=inf", "style=inf", "content=", "tv=",
                       f"The last good checkpoint is {good}")
    assert run.step_files() == []  # nothing saved after the last good step
    assert good.read_bytes() == good_bytes and ckpt_step(good) == 2
    assert not run.model_file.exists()


def test_nan_loss_mid_run_stops_and_keeps_last_good_checkpoint(tmp_path, train_dir, style_file,
                                                               monkeypatch, capsys):
    import fast_nst.lossnet.losses
    from fast_nst.commands.train import main as train_main

    original = fast_nst.lossnet.losses.TVLoss.forward
    calls = {"n": 0}

    def nan_from_step_3(self, image):
        calls["n"] += 1  # the criterion runs once per step
        out = original(self, image)
        return out * float("nan") if calls["n"] >= 3 else out

    monkeypatch.setattr(fast_nst.lossnet.losses.TVLoss, "forward", nan_from_step_3)
    run = tiny_run(tmp_path, "nan", train_dir, style_file, max_steps=5, checkpoint_every=2, num_samples=0)
    code, err = in_process(capsys, train_main, *run.args())
    good = run.run_dir / "checkpoints" / "step_00000002.pth"
    assert calls["n"] >= 3, "the patched loss was not used"
    assert_clean_in_process(code, err, "Non-finite loss at step 3", "total=nan", "content=", "style=",
                            "tv=nan", f"The last good checkpoint is {good}")
    assert [p.name for p in run.step_files()] == [good.name]
    ckpt = read_ckpt(good)
    assert ckpt["step"] == 2 and all(torch.isfinite(t).all() for t in ckpt["model_state"].values())
    assert not run.model_file.exists()


# =================================================================================================
# 9. Hostile and foreign model files
# =================================================================================================

class _Payload:
    """Unpickling this object opens (creates) a file: stands in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _no_outputs(out: Path, stem: str) -> None:
    assert not out.exists() or not list(out.glob(f"{stem}*")), list(out.iterdir())


def test_eval_refuses_pickle_that_would_run_code(eval_errors):
    e = eval_errors
    assert e["payload_live"], "the payload should create its marker when loaded unsafely"
    assert_clean_error(e["results"]["hostile"], "refused", str(e["models"] / "hostile.pth"),
                       "nothing from this file was executed")
    assert not e["marker"].exists()
    _no_outputs(e["out"], "hostile")


def test_eval_refuses_raw_pickle_that_would_run_code(eval_errors, tmp_path, capsys):
    marker = tmp_path / "PWNED_by_raw_pickle"
    path = tmp_path / "raw.pth"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))  # a bare pickle, not torch's zip format
    code, err = _eval_model(eval_errors, tmp_path, capsys, path)
    assert_clean_in_process(code, err, "refused", str(path))
    assert not marker.exists() and not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize("name", ["random", "empty", "text"])
def test_eval_rejects_damaged_model_file(eval_errors, name):
    e = eval_errors
    assert_clean_error(e["results"][name], str(e["models"] / f"{name}.pth"),
                       "not a PyTorch checkpoint, or the file is damaged")
    _no_outputs(e["out"], name)


def test_eval_random_bytes_model_reported_as_damaged_not_hostile(eval_errors):
    r = eval_errors["results"]["random"]
    assert_clean_error(r, "not a PyTorch checkpoint")
    assert "refused" not in r.stderr


def _eval_model(eval_errors, tmp_path, capsys, model) -> tuple[int, str]:
    """eval.py in-process on the scenario photo with ``model``; (exit code, stderr)."""
    from fast_nst.commands.eval import main as eval_main

    return in_process(capsys, eval_main, "--model_file", model, "--image_file", eval_errors["photo"],
                      "--output_file", tmp_path / "o.jpg", "--device", "cpu")


def test_eval_rejects_truncated_checkpoint(eval_errors, tmp_path, capsys):
    blob = eval_errors["model_file"].read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(blob[: len(blob) // 2])  # an interrupted copy or download
    code, err = _eval_model(eval_errors, tmp_path, capsys, cut)
    assert_clean_in_process(code, err, str(cut), "not a PyTorch checkpoint, or the file is damaged")
    assert not (tmp_path / "o.jpg").exists()


def test_eval_rejects_other_projects_state_dict(eval_errors):
    e = eval_errors
    assert_clean_error(e["results"]["foreign"], str(e["models"] / "foreign.pth"), "not a fast-nst checkpoint",
                       "conv1.weight")
    _no_outputs(e["out"], "foreign")


def test_eval_recognises_pytorch_examples_model(eval_errors, tmp_path, capsys):
    path = tmp_path / "mosaic.pth"
    torch.save({"conv1.conv2d.weight": torch.zeros(32, 3, 9, 9)}, path)
    code, err = _eval_model(eval_errors, tmp_path, capsys, path)
    assert_clean_in_process(code, err, "not a fast-nst checkpoint", "pytorch/examples fast_neural_style model")


def test_eval_rejects_incomplete_pytorch_examples_model(eval_errors, tmp_path, capsys):
    path = tmp_path / "partial.pth"
    torch.save({"conv1.conv2d.weight": torch.zeros(32, 3, 9, 9),
                "deconv3.conv2d.weight": torch.zeros(3, 32, 9, 9)}, path)
    code, err = _eval_model(eval_errors, tmp_path, capsys, path)
    assert_clean_in_process(code, err, str(path), "pytorch/examples")
    assert not (tmp_path / "o.jpg").exists()


def test_eval_rejects_newer_format_version(eval_errors):
    e = eval_errors
    assert_clean_error(e["results"]["newer"], str(e["models"] / "newer.pth"), "newer fast-nst",
                       "format version 99", "Upgrade")


def test_eval_rejects_checkpoint_missing_a_key(eval_errors):
    assert_clean_error(eval_errors["results"]["missing_key"], "incomplete fast-nst checkpoint",
                       "missing model_state")


@pytest.mark.parametrize("value", ["32", 32.0])
def test_eval_rejects_bad_model_args_types(eval_errors, tmp_path, capsys, value):
    ckpt = torch.load(eval_errors["model_file"], map_location="cpu", weights_only=True)
    path = tmp_path / "bad_args.pth"
    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "base_channels": value}}, path)
    code, err = _eval_model(eval_errors, tmp_path, capsys, path)
    assert_clean_in_process(code, err, str(path), "model_args")


def test_eval_rejects_wrong_tensor_shapes(eval_errors):
    assert_clean_error(eval_errors["results"]["wrong_shape"], "weights do not fit the transform net",
                       "encoder.0.1.weight")


def test_eval_missing_model_file(eval_errors, tmp_path, capsys):
    from fast_nst.commands.eval import main as eval_main

    code, err = in_process(capsys, eval_main, "--model_file", tmp_path / "nope.pth", "--image_file",
                           eval_errors["photo"], "--device", "cpu")
    assert_clean_in_process(code, err, "Model file not found", str(tmp_path / "nope.pth"))


# =================================================================================================
# 10. eval.py inputs
# =================================================================================================

def test_eval_missing_input_path(eval_errors):
    assert_clean_error(eval_errors["results"]["missing_image"], "--image_file", "no_such_photo.jpg",
                       "does not exist")


def test_eval_folder_without_images(eval_errors):
    assert_clean_error(eval_errors["results"]["empty_folder"], "empty_folder", "has no images")
    assert not (eval_errors["out"] / "from_empty").exists()


def test_eval_non_image_input(eval_errors):
    assert_clean_error(eval_errors["results"]["not_image"], "text.jpg", "not an image file")
    _no_outputs(eval_errors["out"], f"{MODEL_NAME}_text")


def test_eval_truncated_input(eval_errors):
    assert_clean_error(eval_errors["results"]["truncated_image"], "truncated.jpg", "truncated or corrupt")
    _no_outputs(eval_errors["out"], f"{MODEL_NAME}_truncated")


def test_eval_decompression_bomb_names_limit_and_flag(eval_errors):
    assert_clean_error(eval_errors["results"]["bomb"], "big.png", "decompression-bomb limit of 100 pixels",
                       "--max_image_pixels")
    _no_outputs(eval_errors["out"], f"{MODEL_NAME}_big")


def test_eval_unwritable_output(eval_errors):
    assert_clean_error(eval_errors["results"]["unwritable"], "Cannot write", "regular_file", "--output_file")
    assert (eval_errors["base"] / "regular_file").read_text() == "a file, not a folder"


def test_eval_refuses_to_overwrite_its_input(eval_errors):
    assert_clean_error(eval_errors["results"]["same_as_input"], "is the input image", "refusing to overwrite")
    assert (eval_errors["base"] / "inputs" / "self.jpg").read_bytes() == eval_errors["before"]["self"]


def test_eval_unsupported_output_extension(eval_errors, tmp_path, capsys):
    from fast_nst.commands.eval import main as eval_main

    code, err = in_process(capsys, eval_main, "--model_file", eval_errors["model_file"], "--image_file",
                           eval_errors["photo"], "--output_file", tmp_path / "photo.gif", "--device", "cpu")
    assert_clean_in_process(code, err, "photo.gif", "unsupported output extension")
    assert list(tmp_path.iterdir()) == []


@NEEDS_NO_CUDA
def test_eval_cuda_without_cuda(eval_errors, tmp_path, capsys):
    from fast_nst.commands.eval import main as eval_main

    code, err = in_process(capsys, eval_main, "--model_file", eval_errors["model_file"], "--image_file",
                           eval_errors["photo"], "--output_file", tmp_path / "o.jpg", "--device", "cuda")
    assert_clean_in_process(code, err, "CUDA is not available")
    assert not (tmp_path / "o.jpg").exists()


def test_eval_folder_with_one_bad_file(eval_errors):
    out = eval_errors["out"]
    r = eval_errors["results"]["folder_one_bad"]
    assert r.returncode != 0 and "Traceback" not in r.stderr + r.stdout
    assert "Stylized 2 of 3" in r.stdout and "1 failed" in r.stdout
    assert "c.jpg" in r.stderr and "(skipped)" in r.stderr
    written = sorted(p.name for p in (out / "mixed").iterdir())
    assert written == [f"a_{MODEL_NAME}.jpg", f"b_{MODEL_NAME}.jpg"], written
    for name, size in ((f"a_{MODEL_NAME}.jpg", (40, 32)), (f"b_{MODEL_NAME}.jpg", (32, 24))):
        with Image.open(out / "mixed" / name) as img:
            assert img.size == size


def _out(eval_formats, stem: str, ext: str = ".jpg") -> Image.Image:
    _, out, r = eval_formats
    path = out / f"{stem}_{MODEL_NAME}{ext}"
    assert path.exists(), r.stdout + r.stderr
    img = Image.open(path)
    img.load()
    return img


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def test_eval_formats_run_succeeds(eval_formats):
    src, _, r = eval_formats
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    n = len(list(src.iterdir()))
    assert f"Stylized {n} of {n} images" in r.stdout


def test_eval_16bit_grayscale_png(eval_formats):
    from fast_nst.core.untrusted import open_image

    src, _, _ = eval_formats
    with Image.open(src / "grey16.png") as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    # The decoder eval.py uses keeps mid-grey mid-grey (a naive convert("RGB") clips it to white).
    assert abs(np.asarray(open_image(src / "midgrey16.png"), dtype=np.float64).mean() - 128) <= 1
    out, ref, white = (_out(eval_formats, s) for s in ("grey16", "grey16_ref", "white_ref"))
    assert out.mode == "RGB" and out.size == (40, 32)
    # Stylized exactly like the same gradient stored as 8 bits...
    assert np.abs(_pixels(out) - _pixels(ref)).max() <= 2
    # ...and not like a white image (what a clipped 16-bit input would have produced).
    assert np.abs(_pixels(out) - _pixels(white)).mean() > 5
    mid, mid_ref = _pixels(_out(eval_formats, "midgrey16")), _pixels(_out(eval_formats, "midgrey8_ref"))
    assert np.abs(mid - mid_ref).max() <= 2


@pytest.mark.parametrize("name", ["grey_l", "palette"])
def test_eval_grayscale_and_palette_images(eval_formats, name):
    """Grayscale L and palette P inputs: RGB outputs, as for the RGB-converted input."""
    out, ref = _out(eval_formats, name), _out(eval_formats, f"{name}_ref")
    assert out.mode == "RGB" and out.size == (40, 32)
    assert np.abs(_pixels(out) - _pixels(ref)).max() <= 2


def test_eval_cmyk_jpeg(eval_formats):
    src, _, _ = eval_formats
    with Image.open(src / "cmyk.jpg") as img:
        assert img.mode == "CMYK"
    out, ref = _out(eval_formats, "cmyk"), _out(eval_formats, "cmyk_ref")
    assert out.mode == "RGB" and out.size == (40, 32)
    assert np.abs(_pixels(out) - _pixels(ref)).mean() < 8  # the same colours, not inverted


def test_eval_rgba_png_keeps_alpha(eval_formats):
    src, out_dir, _ = eval_formats
    assert not (out_dir / f"rgba_{MODEL_NAME}.jpg").exists()
    out = _out(eval_formats, "rgba", ".png")
    assert out.mode == "RGBA" and out.size == (40, 32)
    with Image.open(src / "rgba.png") as img:
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(img.getchannel("A")))


def test_eval_exif_rotated_jpeg(eval_formats):
    src, _, _ = eval_formats
    with Image.open(src / "exif6.jpg") as img:
        assert img.size == (40, 24) and img.getexif().get(0x0112) == 6
    assert _out(eval_formats, "exif6").size == (24, 40)


@pytest.mark.parametrize("stem, size", [("one", (1, 1)), ("three_by_seven", (3, 7))])
def test_eval_tiny_images_keep_their_size(eval_formats, stem, size):
    assert _out(eval_formats, stem).size == size


def test_resume_removes_half_written_checkpoints(tiny_config, capsys):
    """A kill -9 during a save leaves .step_N.pth.tmpPID behind; the next start removes it."""
    from fast_nst.commands.train import main as train_main

    conf = tiny_config("stale", max_steps=2)
    assert train_main(["-c", str(conf), "--no_progress"]) == 0
    ckpts = conf.parent.parent / "models" / "stale" / "checkpoints"
    stale = ckpts / ".step_00000003.pth.tmp4242"
    stale.write_bytes(b"half a checkpoint")
    assert train_main(["-c", str(conf), "--resume", "--set", "max_steps=3", "--no_progress"]) == 0
    assert not stale.exists()
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000002.pth", "step_00000003.pth"]


def test_rng_state_from_more_gpus_restores_the_ones_present(monkeypatch):
    """A checkpoint saved on a 2-GPU machine resumes on a 1-GPU one: the present GPU's generator
    is restored, the missing one is skipped (torch.cuda.set_rng_state_all would index past it)."""
    from fast_nst.io.checkpoint import capture_rng_state, restore_rng_state

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((device, state)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([1], dtype=torch.uint8),
                                                                  torch.tensor([2], dtype=torch.uint8)])
    state = capture_rng_state()
    assert len(state["cuda"]) == 2
    restore_rng_state(state)
    assert [(d, s.tolist()) for d, s in restored] == [(0, [1])]
