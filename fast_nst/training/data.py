"""Training data: a folder of photos -> batches (N, 3, image_size, image_size) of uint8 pixels,
made float in [0, 1] on the training device by :func:`batch_to_device` (a quarter of the bytes
through worker IPC, pinned memory and the host-to-device copy).

Data order and crops are pure functions of (seed, epoch, index), so a resumed run sees exactly
the batches an uninterrupted one would, whatever the number of loader workers.
Each image is resized so its shorter side is ``resize_to`` (default: image_size) and a random
image_size crop is cut from it (``resize_to`` 512 for 256 crops: Huang & Belongie's AdaIN data).
Unreadable files are replaced by the next readable one and reported (once each) by the trainer.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.config import TrainConfig
from ..core.errors import DataError
from ..core.images import list_images
from ..core.untrusted import open_image, pixel_limit, set_max_image_pixels

__all__ = ["MAX_ASPECT_RATIO", "MAX_RESIZED_PIXELS", "ImageFolderDataset", "ResumableSampler", "Sample",
           "batch_to_device", "build_loader", "check_photo_size", "collate_samples", "crop_transform",
           "decode_resized", "find_training_images",
           "load_sample_images", "load_side", "random_crop", "resize_shorter", "usable_cores", "usable_workers", "worker_init"]

COCO_HINT = (
    "Get COCO train2014 (13 GB) with: python -m fast_nst.download coco   "
    "(or set train_dir to any folder of photos: jpg, jpeg, png, webp, bmp)."
)


class ImageSource(Protocol):
    """Pre-resized pixels by file index (the ``prepare`` cache, :class:`fast_nst.training.cache.ImageCache`)."""

    def get(self, i: int) -> np.ndarray:  # (H, W, 3) uint8, shorter side image_size
        ...


def _cache_side(cache: ImageSource) -> Optional[int]:
    """The shorter side of the images in ``cache`` (every image is resized to it exactly; see
    :func:`resize_shorter`), or None when it holds no readable image or does not say."""
    for shape in getattr(cache, "shapes", None) or ():
        if len(shape) == 2 and min(shape) > 0:
            return int(min(shape))
    return None


# How many following files a bad file may be replaced by before a sample gives up.
_MAX_SUBSTITUTES = 32
# A photo is resized so its shorter side is image_size, so one of aspect ratio 1:r becomes
# r * image_size**2 pixels. Photos stay within about 1:7 (COCO's most elongated) and panoramas
# within 1:10; 1:50 is no photo but a strip, and a 1 x 300000 PNG resized for image_size 32
# would be 32 x 9.6M pixels (3.8 GB while resizing) to cut one 32 x 32 crop from.
MAX_ASPECT_RATIO = 50
# The most pixels a resized photo may have: 1:50 at image_size 1024 is 52M; 2**26 (64M pixels,
# 192 MB of uint8 RGB) keeps each loader worker's peak bounded at any image_size.
MAX_RESIZED_PIXELS = 1 << 26


def find_training_images(train_dir: str | Path, key: str = "train_dir", hint: str = COCO_HINT) -> list[Path]:
    """All image files under ``train_dir``; :class:`DataError` (naming config ``key``, with
    ``hint``) if missing or empty."""
    folder = Path(train_dir)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"{key} {folder} {what}. {hint}")
    files = list_images(folder)
    if not files:
        raise DataError(f"{key} {folder} contains no images. {hint}")
    return files


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize (up or down) so the shorter side is ``size``."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) == (w, h):
        return img
    return img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)


def random_crop(arr: np.ndarray, size: int, rng: random.Random | None) -> torch.Tensor:
    """Crop ``size`` x ``size`` from ``arr`` (H, W, 3) uint8 with min(H, W) >= size: at a
    position drawn from ``rng``, or centred when ``rng`` is None. Returns (3, size, size) uint8."""
    h, w = arr.shape[:2]
    left = rng.randint(0, w - size) if rng else (w - size) // 2
    top = rng.randint(0, h - size) if rng else (h - size) // 2
    crop = np.array(arr[top:top + size, left:left + size])  # a writable copy
    return torch.from_numpy(crop).permute(2, 0, 1)  # (3, S, S) view; collating stacks a copy


def batch_to_device(images: torch.Tensor, device: torch.device,
                    memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
    """A loader batch (N, 3, S, S) uint8 -> float32 in [0, 1] on ``device`` (a new tensor).

    The copy is asynchronous when the loader pinned the batch (CUDA); the conversion runs there.
    """
    x = images.to(device, non_blocking=True).float().div_(255.0)  # .float() copies: never in place on the caller's
    return x.contiguous(memory_format=memory_format)


def check_photo_size(path: str | Path, width: int, height: int, size: int) -> None:
    """:class:`DataError` (the file is skipped) unless a ``width`` x ``height`` photo is within
    :data:`MAX_ASPECT_RATIO` and, resized to shorter side ``size``, :data:`MAX_RESIZED_PIXELS`."""
    short, long = min(width, height), max(width, height)
    if short < 1 or long > MAX_ASPECT_RATIO * short:
        raise DataError(f"{path}: {width} x {height} pixels, an aspect ratio of 1:{long / max(short, 1):.0f}; "
                        f"training photos may be at most 1:{MAX_ASPECT_RATIO}")
    pixels = size * max(size, round(long * size / short))
    if pixels > MAX_RESIZED_PIXELS:
        raise DataError(f"{path}: {width} x {height} pixels would be {pixels:,} pixels resized to "
                        f"image_size {size}, over the limit of {MAX_RESIZED_PIXELS:,}")


def _open_photo(path: str | Path, size: int, draft: bool) -> Image.Image:
    """``path`` decoded as RGB after :func:`check_photo_size` accepted the size its header declares."""
    return open_image(path, draft_size=size if draft else None,
                      check_size=lambda w, h: check_photo_size(path, w, h, size)).convert("RGB")


def decode_resized(path: str | Path, size: int) -> np.ndarray:
    """Decode ``path`` (JPEG draft mode) and resize its shorter side to ``size``: (H, W, 3) uint8.
    :class:`DataError` for an unreadable file or one :func:`check_photo_size` refuses (checked
    before decoding)."""
    return np.asarray(resize_shorter(_open_photo(path, size, draft=True), size), dtype=np.uint8)


def crop_transform(img: Image.Image, size: int, rng: random.Random | None) -> torch.Tensor:
    """Resize the shorter side to ``size``, then crop ``size`` x ``size`` (see :func:`random_crop`).
    Returns (3, size, size) float32 in [0, 1]."""
    crop = random_crop(np.asarray(resize_shorter(img.convert("RGB"), size), dtype=np.uint8), size, rng)
    return crop.float().div_(255.0)


@dataclass
class Sample:
    image: torch.Tensor  # (3, S, S) uint8; all zeros when no readable file was found
    ok: bool
    bad_files: list[str]  # files that failed to decode while producing this sample


class ImageFolderDataset(Dataset):
    """``dataset[(epoch, index)]`` -> :class:`Sample` with a random crop seeded by (seed, epoch, index).

    Each image is resized to shorter side ``resize_to`` (None: ``image_size``) before the
    ``image_size`` crop. With ``cache`` (from :func:`open_cache`, holding images of that shorter
    side), images come pre-resized from the memory-mapped cache instead of being decoded; the
    tensors are identical.
    """

    def __init__(self, files: Sequence[Path], image_size: int, seed: int, random_crop: bool = True,
                 cache: Optional[ImageSource] = None, resize_to: Optional[int] = None):
        assert resize_to is None or resize_to >= image_size, "config checks resize_to >= image_size"
        self.files = [str(f) for f in files]
        self.image_size = image_size
        self.resize_to = image_size if resize_to is None else resize_to
        self.seed = seed
        self.random_crop = random_crop
        self.cache = cache

    def __len__(self) -> int:
        return len(self.files)

    def _pixels(self, i: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache.get(i)
        return decode_resized(self.files[i], self.resize_to)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        epoch, index = key
        bad: list[str] = []
        for k in range(min(_MAX_SUBSTITUTES, len(self.files))):
            i = (index + k) % len(self.files)
            try:
                arr = self._pixels(i)
            except DataError:
                bad.append(self.files[i])
                continue
            # A string seed is hashed with SHA-512 by random.Random: stable across processes.
            rng = random.Random(f"{self.seed}:{epoch}:{index}") if self.random_crop else None
            return Sample(random_crop(arr, self.image_size, rng), True, bad)
        return Sample(torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8), False, bad)


def collate_samples(samples: list[Sample]) -> dict:
    return {
        "image": torch.stack([s.image for s in samples]),  # (N, 3, S, S) uint8
        "ok": all(s.ok for s in samples),
        "bad_files": [f for s in samples for f in s.bad_files],
    }


class ResumableSampler(Sampler):
    """Yields (epoch, index) forever, epoch after epoch, starting ``start_batch`` batches in.

    Each epoch is a permutation drawn from ``seed + epoch`` and truncated to whole global batches
    (``batch_size * world_size``); this rank takes its ``batch_size`` slice of every global batch.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = num_items // self.global_batch
        if self.batches_per_epoch == 0:
            raise DataError(
                f"Only {num_items} training images for a global batch of {self.global_batch}: "
                "add images or lower batch_size."
            )
        self.start_batch = start_batch

    def epoch_order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, batch = divmod(self.start_batch, self.batches_per_epoch)
        while True:
            order = self.epoch_order(epoch)
            for b in range(batch, self.batches_per_epoch):
                start = b * self.global_batch + self.rank * self.batch_size
                for i in order[start:start + self.batch_size]:
                    yield epoch, i
            epoch, batch = epoch + 1, 0


def _start_worker(limit: Optional[int], worker_id: int) -> None:
    """A loader worker decodes within the main process's pixel ``limit`` (``--max_image_pixels``):
    a worker started by spawn or forkserver (macOS, Python 3.14) imports Pillow afresh, with its
    default limit. Workers ignore Ctrl-C/SIGTERM: the main process decides when to stop (after
    saving a checkpoint) and shuts them down; a worker dying first would kill the run without one."""
    set_max_image_pixels(limit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_init() -> Callable[[int], None]:
    """The ``worker_init_fn`` of a DataLoader whose workers decode outside images: this
    process's pixel limit and the signal handling of :func:`_start_worker`."""
    return functools.partial(_start_worker, pixel_limit())


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_side(cfg: TrainConfig) -> int:
    """The shorter side training photos are resized to before the crop: ``resize_to``, else
    ``image_size`` (the side a ``data prepare`` cache must have)."""
    return cfg.resize_to or cfg.image_size


def usable_workers(requested: int) -> int:
    """``requested`` loader processes, at most one per CPU core this process may use: more only
    compete with each other (PyTorch warns about it, and it can stall small machines)."""
    return min(requested, usable_cores())


def build_loader(files: Sequence[Path], image_size: int, batch_size: int, seed: int,
                 num_workers: int, start_step: int = 0, pin_memory: bool = False,
                 rank: int = 0, world_size: int = 1,
                 cache: Optional[ImageSource] = None, resize_to: Optional[int] = None) -> DataLoader:
    """An endless loader of collated batches beginning at step ``start_step``: random
    ``image_size`` crops of the images resized to shorter side ``resize_to`` (None: image_size).
    A ``cache`` of another shorter side than ``resize_to`` is not used (a warning says so)."""
    if cache is not None and resize_to is not None and _cache_side(cache) != resize_to:
        where = getattr(cache, "folder", "of the photos")
        warnings.warn(f"Not using the pre-resized cache {where}: it holds images of shorter side "
                      f"{_cache_side(cache)}, not resize_to {resize_to}; decoding the files instead.")
        cache = None
    dataset = ImageFolderDataset(files, image_size, seed, cache=cache, resize_to=resize_to)
    num_workers = usable_workers(num_workers)
    sampler = ResumableSampler(len(dataset), batch_size, seed, start_step, rank, world_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        pin_memory=pin_memory,
        worker_init_fn=worker_init() if num_workers > 0 else None,
        drop_last=True,
        # Not persistent: the sampler is endless, so one iterator serves the whole run, and an
        # iterator that is not also held by the loader shuts its workers down when the run's
        # loop lets go of it, on errors too. (Held by the loader, workers that ignore SIGTERM
        # would outlive an exception: the interpreter's exit would wait for them forever.)
        persistent_workers=False,
        # Two batches in flight per worker keeps the GPU fed without hoarding memory.
        prefetch_factor=2 if num_workers > 0 else None,
    )
    return loader


def load_sample_images(paths: Sequence[str | Path], candidates: Sequence[Path], count: int,
                       image_size: int) -> torch.Tensor:
    """Fixed photos for TensorBoard, centre-cropped: ``paths`` if given, else ``count`` readable
    files spread evenly over ``candidates``. Returns (K, 3, image_size, image_size)."""
    images = []
    if paths:
        for p in paths:
            images.append(crop_transform(_open_photo(p, image_size, draft=False), image_size, None))
    elif count:
        step = max(1, len(candidates) // count)
        for p in list(candidates)[::step]:
            try:
                images.append(crop_transform(_open_photo(p, image_size, draft=False), image_size, None))
            except DataError:
                continue
            if len(images) == count:
                break
    if not images:
        return torch.zeros(0, 3, image_size, image_size)
    return torch.stack(images)
