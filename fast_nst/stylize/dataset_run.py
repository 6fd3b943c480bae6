"""Stylizing a whole dataset: decoding in loader workers, one batch per chunk of the plan (photos
of one size together), atomic writes, this rank's part of the manifest. The plan and the
manifest are :mod:`fast_nst.stylize.dataset`; the command is ``python -m fast_nst.stylize_dataset``.
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..core.errors import DataError, FastNSTError
from ..core.images import pil_to_tensor, save_image, split_alpha, tensor_to_pil
from ..core.untrusted import open_image, resize_style, shown, style_rgb
from ..nets.adain import AdaINNet
from ..nets.base import StyleNetwork
from .base import DEFAULT_STYLE_SIZE, resize_for_processing
from .dataset import DatasetPlan, write_part

__all__ = ["DatasetSettings", "stylize_shard", "weights_digest"]

# Style statistics kept per process: (C,) mean and std per painting, 4 kB at relu4_1; a painting
# drawn again within the last 4096 draws is not decoded and encoded again (its numbers are the
# same either way: one painting at a time, the same computation).
_STATS_CACHE = 4096
# The longest reason printed for a skipped photo: room for a deep dataset path and the advice
# after it (e.g. --max_image_pixels).
_LINE = 500


@dataclass(frozen=True)
class DatasetSettings:
    """How a run stylizes: ``alpha`` (AdaIN: 1 the full style), ``style_size`` (a painting's
    longest side before encoding, as style_size means everywhere), ``max_size`` (the longest
    side a photo may keep: larger ones shrink, none grows; None keeps every size), ``quality``
    (JPEG and WebP), ``workers`` (decoding processes per rank)."""

    alpha: float = 1.0
    style_size: int = DEFAULT_STYLE_SIZE
    max_size: Optional[int] = None
    quality: int = 95
    workers: int = 2
    # The model's smallest style image side (AdaIN: 2 px at its encoder layer); a painting
    # smaller after its resize skips the photos drawn for it, as an unreadable one does.
    min_style_side: int = 1


class _Chunks(Dataset):
    """Item i: chunk ``chunks[i]`` of the plan decoded: ({photo: (3, H, W) tensor or error text},
    {painting: (3, h, w) tensor or error text}); runs in a loader worker."""

    def __init__(self, plan: DatasetPlan, chunks: Sequence[int], styles: Optional[Path], settings: DatasetSettings):
        self.plan, self.chunks, self.styles, self.settings = plan, list(chunks), styles, settings

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> tuple[int, dict, dict]:
        j = self.chunks[i]
        photos: dict = {}
        for photo in self.plan.chunks[j]:
            # Shrink only, as max_size does everywhere: an enlarged photo adds no detail, and a
            # large max_size made one photo take all the memory.
            photos[photo] = _decode(self.plan.images / photo,
                                    lambda img: resize_for_processing(img, self.settings.max_size, None))
        paintings: dict = {}
        if self.styles is not None:
            for photo in self.plan.chunks[j]:
                for o in self.plan.outputs[photo]:
                    if o.style not in paintings:
                        paintings[o.style] = self._painting(o.style)
        return j, photos, paintings

    def _painting(self, name: str) -> torch.Tensor | str:
        """Painting ``name`` at the run's style_size, (3, h, w) in [0, 1], or why it cannot be used.
        Transparent areas become white, as everywhere a style image is read; not warned about
        here: one line per painting of thousands, from loader workers, amid the progress bar."""
        image = _decode(self.styles / name, lambda img: resize_style(
            img, self.settings.style_size, "longer", name, "--style_size"), lambda img: style_rgb(img, warn=False))
        least = self.settings.min_style_side
        if isinstance(image, str) or min(image.shape[1:]) >= least:
            return image
        return (f"{name} is {image.shape[2]} x {image.shape[1]} px at --style_size {self.settings.style_size}: "
                f"style images need at least {least} px per side")


def _decode(path: Path, resize: Callable[[Image.Image], Image.Image],
            to_rgb: Optional[Callable[[Image.Image], Image.Image]] = None) -> torch.Tensor | str:
    """(3, H, W) in [0, 1] (alpha dropped, or ``to_rgb`` of the RGB or RGBA image), or the
    reason it cannot be read."""
    try:
        rgb = to_rgb(open_image(path)) if to_rgb is not None else split_alpha(open_image(path))[0]
        return pil_to_tensor(resize(rgb))
    except DataError as e:
        return str(e).splitlines()[0][:_LINE]


def _unpack(item):  # a loader's collate for one ready-made item: as it is
    return item


class _Styler:
    """Photos of one size (N, 3, H, W) and their outputs' styles -> stylizations (N, 3, H, W) in
    [0, 1], for an AdaIN model (each photo its painting), a multi-style model (each photo its
    style) or a one-style model."""

    def __init__(self, model: StyleNetwork, device: torch.device, alpha: float):
        self.model, self.device, self.alpha = model.to(device).eval(), device, alpha
        self.stats: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def painting_stats(self, name: str, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in self.stats:
            mean, std = self.model.style_statistics(image.unsqueeze(0).to(self.device))
            self.stats[name] = (mean[0], std[0])
            if len(self.stats) > _STATS_CACHE:
                self.stats.popitem(last=False)
        self.stats.move_to_end(name)
        return self.stats[name]

    def __call__(self, x: torch.Tensor, styles: list[str], paintings: dict) -> torch.Tensor:
        x = x.to(self.device)
        if isinstance(self.model, AdaINNet):
            stats = [self.painting_stats(s, paintings[s]) for s in styles]
            mean, std = torch.stack([m for m, _ in stats]), torch.stack([s for _, s in stats])
            return self.model.transfer(x, mean, std, self.alpha)
        names = self.model.style_names
        if names:
            w = torch.zeros(len(styles), len(names), device=self.device)
            w[torch.arange(len(styles)), torch.tensor([names.index(s) for s in styles])] = 1.0
            return self.model(x, w).clamp(0, 1)
        return self.model(x).clamp(0, 1)


def weights_digest(model: StyleNetwork) -> str:
    """SHA-256 of the model's parameters and buffers (names, shapes, dtypes and bytes): the same
    for the same weights whatever file or path they were read from."""
    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        digest.update(f"{name}\0{tuple(t.shape)}\0{t.dtype}\0".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _write(y: torch.Tensor, path: Path, quality: int) -> None:
    save_image(tensor_to_pil(y.cpu()), path, quality=quality)


def _run_chunk(plan: DatasetPlan, j: int, photos: dict, paintings: dict, styler: _Styler,
               settings: DatasetSettings, bad: dict[str, str], bar: tqdm) -> int:
    """Stylize chunk ``j``: its good photos grouped by size, one batch per size and output
    number; only missing files are written (a partly done chunk from a killed run). Returns
    how many were written; unreadable photos go into ``bad``."""
    written = 0
    by_size: dict[tuple[int, int], list[str]] = {}
    for photo in plan.chunks[j]:
        value = photos[photo]
        broken = [o.style for o in plan.outputs[photo] if isinstance(paintings.get(o.style), str)]
        if isinstance(value, str) or broken:
            bad[photo] = value if isinstance(value, str) else f"its painting {paintings[broken[0]]}"
            tqdm.write(f"error: {shown(f'{photo}: {bad[photo]}' if broken else value, _LINE)} (skipped)", file=sys.stderr)
            bar.update(len(plan.outputs[photo]))  # the bar counts the photo's outputs as settled
            continue
        by_size.setdefault(tuple(value.shape[1:]), []).append(photo)
    for group in by_size.values():
        x = torch.stack([photos[p] for p in group])
        for k in range(len(plan.outputs[group[0]])):
            outs = [plan.outputs[p][k] for p in group]
            missing = [i for i, o in enumerate(outs) if not (plan.output / o.output).is_file()]
            if not missing:
                continue
            with torch.inference_mode():
                y = styler(x, [o.style for o in outs], paintings)
            for i in missing:
                _write(y[i], plan.output / outs[i].output, settings.quality)
                bar.update(1)
                written += 1
    return written


def stylize_shard(plan: DatasetPlan, model: StyleNetwork, device: torch.device, styles: Optional[Path],
                  settings: DatasetSettings, manifest_settings: dict, rank: int = 0, world: int = 1,
                  progress: bool = True) -> tuple[int, dict[str, str]]:
    """Stylize rank ``rank``'s chunks of ``plan`` that are not done yet and write its manifest
    part; returns (outputs written, {bad photo: why})."""
    mine = plan.shard(rank, world)
    todo = plan.pending(mine)
    total = sum(1 for j in todo for p in plan.chunks[j] for o in plan.outputs[p]
                if not (plan.output / o.output).is_file())
    loader = DataLoader(_Chunks(plan, todo, styles, settings), batch_size=None, collate_fn=_unpack,
                        num_workers=settings.workers, prefetch_factor=2 if settings.workers else None)
    styler = _Styler(model, device, settings.alpha)
    bad: dict[str, str] = {}
    written = 0
    desc = "stylizing" if world == 1 else f"stylizing (rank 0 of {world})"
    with tqdm(total=total, unit="img", desc=desc, disable=not progress or rank != 0, file=sys.stderr,
              dynamic_ncols=True) as bar:
        try:
            for j, photos, paintings in loader:
                written += _run_chunk(plan, j, photos, paintings, styler, settings, bad, bar)
        except OSError as e:
            raise FastNSTError(f"stylizing into {plan.output} failed: {e}") from None
    write_part(plan, mine, bad, manifest_settings, rank, world)
    return written, bad
