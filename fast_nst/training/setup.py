"""Everything a training run checks and loads before step 1, so that a mistake costs seconds:
the run folder (writable, not holding another run unless resuming or overwriting), the resume
checkpoint, the photos, the style image (or, for an arbitrary-style network, the paintings of
style_dir), the network's arguments and the loss network.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch

from .. import nets
from ..core.config import TrainConfig
from ..core.device import resolve_device, slow_training_note
from ..core.errors import CheckpointError, ConfigError, DataError, FastNSTError
from ..core.untrusted.downloads import fetch_style_image
from ..core.images import pil_to_tensor
from ..core.untrusted import open_image, resize_style, shown, style_rgb
from ..core.untrusted.safetensors_header import require_safetensors
from ..io import checkpoint as ckpt_io
from ..io.hub import cached_copy_errors, local_model_file
from ..lossnet import get_loss_network, min_side
from ..lossnet.vgg import VGGEncoder, build_loss_network
from ..nets.adain import file_sha256
from ..nets.base import StyleNetwork
from ..nets.multistyle import MAX_STYLES
from .config import train_config_from_dict
from .data import find_training_images, load_sample_images
from .networks import (build_network, check_network_args, encoder_layers, network_args, network_difference,
                       style_sources)
from .distributed import DistContext
from .lock import RunLock
from .run_folder import check_run_folder_writable, clear_previous_run, run_files, set_aside_later

__all__ = ["CONFIG_FILE", "RunSetup", "build_network", "check_network_args", "find_resume_checkpoint",
           "load_style_tensor", "network_args", "prepare_run", "style_sources", "total_steps"]

CONFIG_FILE = "config.yml"
VAL_HINT = ("Get COCO val2014 (6 GB) with: python -m fast_nst.download coco --split val   (or set "
            "val_dir to any folder of photos not used for training, or to '' for no validation).")
PAINTINGS_HINT = ("Set style_dir to a folder of paintings (jpg, jpeg, png, webp, bmp; flat or nested): "
                  "Huang & Belongie (2017) trained on WikiArt's ~80,000 paintings.")
# Keys that may change between a run and its resumption without changing what is learned:
# where files go and what they are called, how long the run goes on, what it logs and how often
# it saves, where and how fast the same arithmetic runs (device, compile, channels_last change
# at most its rounding), and init_from (the checkpoint's weights replace it). Anything else, a
# moved style image or train_dir included, gets a warning.
RESUME_SAFE_KEYS = {
    "naming", "model_path", "final_format", "max_steps", "epochs",
    "log_every", "image_log_every", "checkpoint_every", "keep_checkpoints",
    "sample_images", "num_samples", "val_dir", "val_every", "val_images",
    "device", "num_workers", "compile", "channels_last", "loss_model_file", "init_from",
}


@dataclass
class RunSetup:
    """Everything validated before step 1."""

    device: torch.device
    run_dir: Path
    files: list
    styles: list  # one (1, 3, h, w) tensor in [0, 1] per style of the config
    encoder: VGGEncoder
    steps: int
    resume_ckpt: Optional[dict]
    resume_path: Optional[Path]
    val_files: list = field(default_factory=list)  # photos of val_dir (empty: no validation)
    lock: Optional[RunLock] = None  # rank 0's lock on run_dir, released when the run ends
    style_names: list = field(default_factory=list)  # the styles' names, as styles
    init_model: Optional[StyleNetwork] = None  # the network init_from gives, to train on (not when resuming)
    style_files: list = field(default_factory=list)  # paintings of style_dir (arbitrary-style networks)
    encoder_sha256: str = ""  # their encoder's weights file's SHA-256 ("" for random weights)

    @property
    def model_file(self) -> Path:
        return self.run_dir / f"{self.run_dir.name}.pth"

    @property
    def style(self) -> torch.Tensor:
        """The first (for a single-style network: the) style image, (1, 3, h, w) in [0, 1]."""
        return self.styles[0]


def total_steps(cfg: TrainConfig, num_images: int, world_size: int = 1) -> int:
    """max_steps if set, else epochs over the images in whole global batches."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    return cfg.epochs * (num_images // (cfg.batch_size * world_size))


def load_style_tensor(cfg: TrainConfig, source: Optional[str] = None) -> torch.Tensor:
    """The style image ``source`` (default: ``style_image``) as (1, 3, h, w) in [0, 1], longest
    side ``style_size``."""
    source = source or cfg.style_image
    key = "style_image" if source == cfg.style_image else "style_images"
    path = fetch_style_image(source)
    # The loss network pools the style image down to its deepest layer: a thinner side would
    # end in max_pool2d's "Output size is too small" after the loader had started.
    least = min_side(cfg.loss_model, encoder_layers(cfg))
    try:
        img = style_rgb(open_image(path), source)  # transparency made white, with a warning
        fits = -(-least * max(img.size) // min(img.size)) if min(img.size) else None  # the style_size that fits
        img = resize_style(img, cfg.style_size, "longer", path, "style_size")
        if min(img.size) < least:
            at = f"at style_size {cfg.style_size}" if cfg.style_size else "(style_size: null)"
            fix = f"set style_size: {fits} or more, or crop" if fits else "use"
            raise DataError(f"style image of {img.width} x {img.height} px {at}: style images need at least "
                            f"{least} px per side for the loss network's layers; {fix} a less elongated image")
    except DataError as e:
        raise DataError(f"Style image ({key}: {shown(source)}) cannot be used: {e}") from None
    return pil_to_tensor(img).unsqueeze(0)


def _read_init(cfg: TrainConfig, style_names: list) -> StyleNetwork:
    """The network of ``init_from`` that training starts from (in eval mode): a multi-style
    model with the config's styles it lacks appended, or a one-style model of the network the
    config trains (its weights; the optimizer starts afresh at step 0)."""
    if nets.NETWORKS[cfg.model_type].style_input:
        raise ConfigError(f"init_from: model_type {cfg.model_type} learns no styles to start from; continue "
                          "an arbitrary-style run with --resume in its run folder")
    if not nets.NETWORKS[cfg.model_type].many_styles:
        return _one_style_init(cfg)
    path = local_model_file(cfg.init_from)
    with cached_copy_errors(path):
        ckpt = ckpt_io.read_checkpoint(path)
    model_type = ckpt.get("model_type", "johnson")
    if model_type not in nets.NETWORKS or not nets.NETWORKS[model_type].many_styles:
        raise ConfigError(f"init_from: {cfg.init_from} is a {model_type} network (one style); "
                          f"styles can be added to a multi-style model (model_type "
                          f"{cfg.model_type}), e.g. models/multi11/multi11.pth")
    if model_type != cfg.model_type:
        raise ConfigError(f"init_from: {cfg.init_from} is a {model_type} network, the config "
                          f"trains model_type {cfg.model_type}; set model_type: {model_type}")
    _check_added_styles(cfg, ckpt)
    net = ckpt_io.build_model(ckpt, cfg.init_from)
    found = network_difference(cfg, model_type, net.args)
    if found is not None:
        raise ConfigError(f"init_from: {shown(cfg.init_from)} is a {model_type} network{found[0]}; set "
                          f"{found[1]} to add styles to it")
    return net.with_styles(style_names)


def _one_style_init(cfg: TrainConfig) -> StyleNetwork:
    """``init_from``'s network (any model file eval.py reads: fast-nst's .pth or .safetensors, a
    pytorch/examples .pth) when it is the very network the config builds; ConfigError saying
    what to set otherwise."""
    path = local_model_file(cfg.init_from)
    try:
        with cached_copy_errors(path):
            net, _ = ckpt_io.load_model(path)
    except CheckpointError as e:
        raise ConfigError(f"init_from: {e}") from None
    found = network_difference(cfg, net.model_type, net.args)
    if found is None:
        return net
    differ, settings = found
    where = f"init_from: {shown(cfg.init_from)} is a {net.model_type} network{differ}; set {settings}"
    if nets.NETWORKS[net.model_type].many_styles:
        raise ConfigError(f"{where} and list the styles to add in style_images (its own styles are kept)")
    raise ConfigError(f"{where} to train it further")


def _check_added_styles(cfg: TrainConfig, ckpt: dict) -> None:
    """ConfigError, before any work, when the styles of ``init_from`` plus the new ones of
    style_images exceed what a multi-style network holds (:data:`MAX_STYLES`), or when
    ``freeze: convolutions`` (which keeps every style of ``init_from`` as it is) meets a style
    that ``init_from`` already holds: training it would change its norm rows."""
    names = ckpt.get("style_names")
    count = ckpt["model_args"].get("num_styles")
    if isinstance(names, list):
        existing = {n for n in names if isinstance(n, str)}
        count = len(names)
    else:  # unnamed styles are style0, style1, ... (io.checkpoint)
        count = count if isinstance(count, int) and not isinstance(count, bool) else 0
        existing = {f"style{i}" for i in range(min(count, MAX_STYLES))}
    listed = [n for n, _ in style_sources(cfg)]
    again = [n for n in listed if n in existing]
    if again and cfg.freeze == "convolutions":
        raise ConfigError(f"init_from: {shown(cfg.init_from)} already holds the style(s) {shown(', '.join(again))}, "
                          "which style_images lists again; with freeze: convolutions its styles stay exactly "
                          "as they are and only new styles train: list only the styles to add in style_images "
                          "(or drop freeze to train the listed styles further with the whole network)")
    new = [n for n in listed if n not in existing]
    if count + len(new) > MAX_STYLES:
        raise ConfigError(f"init_from: {cfg.init_from} has {count} styles and style_images adds {len(new)}, "
                          f"{count + len(new)} in all; a multi-style network holds at most {MAX_STYLES}. "
                          f"Train the new styles into a model of their own, or add at most "
                          f"{max(0, MAX_STYLES - count)}.")


def find_resume_checkpoint(run_dir: Path, resume: Union[bool, str]) -> tuple[dict, Path]:
    """The checkpoint to resume from and its path: ``resume`` itself, or (True) the newest intact
    one in the run folder; damaged newer ones are skipped with a warning naming them."""
    if resume is not True:
        return ckpt_io.read_checkpoint(resume), Path(resume)
    found = ckpt_io.list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"--resume: no checkpoints in {run_dir / ckpt_io.CHECKPOINT_DIR}. "
                              "Start without --resume to train from scratch.")
    damaged = []
    for _, path in reversed(found):
        try:
            ckpt = ckpt_io.read_checkpoint(path)
        except CheckpointError as e:
            damaged.append(f"{path.name} ({str(e).split(': ', 1)[-1][:120]})")
            continue
        if damaged:
            warnings.warn(f"--resume: skipped damaged checkpoint(s) {'; '.join(damaged)}; resuming "
                          f"from {path.name}, the newest intact one.")
        return ckpt, path
    raise CheckpointError(f"--resume: every checkpoint in {run_dir / ckpt_io.CHECKPOINT_DIR} is damaged: "
                          f"{'; '.join(damaged)}. Start again with --overwrite.")


def _check_run_folder(cfg: TrainConfig, run_dir: Path, resume, overwrite: bool, command: str,
                      ctx: DistContext) -> None:
    if resume and overwrite:
        raise FastNSTError("--resume and --overwrite contradict each other; choose one.")
    if not resume and not overwrite:
        previous = run_files(run_dir, cfg.naming)
        if previous:
            raise FastNSTError(
                f"{run_dir} already holds a run ({', '.join(str(p.name) for p in previous[-2:])}). "
                f"Continue it with: {command} --resume   or start again "
                f"(deleting its checkpoints, model and logs) with: {command} --overwrite"
            )
    check_run_folder_writable(run_dir)


def _read_resume(cfg: TrainConfig, run_dir: Path, resume, ctx: DistContext) -> tuple[dict, Path]:
    """The checkpoint to resume from; refuses one a run of another global batch wrote, and warns
    when the config changed in a way that matters."""
    ckpt, path = find_resume_checkpoint(run_dir, resume)
    if ckpt["kind"] != "training":
        raise CheckpointError(f"{path} is a final model without optimizer state; "
                              "resume from a file in the run's checkpoints/ folder.")
    try:
        old = train_config_from_dict(ckpt["config"], f"{path} (saved config)")
    except FastNSTError as e:
        raise CheckpointError(str(e)) from None
    _check_global_batch(cfg, ckpt, old, path, ctx)
    _check_resume_network(cfg, ckpt, old, path)
    changed = sorted(k for k, v in cfg.to_dict().items()
                     if k not in RESUME_SAFE_KEYS and old.to_dict().get(k) != v)
    if changed and ctx.is_main:
        warnings.warn(f"Resuming with a config that differs from the checkpoint's in: "
                      f"{', '.join(changed)}; the result will not match an uninterrupted run.")
    return ckpt, path


def _check_resume_network(cfg: TrainConfig, ckpt: dict, old: TrainConfig, path: Path) -> None:
    """ConfigError, before any work, unless the checkpoint holds the network the config trains:
    its model_type and model_args and, for a multi-style network, the styles in the config's
    order (the round robin's). A resume continues its own run; training another network in it
    would replace the run's model with a network of another kind."""
    model_type = ckpt.get("model_type", ckpt_io.LEGACY_MODEL_TYPE)
    try:
        args = nets.make_args(model_type, ckpt["model_args"])
    except ValueError as e:
        raise CheckpointError(f"{path}: bad model_args ({str(e)[:300]}).") from None
    run_config = path.parent.parent / CONFIG_FILE
    own = f"its run's config ({run_config})" if path.parent.name == ckpt_io.CHECKPOINT_DIR else "its run's config"
    found = network_difference(cfg, model_type, args)
    if found is not None:
        styles = " and the styles to add in style_images" if nets.NETWORKS[model_type].many_styles else ""
        raise ConfigError(f"--resume: {path} holds a {model_type} network{found[0]}; a checkpoint continues only "
                          f"the run that wrote it. Resume with {own}, or start a new run from its weights: "
                          f"--init_from {path} with {found[1]}{styles}")
    if not nets.NETWORKS[model_type].many_styles:
        return
    theirs, ours = [n for n, _ in style_sources(old)], [n for n, _ in style_sources(cfg)]
    held = ckpt.get("style_names") if isinstance(ckpt.get("style_names"), list) else []
    if ours != theirs:
        raise ConfigError(f"--resume: {path} was trained on the styles {shown(', '.join(theirs))} (in this order), "
                          f"the config lists {shown(', '.join(ours))}; a checkpoint continues only the run that "
                          f"wrote it. Resume with {own} (its style_images, in that order), or add styles in a "
                          f"new run: --init_from {path} with only the styles to add in style_images")
    missing = [n for n in ours if n not in held]
    if missing:
        raise CheckpointError(f"{path}: its network lacks the style(s) {shown(', '.join(missing))} its config "
                              "trains; the file is damaged. Resume from another checkpoint (--resume PATH).")


def _processes(n: int) -> str:
    return f"{n} process{'es' if n > 1 else ''}"


def _check_global_batch(cfg: TrainConfig, ckpt: dict, old: TrainConfig, path: Path, ctx: DistContext) -> None:
    """Refuse a resume whose global batch (batch_size x processes) differs from the checkpoint's:
    it would silently train on a different data order and step size."""
    saved_world = ckpt.get("world_size", 1)
    if isinstance(saved_world, bool) or not isinstance(saved_world, int) or not 1 <= saved_world <= 1 << 16:
        raise CheckpointError(f"{path}: world_size is {str(saved_world)[:40]!r}, not a process count; "
                              "the file is damaged. Resume from another checkpoint (--resume PATH).")
    saved = old.batch_size * saved_world
    now = cfg.batch_size * ctx.world_size
    if now == saved:
        return
    fix = (f"torchrun --nproc_per_node={saved_world} train.py ... --resume" if saved_world > 1
           else "python train.py ... --resume (one process)")
    same = (f", or keep {_processes(ctx.world_size)} with --set batch_size={saved // ctx.world_size}"
            if saved % ctx.world_size == 0 else "")
    raise FastNSTError(
        f"{path} was trained by {_processes(saved_world)} x batch_size {old.batch_size} = global batch "
        f"{saved}; this run has {_processes(ctx.world_size)} x batch_size {cfg.batch_size} = {now}. "
        f"Resume as it was started: {fix}{same}.")


def _inputs(cfg: TrainConfig, ctx: DistContext) -> tuple[list, torch.Tensor, VGGEncoder, list]:
    """The photos, the style image, the loss network and the validation photos; every one that is missing is reported
    in one message, each with its fix (a fresh set-up usually lacks all three)."""
    layers = encoder_layers(cfg)
    loaders = (
        lambda: find_training_images(cfg.train_dir),
        (lambda: find_training_images(cfg.style_dir, key="style_dir", hint=PAINTINGS_HINT)) if nets.takes_style_image(cfg.model_type)
        else (lambda: [load_style_tensor(cfg, src) for _, src in style_sources(cfg)]),
        lambda: build_loss_network(cfg.loss_model_weights, layers, cfg.loss_model_file or None,
                                   seed=cfg.seed, quiet=not ctx.is_main, name=cfg.loss_model),
        lambda: find_training_images(cfg.val_dir, key="val_dir", hint=VAL_HINT) if cfg.val_dir else [],
        lambda: _check_sample_images(cfg),
    )
    found, problems = [], []
    for load in loaders:
        try:
            found.append(load())
        except FastNSTError as e:
            found.append(None)
            problems.append(e)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        listed = "\n".join(f"  {i}. {e}" for i, e in enumerate(problems, 1))
        raise DataError(f"{len(problems)} things are missing before training can start:\n{listed}")
    return found[0], found[1], found[2], found[3]


def _check_sample_images(cfg: TrainConfig) -> None:
    """DataError naming sample_images unless each is a photo the logs can show: decoded here,
    as the logs will (they open after --overwrite has cleared the previous run)."""
    fix = "give photos Pillow can read, or [] for fixed picks from val_dir or train_dir."
    missing = [p for p in cfg.sample_images if not Path(p).is_file()]
    if missing:
        raise DataError(f"sample_images: {', '.join(shown(str(p)[:200]) for p in missing[:3])} not found; {fix}")
    try:
        load_sample_images(cfg.sample_images, [], 0, cfg.image_size)
    except DataError as e:
        raise DataError(f"sample_images: {e}; {fix}") from None


def prepare_run(cfg: TrainConfig, resume: Union[bool, str, None], overwrite: bool, command: str,
                ctx: DistContext) -> RunSetup:
    """Fail fast: check everything a user can get wrong, before any compute; then lock the run
    folder (rank 0) so no other run writes into it. ``cfg`` passed the config's own checks
    (train() rebuilds a TrainConfig made directly through them)."""
    check_network_args(cfg)
    if cfg.final_format == "safetensors":  # before training, not when its end is written
        require_safetensors("final_format: safetensors")
    device = resolve_device(cfg.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)  # one GPU per process under torchrun
    slow = slow_training_note(device, cfg.precision)
    if slow and ctx.is_main:
        warnings.warn(slow)
    run_dir = Path(cfg.model_path) / cfg.naming
    _check_run_folder(cfg, run_dir, resume, overwrite, command, ctx)
    resume_ckpt, resume_path = _read_resume(cfg, run_dir, resume, ctx) if resume else (None, None)
    names = [n for n, _ in style_sources(cfg)]
    init_model = _read_init(cfg, names) if cfg.init_from and resume_ckpt is None else None
    files, styles, encoder, val_files = _inputs(cfg, ctx)
    style_files, sha = [], ""
    if nets.takes_style_image(cfg.model_type):
        style_files, styles = styles, []
        sha = _arbitrary_checks(cfg, style_files, resume_ckpt, resume_path, ctx)
    if len(files) < cfg.batch_size * ctx.world_size:  # also with max_steps: every step takes a full batch
        raise DataError(f"Only {len(files)} training images for a global batch of {cfg.batch_size * ctx.world_size} "
                        f"(train_dir {shown(cfg.train_dir)}): add images or lower batch_size.")
    steps = total_steps(cfg, len(files), ctx.world_size)
    if resume_ckpt is not None and resume_ckpt["step"] >= steps:
        again = re.sub(r" --set '?max_steps=[^ ]*", "", command)  # the hint sets its own
        raise FastNSTError(
            f"{resume_path} is at step {resume_ckpt['step']}, and this run ends at step {steps} "
            f"(max_steps/epochs): nothing left to train. To train further, raise the end, e.g. "
            f"{again} --resume --set max_steps={resume_ckpt['step'] + 1000}")
    lock = _take_run_folder(run_dir, cfg.naming, overwrite, resume_ckpt) if ctx.is_main else None
    return RunSetup(device, run_dir, files, styles, encoder, steps, resume_ckpt, resume_path, val_files, lock,
                    names, init_model, style_files, sha)


def _take_run_folder(run_dir: Path, naming: str, overwrite: bool, resume_ckpt: Optional[dict]) -> RunLock:
    """Lock the run folder (made if missing), then, holding the lock (another run may be writing
    these), remove half-written checkpoints and clear the previous run (``--overwrite``) or set
    aside the checkpoints of the branch a resume leaves."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir).acquire()
    try:
        for stale in (run_dir / ckpt_io.CHECKPOINT_DIR).glob(".step_*.tmp*"):
            stale.unlink(missing_ok=True)  # half-written by a process killed mid-save
        if overwrite:
            clear_previous_run(run_dir, naming)
        elif resume_ckpt is not None:
            set_aside_later(run_dir, int(resume_ckpt["step"]))
    except OSError as e:
        lock.release()
        what = "clear the previous run" if overwrite else "tidy the checkpoints"
        raise FastNSTError(f"Cannot {what} in {run_dir}: {e.strerror or e}.") from None
    return lock


def _arbitrary_checks(cfg: TrainConfig, paintings: list, resume_ckpt: Optional[dict],
                      resume_path: Optional[Path], ctx: DistContext) -> str:
    """For an arbitrary-style network: enough paintings for a batch, and a resumed run keeps the
    encoder it was trained with. Returns the encoder file's SHA-256 ("" for random weights)."""
    if len(paintings) < cfg.batch_size * ctx.world_size:
        raise DataError(f"style_dir {cfg.style_dir} has {len(paintings)} paintings, fewer than a batch "
                        f"({cfg.batch_size * ctx.world_size}); add paintings or lower batch_size.")
    path = Path(cfg.loss_model_file or get_loss_network(cfg.loss_model).file)
    sha = file_sha256(path) if cfg.loss_model_weights == "imagenet" else ""
    if resume_ckpt is None:
        return sha
    saved, now = resume_ckpt["model_args"], network_args(cfg, sha)
    differ = [k for k in ("encoder", "encoder_layer", "encoder_weights", "encoder_seed", "encoder_sha256")
              if saved.get(k) != now.get(k)]
    if differ:
        shown = "; ".join(f"{k} {str(saved.get(k))[:16]!r} (now {str(now.get(k))[:16]!r})" for k in differ)
        raise CheckpointError(f"{resume_path} was trained with another encoder: {shown}. Its decoder fits "
                              "only that one: resume with the loss_model, loss_model_file, "
                              "loss_model_weights and seed it was trained with.")
    return sha
