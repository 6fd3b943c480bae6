"""Benchmark fast-nst against the plain reference path on the current device; prints a table.

    python benchmarks/bench.py                      # everything, sizes picked for the device
    python benchmarks/bench.py --only inference     # just stylizing
    python benchmarks/bench.py --data ../shared/data/train --out results.md
    python benchmarks/bench.py --only e2e --data data/train2014   # the real train.py loop
    python benchmarks/bench.py --quick                            # does every path run?

Reference path (what pytorch/examples' fast_neural_style does): eager fp32, NCHW, both the
stylized and the content batch through VGG16 up to relu4_3, loss read back to the host every
step. Fast path: fast-nst's own training step (content branch only to relu2_2, no host sync,
optional bf16/fp16 autocast, torch.compile, channels_last) and its default stylizer. "e2e"
runs the real training loop (``do_train``: loader workers, logging, checkpoints) from a folder
of photos and reports its steady-state images/s.
Random weights throughout: speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from cpu_paths import side_by_side  # benchmarks/cpu_paths.py, beside this script
from fast_nst.core.images import psnr
from fast_nst.training.cache import open_cache
from fast_nst.training.data import build_loader, find_training_images
from fast_nst.lossnet.losses import PerceptualLoss, gram_matrix, tf32_grams
from fast_nst.nets.johnson import TransformNet
from fast_nst.stylize import TorchStylizer as Stylizer
from fast_nst.lossnet.vgg import VGGEncoder, random_features

STYLE_LAYERS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
ROWS: list[tuple[str, str, str, str]] = []


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t) / iters


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS (process peak)"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


OUT_FILE: list[Path] = []  # --out: each row is appended as soon as it is measured
JSON_FILE: list[Path] = []  # --json: the same rows as JSON lines, for benchmarks/suite.py


def record(what: str, path: str, value: str, device: torch.device) -> None:
    ROWS.append((what, path, value, peak_memory(device)))
    print(f"  {what:38s} {path:34s} {value:>18s}   {ROWS[-1][3]}", flush=True)
    for out in OUT_FILE:  # a run cut short (a time limit) keeps what it measured
        with out.open("a", encoding="utf-8") as f:
            f.write("| " + " | ".join(ROWS[-1]) + " |\n")
    number = re.match(r"\s*([0-9.]+)\s*(\S+)", value)
    for out in JSON_FILE:
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"what": what, "path": path, "result": value, "peak_memory": ROWS[-1][3],
                                "value": float(number.group(1)) if number else None,
                                "unit": number.group(2) if number else None}) + "\n")


# ---- training ------------------------------------------------------------------------------------

def reference_step_fn(net, enc, style_grams, opt, x):
    """pytorch/examples' step: VGG to relu4_3 on y and x, content at relu2_2, .item() each step."""

    def step():
        opt.zero_grad()
        y = net(x)
        fy = enc(y, STYLE_LAYERS)
        fx = enc(x, STYLE_LAYERS)
        content = F.mse_loss(fy["relu2_2"], fx["relu2_2"])
        style = sum(F.mse_loss(gram_matrix(fy[n]), g.expand(x.shape[0], -1, -1))
                    for n, g in zip(STYLE_LAYERS, style_grams)) * 1e5
        total = content + style
        total.backward()
        opt.step()
        return total.item()  # the host sync pytorch/examples does every step

    return step


def fast_step_fn(net, crit, opt, x, precision: str, device: torch.device):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None), \
                tf32_grams(device.type == "cuda" and dtype is not None):  # as training.py
            total = crit(net(x), x)["total"]
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        return total  # stays on the device

    return step


LAYOUTS = {"NCHW": (False, False), "CL": (True, True), "CL vgg only": (False, True)}  # (net, VGG)


def bench_training(device, size, batches, variants: list[tuple[str, bool, str]], warmup: int,
                   iters: int, reference: bool = True) -> None:
    """images/s of the reference step (if ``reference``) and of each (precision, compile,
    layout) variant; layout is a key of :data:`LAYOUTS`: which networks run channels_last."""
    print(f"\nTraining step, {size} x {size}:")
    torch.manual_seed(0)
    style = torch.rand(1, 3, size, size, device=device)
    for batch in batches:
        x = torch.rand(batch, 3, size, size, device=device)
        # reference
        net = TransformNet().to(device)
        enc = VGGEncoder(random_features("vgg16", 0), STYLE_LAYERS).to(device)
        with torch.no_grad():
            grams = [gram_matrix(f) for f in enc(style, STYLE_LAYERS).values()]
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        if reference:
            reset_peak(device)
            t = timed(reference_step_fn(net, enc, grams, opt, x), device, warmup, iters)
            record(f"train batch {batch}", "reference (eager fp32)", f"{batch / t:.1f} img/s", device)
        # fast paths
        for precision, compile_, layout in variants:
            net_cl, vgg_cl = LAYOUTS[layout]
            fmt = {True: torch.channels_last, False: torch.preserve_format}
            net = TransformNet().to(device, memory_format=fmt[net_cl])
            enc = VGGEncoder(random_features("vgg16", 0), STYLE_LAYERS).to(device, memory_format=fmt[vgg_cl])
            crit = PerceptualLoss(enc, style, ["relu2_2"], STYLE_LAYERS, 1.0, 1e5, 1.0)
            opt = torch.optim.Adam(net.parameters(), 1e-3, fused=True)  # as training.py
            xf = x.contiguous(memory_format=fmt[net_cl])
            step_net, step_crit = (torch.compile(net), torch.compile(crit)) if compile_ else (net, crit)
            reset_peak(device)
            t = timed(fast_step_fn(step_net, step_crit, opt, xf, precision, device), device,
                      warmup + (3 if compile_ else 0), iters)
            label = (f"fast {precision}" + (" compiled" if compile_ else "")
                     + ("" if layout == "NCHW" else f" {layout}"))
            record(f"train batch {batch}", label, f"{batch / t:.1f} img/s", device)


# ---- data ----------------------------------------------------------------------------------------

def make_fake_folder(n: int, root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"{i:05d}.jpg", quality=90)
    return root


def bench_data(folder: Path, size: int, batch: int, workers: int, batches: int, device) -> None:
    print(f"\nData loader alone ({folder}, {size} px, batch {batch}, {workers} workers):")
    files = find_training_images(folder)
    cache = open_cache(folder, size, files)
    paths = [("decode JPEG (draft mode)", None)] + ([("pre-resized cache", cache)] if cache else [])
    for label, c in paths:
        loader = build_loader(files, size, batch, 0, workers, cache=c,
                                 pin_memory=device.type == "cuda")
        it = iter(loader)
        next(it)  # start the workers
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        dt = time.perf_counter() - t
        record("data loader", label, f"{batches * batch / dt:.0f} img/s", device)
        del it, loader


# ---- end to end ----------------------------------------------------------------------------------

COCO_TRAIN2014 = 82_783  # photos in COCO train2014, the paper's training set


def bench_end_to_end(folder: Path, device, size: int, batch: int, precision: str, compile_: bool,
                     workers: int, steps: int) -> None:
    """fast-nst's real training loop (``do_train``) from ``folder`` (JPEGs, or its ``prepare``
    cache when one exists): images/s over the last third of ``steps``, after warm-up/compiling."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fast_nst.training import train_config_from_dict as config_from_dict
    from fast_nst.training import train as do_train

    files = find_training_images(folder)
    source = "prepare cache" if open_cache(folder, size, files) is not None else "JPEG decode"
    with tempfile.TemporaryDirectory() as tmp:
        style = Path(tmp) / "style.jpg"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(style)
        log_every = max(1, steps // 3)
        cfg = config_from_dict({
            "naming": "bench", "style_image": str(style), "train_dir": str(folder),
            "model_path": tmp, "image_size": size, "batch_size": batch, "max_steps": steps,
            "loss_model_weights": "random", "precision": precision, "compile": compile_,
            "num_workers": workers, "device": str(device), "log_every": log_every,
            "image_log_every": 10 * steps, "checkpoint_every": 10 * steps, "num_samples": 0,
        }, "bench.py")
        reset_peak(device)
        result = do_train(cfg, progress=False)
        events = EventAccumulator(str(result.run_dir)).Reload()
        # The last log_every steps: steady state. data_wait: the share of that interval the loop
        # spent waiting for its loader (near 0 when the device is the limit).
        rate = events.Scalars("perf/images_per_s")[-1].value
        wait = events.Scalars("perf/data_wait")[-1].value
    label = f"fast {precision}" + (" compiled" if compile_ else "") + f", {source}, {workers} workers"
    record(f"train.py loop, batch {batch}, {size} px", label,
           f"{rate:.1f} img/s (waited for data {wait:.0%})", device)
    print(f"    -> 2 epochs of COCO train2014 ({2 * COCO_TRAIN2014} images) would take "
          f"{2 * COCO_TRAIN2014 / rate / 60:.1f} min at this rate; whole call {result.seconds:.0f} s")


# ---- inference -----------------------------------------------------------------------------------

def bench_inference(device, sizes, warmup, iters, precisions, compile_: bool) -> None:
    print("\nStylizing one image (batch 1):")
    torch.manual_seed(0)
    net = TransformNet().eval()
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, device=device)
        ref = Stylizer(net, device, fast=False)
        reset_peak(device)
        with torch.no_grad():  # the reference: plain module call, no inference_mode
            t_ref = timed(lambda: ref.model(x), device, warmup, iters)
        record(f"stylize {w} x {h}", "reference (eager fp32)", f"{t_ref * 1e3:.1f} ms", device)
        for precision in precisions:
            s = Stylizer(net, device, precision=precision, compile=compile_)
            reset_peak(device)
            t = timed(lambda: s.stylize_tensor(x), device, warmup + (2 if compile_ else 0), iters)
            kind = "fast" if s.model.__class__.__name__ == "FastTransformNet" else "module"
            label = f"{kind} {precision}" + (" compiled" if compile_ else "")
            record(f"stylize {w} x {h}", label, f"{t * 1e3:.1f} ms ({t_ref / t:.2f}x)", device)


# ---- quality of the fast paths --------------------------------------------------------------------

def bench_quality(device, size: int, precisions, compile_: bool) -> None:
    """PSNR of each fast path's output against the fp32 reference on the same network: reduced
    precision and compilation must not change what a user sees (target >= 40 dB)."""
    print(f"\nQuality of the fast paths ({size} x {size}, against eager fp32):")
    torch.manual_seed(0)
    net = TransformNet().eval()
    x = torch.rand(1, 3, size, size, device=device)
    ref = Stylizer(net, device, fast=False).stylize_tensor(x)
    variants = [(p, False) for p in precisions] + ([(precisions[-1], True)] if compile_ else [])
    for precision, c in variants:
        y = Stylizer(net, device, precision=precision, compile=c).stylize_tensor(x)
        record(f"quality {size} x {size}", f"{precision}{' compiled' if c else ''} stylizer vs eager fp32",
               f"{psnr(y, ref):.1f} dB PSNR", device)


# ---- video -----------------------------------------------------------------------------------------

def bench_video(device, size: tuple[int, int], frames: int, batch: int) -> None:
    """Frames/s of eval.py --video_file on a generated clip (needs the video extra)."""
    try:
        import av
    except ImportError:
        print("\nVideo: skipped (pip install -e .[video])")
        return
    from fast_nst.commands.eval import main as eval_main
    from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
    from fast_nst.training import train_config_from_dict

    h, w = size
    print(f"\nVideo through eval.py ({w} x {h}, {frames} frames, batch {batch}):")
    with tempfile.TemporaryDirectory() as tmp:
        clip, model = Path(tmp) / "clip.mp4", Path(tmp) / "m.pth"
        with av.open(str(clip), "w") as out:
            stream = out.add_stream("mpeg4", rate=30)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            rng = np.random.default_rng(0)
            for _ in range(frames):
                frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), format="rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        cfg = train_config_from_dict({"naming": "bench", "style_image": "bench.jpg"}, "bench.py")
        atomic_torch_save(make_checkpoint(TransformNet(), cfg, 0), model)
        t = time.perf_counter()
        code = eval_main(["--model_file", str(model), "--video_file", str(clip), "--output_file",
                          str(Path(tmp) / "out.mp4"), "--device", str(device), "--batch_size", str(batch)])
        dt = time.perf_counter() - t
    if code == 0:
        record(f"video {w} x {h}", f"eval.py --video_file, batch {batch}", f"{frames / dt:.1f} frames/s", device)


@dataclass(frozen=True)
class Plan:
    """What to measure and how long, per kind of run."""

    train_size: int  # training crop (px)
    train_batches: tuple[int, ...]  # batches for reference vs each precision
    variant_batch: int  # batch for the compile / channels_last variants
    precisions: tuple[str, ...]
    variant_precision: str
    warmup: int
    iters: int
    data_size: int
    data_batch: int
    data_batches: int
    fake_images: int  # generated JPEGs when --data is not given
    workers: int
    e2e_size: int
    e2e_steps: int
    e2e_runs: tuple[tuple[int, str], ...]  # (batch, precision) of the train.py loop
    sizes: tuple[tuple[int, int], ...]  # (H, W) to stylize
    inference_precisions: tuple[str, ...]
    quality_size: int = 512
    video_size: tuple[int, int] = (1080, 1920)
    video_frames: int = 60


PLANS = {
    # 256 px and batch 16: the H100 targets; 20 timed steps after cudnn.benchmark warm-up.
    "gpu": Plan(256, (4, 16), 16, ("fp32", "bf16", "fp16"), "bf16", 5, 20, 256, 16, 40, 200, 8,
                256, 300, ((4, "fp32"), (16, "bf16")), ((256, 256), (512, 512), (1080, 1920)),
                ("fp32", "bf16", "fp16")),
    # 128 px: a 256 px step takes ~6 s on the 2-core CPU; 3 timed steps are enough there.
    "cpu": Plan(128, (4,), 4, ("fp32", "bf16"), "fp32", 1, 3, 256, 16, 10, 200, 2,
                128, 6, ((4, "bf16"),), ((256, 256), (512, 512), (1080, 1920)), ("fp32",),
                512, (360, 640), 20),
    # --quick: every code path once at toy sizes (the test suite's smoke run), numbers meaningless.
    "quick": Plan(32, (2,), 2, ("fp32", "bf16"), "fp32", 0, 1, 32, 2, 2, 8, 0,
                  32, 2, ((2, "bf16"),), ((32, 32), (24, 40)), ("fp32",), 32, (32, 48), 3),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--only", choices=["train", "data", "e2e", "inference", "quality", "video"], action="append")
    p.add_argument("--data", help="folder of JPEGs for the loader and e2e benchmarks (default: generated)")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default 8 on GPU, 2 on CPU)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile paths")
    p.add_argument("--channels_last", action="store_true",
                   help="also measure channels_last for both networks and for VGG alone")
    p.add_argument("--e2e_steps", type=int, default=None,
                   help="steps of the end-to-end train.py loop (default: 300 on GPU, 6 on CPU)")
    p.add_argument("--out", type=Path, help="also append the table's rows to this markdown file")
    p.add_argument("--json", type=Path, help="also append each row as a JSON line to this file")
    p.add_argument("--make_photos", type=Path, metavar="DIR",
                   help="only write the generated training JPEGs (the plan's count) into DIR, then exit")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true",
                   help="toy sizes, one step each: checks that every path runs (numbers meaningless)")
    return p


def _train_parts(device: torch.device, plan, args: argparse.Namespace) -> None:
    """The training rows: every precision at the plan's batches, then the --compile and
    --channels_last variants at one batch."""
    bench_training(device, plan.train_size, plan.train_batches,
                   [(pr, False, "NCHW") for pr in plan.precisions], plan.warmup, plan.iters)
    compiles = [False, True] if args.compile else [False]
    layouts = ["NCHW", "CL", "CL vgg only"] if args.channels_last else ["NCHW"]
    extra = [(plan.variant_precision, c, lay) for c in compiles for lay in layouts if c or lay != "NCHW"]
    if extra:
        bench_training(device, plan.train_size, (plan.variant_batch,), extra, plan.warmup,
                       plan.iters, reference=False)


def _data_parts(device: torch.device, plan, args: argparse.Namespace, only: set[str], workers: int) -> None:
    """The loader rows and the train.py loop end to end, from --data or generated photos."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data) if args.data else None
        if folder is None:
            folder = make_fake_folder(plan.fake_images, Path(tmp))
        if "data" in only:
            bench_data(folder, plan.data_size, plan.data_batch, workers, plan.data_batches, device)
        if "e2e" in only:
            steps = args.e2e_steps or plan.e2e_steps
            print(f"\nThe train.py loop end to end ({folder}, {steps} steps):")
            runs = [(b, pr, False) for b, pr in plan.e2e_runs]
            if args.compile:
                runs.append((plan.variant_batch, plan.variant_precision, True))
            for batch, precision, compile_ in runs:
                bench_end_to_end(folder, device, plan.e2e_size, batch, precision, compile_, workers, steps)


def _inference_parts(device: torch.device, plan, args: argparse.Namespace, gpu: bool) -> None:
    """Stylizing rows (eager and, with --compile, compiled), and on a CPU the paths beside the peer."""
    bench_inference(device, plan.sizes, warmup=max(1, plan.warmup // 2), iters=plan.iters,
                    precisions=plan.inference_precisions, compile_=False)
    if args.compile:
        bench_inference(device, plan.sizes, warmup=max(1, plan.warmup // 2), iters=plan.iters,
                        precisions=(plan.variant_precision,), compile_=True)
    if not gpu and not args.quick:
        print("\nCPU paths and the peer side by side (alternating, batch 1; OMP_WAIT_POLICY="
              f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}: see benchmarks/cpu_paths.py):")
        side_by_side(rounds=5, record=lambda what, path, value: record(what, path, value, device))


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    plan = PLANS["quick" if args.quick else "gpu" if gpu else "cpu"]
    workers = args.workers if args.workers is not None else plan.workers
    if args.make_photos:
        args.make_photos.mkdir(parents=True, exist_ok=True)
        make_fake_folder(max(plan.fake_images, 4 * plan.data_batch), args.make_photos)
        return 0
    name = torch.cuda.get_device_name(device) if gpu else (platform.processor() or platform.machine())
    header = (f"fast-nst benchmark on {device} ({name}); torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads" + (" (--quick: not a measurement)" if args.quick else ""))
    print(header)
    if args.json:
        JSON_FILE.append(args.json)
    if args.out:
        OUT_FILE.append(args.out)
        with args.out.open("a", encoding="utf-8") as f:
            f.write(f"\n{header}\n\n| what | path | result | peak memory |\n| --- | --- | --- | --- |\n")
    only = set(args.only or ["train", "data", "e2e", "inference", "quality", "video"])
    if gpu:
        torch.backends.cudnn.benchmark = True
    if "train" in only:
        _train_parts(device, plan, args)
    if "data" in only or "e2e" in only:
        _data_parts(device, plan, args, only, workers)
    if "inference" in only:
        _inference_parts(device, plan, args, gpu)
    if "quality" in only:
        bench_quality(device, plan.quality_size, plan.inference_precisions if gpu else ("fp32", "bf16"),
                      args.compile)
    if "video" in only:
        bench_video(device, plan.video_size, plan.video_frames, 4)
    print("\n| what | path | result | peak memory |\n| --- | --- | --- | --- |")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
