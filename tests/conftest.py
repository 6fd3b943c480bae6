"""Shared fixtures: generated photos, a random VGG16 weights file in torchvision's layout, and a
tiny training config (32 px, random loss network, no workers) so every test runs in seconds."""

from __future__ import annotations

import contextlib
import time
import os
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

# PyTorch's OpenMP threads spin while they wait for work; on a machine whose cores are busy with
# other jobs (another pytest, a benchmark) the spinning threads hold the cores the working ones
# need: 9 forwards of a small network at 240 x 240 took 9.8 s instead of 0.15 s on a shared
# 2-core VM. Set before torch loads OpenMP; inherited by the commands tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402  (after the OpenMP setting)
import pytest  # noqa: E402
from hypothesis import is_hypothesis_test  # noqa: E402
import torch  # noqa: E402
import yaml
from PIL import Image

from fast_nst.core.images import psnr  # noqa: F401  (the tests import it from here)
from forkrun import Zygote

REPO = Path(__file__).resolve().parent.parent

# The longest test files, longest first (serial seconds on a 2-core VM without AMX: 46, 31, 30,
# 30, 27, 26, 25, 25, 22, 18, 17; the other files 11 or less). pytest.ini hands whole files to its
# worker processes in collection order (--no-loadscope-reorder: pytest-xdist would otherwise order
# them by how many tests they hold, which put the 5 slow tests of test_distributed.py last, alone
# on one worker for the last minute), and the suite ends when its last worker does.
LONGEST_FILES = ("test_distributed.py", "test_openvino.py", "test_optimize.py", "test_int8.py", "test_reliability.py",
                 "test_performance_paths.py", "test_adain_export.py", "test_end_to_end.py", "test_bench.py",
                 "test_export.py", "test_onnx_tiling.py")


def _fuzz_factor() -> int:
    """FAST_NST_FUZZ=N (a whole number >= 1): every property test draws N times its examples, a
    deeper search for hostile inputs than the suite's few seconds a test allow (before a release:
    ``FAST_NST_FUZZ=100 python -m pytest -m property``)."""
    text = os.environ.get("FAST_NST_FUZZ", "1")
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"FAST_NST_FUZZ must be a whole number of at least 1, got {text!r}")
    return int(text)


FUZZ = 1  # FAST_NST_FUZZ's value, read when pytest starts (pytest_configure)


def pytest_configure(config) -> None:
    global FUZZ
    FUZZ = _fuzz_factor()


def examples(n: int) -> int:
    """A property test's ``max_examples``: ``n``, times FAST_NST_FUZZ."""
    return n * FUZZ


def pytest_collection_modifyitems(session, config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    for item in items:  # -m property selects the Hypothesis tests
        if is_hypothesis_test(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.property)


def make_photo(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB",
               fmt: str | None = None) -> Path:
    """A smooth random colour image (gradients + blobs) so VGG features are non-trivial."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = []
    for _ in range(3):
        fx, fy, ph = rng.uniform(0.05, 0.4, 2).tolist() + [rng.uniform(0, 6.28)]
        chans.append(0.5 + 0.5 * np.sin(fx * xx + fy * yy + ph))
    arr = (np.stack(chans, -1) * 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory) -> Path:
    """The exports --precision int8 and --runtime openvino make, kept in a folder of the test
    session's (not the user's ~/.cache); the commands tests start inherit it."""
    folder = tmp_path_factory.mktemp("export-cache")
    os.environ["FAST_NST_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory) -> Path:
    """Twelve generated photos of assorted sizes, two in a nested folder."""
    d = tmp_path_factory.mktemp("train")
    sizes = [(48, 40), (64, 48), (40, 56), (72, 72), (50, 37), (36, 64),
             (60, 45), (45, 60), (80, 50), (33, 33), (64, 64), (52, 41)]
    for i, s in enumerate(sizes):
        sub = d / "nested" if i >= 10 else d
        make_photo(sub / f"img_{i:02d}.jpg", s, seed=i)
    return d


@pytest.fixture(scope="session")
def style_file(tmp_path_factory) -> Path:
    return make_photo(tmp_path_factory.mktemp("style") / "style.png", (56, 48), seed=99)


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory) -> Path:
    """torchvision's vgg16() features with random weights, in the ImageNet file's keys
    (``features.N``, ``classifier.N``); its classifier shrunk to a few numbers: a loss network
    ignores it, and the real one's 411 MB took 6 s to write in every worker."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    for i in (0, 3, 6):
        state[f"classifier.{i}.weight"], state[f"classifier.{i}.bias"] = torch.randn(4, 8), torch.randn(4)
    path = tmp_path_factory.mktemp("pretrained") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path


def write_config(path: Path, **values) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def tiny_values(model_path: Path, train_dir: Path, style_file: Path, /, **overrides) -> dict:
    """Config values for a seconds-long CPU run: 32 px, random loss network, no workers."""
    values = dict(
        style_image=str(style_file), train_dir=str(train_dir), model_path=str(model_path),
        loss_model_weights="random", image_size=32, style_size=48, batch_size=2, max_steps=3,
        num_workers=0, log_every=1, image_log_every=2, checkpoint_every=2, device="cpu",
        num_samples=2,
    )
    values.update(overrides)
    return values


@pytest.fixture
def tiny_config(tmp_path, train_dir, style_file):
    """Factory: tiny_config(**overrides) -> path of a config for a seconds-long CPU run."""

    def make(name: str = "tiny", **overrides) -> Path:
        values = tiny_values(tmp_path / "models", train_dir, style_file, **overrides)
        return write_config(tmp_path / "conf" / f"{name}.yml", **values)

    return make


def _command(script: str, args: tuple, env: dict | None) -> tuple[list[str], dict]:
    """(argv after the interpreter, environment) of train.py / eval.py / ``-m module``."""
    argv = ["-m", script[3:]] if script.startswith("-m ") else [str(REPO / script)]
    return argv + list(args), {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}


def run_cli(script: str, *args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run train.py / eval.py / ``-m module`` as a user would, capturing text output."""
    argv, full_env = _command(script, args, env)
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


# Forked commands run side by side: one compute thread each, or OpenMP threads spin against each
# other (measured: a tiny run's CPU time doubles). Every run in a comparison gets the same setting.
FORKED_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def zygote(tmp_path_factory):
    """Commands forked from one preloaded interpreter (tests/forkrun.py): a process of their own
    each, without the ~4.5 s of imports a command starts with. One compute thread each."""
    z = Zygote({**os.environ, "PYTHONPATH": str(REPO), **FORKED_ENV}, tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def fork_cli(zygote: Zygote, script: str, *args: str, cwd: Path | None = None, timeout: float = 300,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """:func:`run_cli` in a process forked from ``zygote``: the same command line and results."""
    argv, full_env = _command(script, args, {**FORKED_ENV, **(env or {})})
    return zygote.run(argv, cwd=cwd, timeout=timeout, env=full_env)


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Non-zero exit, each fragment in stderr, and no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


def in_process(capsys, main, *args) -> tuple[int, str]:
    """Call a CLI entry point (train_main, eval_main, ...) here; (exit code, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def export_cli(*argv) -> str:
    """Run the export command in-process; its stdout (it must succeed)."""
    import contextlib
    import io

    from fast_nst.commands.export import main as export_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert export_main([str(a) for a in argv]) == 0
    return out.getvalue()


def assert_clean_in_process(code: int, err: str, *fragments: str) -> None:
    """Non-zero exit, an ``error:`` line, each fragment in stderr, and no traceback."""
    assert code != 0 and "Traceback" not in err, err
    assert err.startswith("error: ") or "\nerror: " in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"


def random_adain_net(layer: str = "relu4_1", seed: int = 0):
    """An AdaIN net (eval mode) with a seeded random VGG16 encoder cut at ``layer``, its decoder's
    weights doubled so that its outputs vary with photo and style (as a trained decoder's do)
    instead of being nearly constant."""
    from fast_nst.nets.adain import AdaINArgs, AdaINNet

    torch.manual_seed(seed)
    net = AdaINNet(AdaINArgs(encoder="vgg16", encoder_layer=layer, encoder_weights="random")).eval()
    with torch.no_grad():
        for p in net.decoder.parameters():
            p.mul_(2)
    return net


def damaged(data, raw: bytes) -> tuple[str, bytes]:
    """A damaged copy of ``raw`` drawn from Hypothesis ``data`` (``st.data()``): up to 8 bytes
    flipped, cut short, up to 64 bytes spliced in, or up to 512 random bytes; (kind, bytes)."""
    from hypothesis import strategies as st

    kind = data.draw(st.sampled_from(["flip", "truncate", "splice", "random"]))
    out = bytearray(raw)
    if kind == "flip":
        for i in data.draw(st.lists(st.integers(0, len(out) - 1), min_size=1, max_size=8)):
            out[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        out = out[: data.draw(st.integers(0, len(out) - 1))]
    elif kind == "splice":
        at = data.draw(st.integers(0, len(out)))
        out[at:at] = data.draw(st.binary(max_size=64))
    else:
        out = bytearray(data.draw(st.binary(max_size=512)))
    return kind, bytes(out)


def trained_like_norms(net: torch.nn.Module) -> torch.nn.Module:
    """Give every InstanceNorm2d of ``net`` scales in [0.5, 1.5] and shifts in [-0.3, 0.3], as after
    training (a fresh net's 1 and 0 make a flat, uninformative output); draws from torch's RNG."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net


def load_hostile_onnx(raw: bytes, path: Path) -> None:
    """Write ``raw`` to ``path`` and load it as an .onnx model: a stylizer or one CheckpointError
    line, within a memory cap and 20 s of CPU time (onnxruntime's parser is native code:
    tracemalloc cannot see it)."""
    from fast_nst.core.errors import CheckpointError
    from fast_nst.stylize.onnx_stylizer import load_onnx_stylizer

    path.write_bytes(raw)
    start = time.process_time()
    with memory_cap(1 << 30):
        try:
            s = load_onnx_stylizer(path, device="cpu")
        except CheckpointError as e:
            assert "\n" not in str(e).strip() and len(str(e)) < 2000
        else:
            assert s.info["format"] == "onnx"
    assert time.process_time() - start < 20


@contextlib.contextmanager
def memory_cap(extra: int = 2 << 30):
    """Limit this process's address space to its current size plus ``extra`` bytes."""
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (current + extra, hard))
    except (OSError, ValueError, AttributeError):  # not Linux: run without the cap
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def file_size_cap(limit: int):
    """Writes past ``limit`` bytes of any file fail in this process (EFBIG, "File too large"), as
    on a full disk: a real failed write, with no disk to fill."""
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # SIGXFSZ would kill the process; ignored, the write fails with EFBIG instead.
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def set_declared_size(path: Path, member_suffix: str, size: int) -> None:
    """Make the zip's local and central headers of the member ending in ``member_suffix`` claim
    ``size`` uncompressed bytes (the data stays as it is)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    name = info.filename.encode()
    struct.pack_into("<I", data, info.header_offset + 22, size)  # local header: uncompressed size
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46:central + 46 + name_len]) == name:
            struct.pack_into("<I", data, central + 24, size)  # central directory: uncompressed size
            break
        central = data.find(b"PK\x01\x02", central + 4)
    else:
        raise AssertionError("central directory entry not found")
    path.write_bytes(bytes(data))
