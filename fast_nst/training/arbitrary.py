"""Training an arbitrary-style network (model_type adain: Huang & Belongie, "Arbitrary Style
Transfer in Real-time with Adaptive Instance Normalization", ICCV 2017): :class:`ArbitraryTrainer`.

Each step pairs a batch of photos (train_dir) with a batch of painting crops (style_dir): the
frozen encoder f gives the AdaIN target t = AdaIN(f(photos), f(paintings)), the decoder g maps
it to an image, and :class:`~fast_nst.lossnet.losses.AdaINLoss` compares f(g(t)) with t
(content, at the encoder's last layer) and with the paintings' feature statistics (style, at
``style_layers``). Only the decoder trains (and is checkpointed, with Adam's state); the encoder
is the loss network (``loss_model``, ``loss_model_file``, ``loss_model_weights``), rebuilt from
them on resume and refused if its file changed.

What :class:`~fast_nst.training.trainer.Trainer` does is kept: precision, torch.compile and DDP
(around the decoder), checkpoints, signals, logging. Paintings come from a second endless loader
with the photos' crop and order machinery (its own seed), so a resumed run sees the same pairs.
Samples and validation use fixed photo x painting pairs. ``content_layers`` is not used (the
content loss is at ``model_args.encoder_layer``).

The paper's recipe (Sec. 6.1) as config values::

    model_type: adain           # model_args: {encoder_layer: relu4_1} (the default)
    loss_model: vgg19           # the paper's encoder (vgg16 and the Caffe files work too)
    style_dir: data/wikiart     # the paper: WikiArt, ~80,000 paintings; photos: COCO
    style_layers: [relu1_1, relu2_1, relu3_1, relu4_1]
    content_weight: 1
    style_weight: 10            # the paper's lambda (its authors' code: 10)
    tv_weight: 0                # the paper has no TV term
    lr: 1.0e-4                  # Adam
    batch_size: 8               # 8 content-style pairs
    image_size: 256
    max_steps: 160000           # the authors' code trains 160k iterations
    style_warmup_steps: 0       # the paper: none (short runs: see docs/arbitrary.md)

    resize_to: 512              # images resized to a shorter side of 512, then random 256 crops

(Without ``resize_to`` the loader resizes the shorter side to ``image_size`` and crops that
square, as for the Johnson networks: a crop then holds the whole shorter side, at half the
paper's scale.)
"""

from __future__ import annotations

import random
import sys
from typing import Iterator

import torch
from torch.utils.data import DataLoader

from ..core.errors import CheckpointError, ConfigError, DataError
from ..lossnet import STATS_STYLE_DEGREE
from ..lossnet.losses import AdaINLoss
from ..nets import make_args, network_class
from ..nets.adain import AdaINNet
from .data import batch_to_device, build_loader, load_sample_images
from .setup import network_args
from .stability import moved_copy, stability_loss
from .trainer import Trainer

__all__ = ["ArbitraryTrainer", "PAINTING_SEED_OFFSET", "PairedLoader", "VAL_PAINTINGS", "style_ramp"]

# The painting loader's seed is the photos' plus this (a large prime), so the two loaders draw
# unrelated orders and crop positions.
PAINTING_SEED_OFFSET = 1_000_003
# Validation stylizes every validation photo with each of this many fixed paintings: a few
# styles keep the mean loss from depending on one painting, and 16 photos x 4 cost 8 batches of 8.
VAL_PAINTINGS = 4


def style_ramp(step: int, warmup_steps: int) -> float:
    """The style loss's factor at training step ``step`` (1-based): step / warmup_steps, rising
    linearly to 1 at ``warmup_steps`` (``style_warmup_steps``); always 1 without a warm-up."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


class PairedLoader:
    """Batches of photos and of paintings side by side: each item is the photo loader's batch
    with ``painting`` (N, 3, S, S) uint8 added, ``ok`` for both and ``photos_ok`` for the photos."""

    def __init__(self, photos: DataLoader, paintings: DataLoader):
        self.photos, self.paintings = photos, paintings

    def __iter__(self) -> Iterator[dict]:
        # Both iterators are made (their workers started) here and live in the generator only:
        # when the training loop lets go of it, their workers shut down (see data.build_loader).
        return _pairs(iter(self.photos), iter(self.paintings))


def _pairs(photos: Iterator[dict], paintings: Iterator[dict]) -> Iterator[dict]:
    for batch in photos:
        art = next(paintings)
        yield {"image": batch["image"], "painting": art["image"], "ok": batch["ok"] and art["ok"],
               "photos_ok": batch["ok"], "bad_files": batch["bad_files"] + art["bad_files"]}


class ArbitraryTrainer(Trainer):
    """A :class:`~fast_nst.training.trainer.Trainer` for networks whose style is an image
    (``style_input == "image"``): the steps, loss, data, samples and validation of AdaIN."""

    stylize_flags = " --style_image PAINTING.jpg"

    def _build_model(self) -> AdaINNet:
        cfg, setup = self.cfg, self.setup
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        # The encoder is the loss network set-up built (and, on resume, checked against the
        # checkpoint's); only the decoder is new or read from the checkpoint.
        try:
            args = make_args(cfg.model_type, network_args(cfg, setup.encoder_sha256))
            model = network_class(cfg.model_type)(args, encoder=setup.encoder)
        except ValueError as e:
            raise ConfigError(f"config: key 'model_args' {e}") from None
        if setup.resume_ckpt is not None:
            try:
                model.load_state_dict(setup.resume_ckpt["model_state"])
            except RuntimeError as e:
                raise CheckpointError(f"{setup.resume_path}: its decoder does not fit this config's network "
                                      f"({' '.join(str(e).split())[:300]}).") from None
        return model.to(self.device, memory_format=self.memory_format).train()

    def _build_loss(self) -> AdaINLoss:
        cfg = self.cfg
        content, style, tv = self.loss_weights(STATS_STYLE_DEGREE)
        return AdaINLoss(self.model.encoder, self.model.layer, cfg.style_layers, content, style, tv,
                         cfg.style_layer_weights)

    def trained_module(self) -> torch.nn.Module:
        return self.model.decoder  # the encoder is frozen: DDP and compile need only the decoder

    def _build_loader(self) -> PairedLoader:
        cfg, ctx = self.cfg, self.ctx
        paintings = build_loader(self.setup.style_files, cfg.image_size, cfg.batch_size,
                                 cfg.seed + PAINTING_SEED_OFFSET, cfg.num_workers, start_step=self.start_step,
                                 pin_memory=self.device.type == "cuda", rank=ctx.rank, world_size=ctx.world_size,
                                 resize_to=cfg.resize_to)
        return PairedLoader(super()._build_loader(), paintings)

    def _paintings(self, count: int) -> torch.Tensor:
        """``count`` fixed paintings of style_dir, centre crops (count, 3, S, S) in [0, 1] on the device."""
        found = load_sample_images([], self.setup.style_files, count, self.cfg.image_size)
        return found.to(self.device, memory_format=self.memory_format)

    def _open_logs(self):
        samples, writer = super()._open_logs()
        self.sample_paintings = self._paintings(len(samples)) if len(samples) else torch.zeros(0)
        if writer is not None and self.start_step == 0 and len(self.sample_paintings):
            writer.add_images("samples/paintings", self.sample_paintings.cpu(), 0)
        return samples, writer

    def _load_validation(self) -> torch.Tensor:
        photos = super()._load_validation()
        self.val_paintings = self._paintings(VAL_PAINTINGS) if len(photos) else torch.zeros(0)
        return photos

    def _announce(self) -> None:
        super()._announce()
        if self.main:
            print(f"  with {len(self.setup.style_files)} paintings of {self.cfg.style_dir}", file=sys.stderr)

    # -- the steps ---------------------------------------------------------------------------

    def step_inputs(self, batch: dict) -> tuple:
        return batch["image"], batch["painting"]

    def check_stop(self, batch: dict, stop: dict) -> None:
        try:
            super().check_stop(batch, stop)
        except DataError:
            if batch["photos_ok"] and not batch["ok"]:  # the paintings failed, not the photos
                raise DataError(f"No readable paintings found in {self.cfg.style_dir}: {len(self.skipped)} "
                                "files failed to decode in a row. Check the folder's contents.") from None
            raise

    def _pair(self, x: torch.Tensor, s: torch.Tensor, decoder: torch.nn.Module,
              loss: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Photos ``x`` and paintings ``s`` (N, 3, S, S) in [0, 1] -> (g(t) (N, 3, S, S), loss terms)."""
        target, style_stats = self.criterion.targets(x, s)
        y = decoder(target)
        return y, loss(y, target, style_stats)

    def train_step(self, photos: torch.Tensor, paintings: torch.Tensor) -> None:
        """One optimizer step on a batch of photos and one of paintings (N, 3, S, S) uint8; no host sync."""
        x = batch_to_device(photos, self.device, self.memory_format)
        s = batch_to_device(paintings, self.device, self.memory_format)
        self.optimizer.zero_grad(set_to_none=True)
        self.criterion.set_style_scale(style_ramp(self.step + 1, self.cfg.style_warmup_steps))
        with self.autocast():
            if self.cfg.stability_weight:
                terms = self._stable_terms(x, s)
            else:
                _, terms = self._pair(x, s, self.step_model, self.step_loss)
        self.optimize(terms)

    def _stable_terms(self, x: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of photos ``x`` in the styles of ``s`` (N, 3, S, S) plus ``stability``
        (:mod:`.stability`): the photos and a moved copy are decoded in the same styles as one
        batch (one DDP forward); the loss network sees only the photos' stylizations."""
        moved, motions = moved_copy(x, self.cfg.seed, self.step, self.ctx.rank * len(x))
        stats = self.criterion.style_stats(s)
        target = self.criterion.target(x, stats)
        y, y_moved = self.step_model(torch.cat([target, self.criterion.target(moved, stats)])).split(len(x))
        terms = dict(self.step_loss(y, target, stats))
        terms["stability"] = stability_loss(y, y_moved, motions)
        terms["total"] = terms["total"] + self.cfg.stability_weight * terms["stability"]
        return terms

    # -- samples and validation ----------------------------------------------------------------

    @torch.no_grad()
    def log_samples(self) -> None:
        """Sample photo i in the style of sample painting i (TensorBoard ``samples/stylized``)."""
        if not len(self.sample_paintings):
            return
        paintings = self.sample_paintings[torch.arange(len(self.samples)) % len(self.sample_paintings)]
        with self.autocast():
            y = self.shipped(self.samples, paintings)
        self.writer.add_images("samples/stylized", y.float().clamp(0, 1).cpu(), self.step)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss terms of every validation photo with each of the fixed validation paintings
        (``val/...``), and the first photos in each style (``val/stylized``); rank 0 only."""
        keys = ["total", "content", "style", "tv"]
        sums = torch.zeros(len(keys), dtype=torch.float64, device=self.device)
        shown, count = [], 0
        for painting in self.val_paintings:  # (3, S, S)
            for i, chunk in enumerate(self.val_photos.split(self.cfg.batch_size)):
                s = painting.unsqueeze(0).expand(len(chunk), -1, -1, -1)
                with self.autocast():
                    y, terms = self._pair(chunk, s, self.shipped.decoder, self.criterion)
                sums += torch.stack([terms[key].double() for key in keys]) * len(chunk)
                count += len(chunk)
                if i == 0:
                    shown.append(y[: self.cfg.num_samples or 4].float().clamp(0, 1))
        means = dict(zip(keys, (sums / max(count, 1)).tolist()))
        # At the full style weight, warm-up or not: validation measures the objective itself.
        means["total"] = means["content"] + means["style"] + means["tv"]
        self.val_total = means["total"]
        if self.writer is not None and count:
            for key, value in means.items():
                self.writer.add_scalar(f"val/{key}", value, self.step)
            self.writer.add_images("val/stylized", torch.cat(shown).cpu(), self.step)
        return means
