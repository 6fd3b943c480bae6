"""Training data: a folder of photos -> batches (N, 3, image_size, image_size) of uint8 pixels,
made float in [0, 1] on the training device by :func:`batch_to_device` (a quarter of the bytes
through worker IPC, pinned memory and the host-to-device copy).

Data order and crops are pure functions of (seed, epoch, index), so a resumed run sees exactly
the batches an uninterrupted one would, whatever the number of loader workers.
Unreadable files are replaced by the next readable one and reported (once each) by the trainer.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from .cli import run_command
from .config import MIN_IMAGE_SIZE
from .errors import DataError
from .images import list_images, open_image

COCO_HINT = (
    "Get COCO train2014 (13 GB) with: python -m fast_nst.download coco   "
    "(or set train_dir to any folder of photos: jpg, jpeg, png, webp, bmp)."
)
# How many following files a bad file may be replaced by before a sample gives up.
_MAX_SUBSTITUTES = 32


def find_training_images(train_dir: str | Path) -> list[Path]:
    """All image files under ``train_dir``; :class:`DataError` if missing or empty."""
    folder = Path(train_dir)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"train_dir {folder} {what}. {COCO_HINT}")
    files = list_images(folder)
    if not files:
        raise DataError(f"train_dir {folder} contains no images. {COCO_HINT}")
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
    """Crop ``size`` x ``size`` from ``arr`` (H, W, 3) uint8 with min(H, W) == size: at a
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


def decode_resized(path: str | Path, size: int) -> np.ndarray:
    """Decode ``path`` (JPEG draft mode) and resize its shorter side to ``size``: (H, W, 3) uint8."""
    img = open_image(path, draft_size=size).convert("RGB")
    return np.asarray(resize_shorter(img, size), dtype=np.uint8)


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

    With ``cache`` (from :func:`open_cache`), images come pre-resized from the memory-mapped
    cache instead of being decoded; the tensors are identical.
    """

    def __init__(self, files: Sequence[Path], image_size: int, seed: int, random_crop: bool = True,
                 cache: Optional["ImageCache"] = None):
        self.files = [str(f) for f in files]
        self.image_size = image_size
        self.seed = seed
        self.random_crop = random_crop
        self.cache = cache

    def __len__(self) -> int:
        return len(self.files)

    def _pixels(self, i: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache.get(i)
        return decode_resized(self.files[i], self.image_size)

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


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers ignore Ctrl-C/SIGTERM: the main process decides when to stop (after saving
    a checkpoint) and shuts them down; a worker dying first would kill the run without one."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def usable_workers(requested: int) -> int:
    """``requested`` loader processes, at most one per CPU core this process may use: more only
    compete with each other (PyTorch warns about it, and it can stall small machines)."""
    return min(requested, usable_cores())


def build_loader(files: Sequence[Path], image_size: int, batch_size: int, seed: int,
                 num_workers: int, start_step: int = 0, pin_memory: bool = False,
                 rank: int = 0, world_size: int = 1,
                 cache: Optional["ImageCache"] = None) -> tuple[DataLoader, ResumableSampler]:
    """An endless loader of collated batches beginning at step ``start_step``."""
    dataset = ImageFolderDataset(files, image_size, seed, cache=cache)
    num_workers = usable_workers(num_workers)
    sampler = ResumableSampler(len(dataset), batch_size, seed, start_step, rank, world_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        pin_memory=pin_memory,
        worker_init_fn=_ignore_stop_signals if num_workers > 0 else None,
        drop_last=True,
        persistent_workers=num_workers > 0,
        # Two batches in flight per worker keeps the GPU fed without hoarding memory.
        prefetch_factor=2 if num_workers > 0 else None,
    )
    return loader, sampler


def load_sample_images(paths: Sequence[str | Path], candidates: Sequence[Path], count: int,
                       image_size: int) -> torch.Tensor:
    """Fixed photos for TensorBoard, centre-cropped: ``paths`` if given, else ``count`` readable
    files spread evenly over ``candidates``. Returns (K, 3, image_size, image_size)."""
    images = []
    if paths:
        for p in paths:
            images.append(crop_transform(open_image(p).convert("RGB"), image_size, None))
    elif count:
        step = max(1, len(candidates) // count)
        for p in list(candidates)[::step]:
            try:
                images.append(crop_transform(open_image(p).convert("RGB"), image_size, None))
            except DataError:
                continue
            if len(images) == count:
                break
    if not images:
        return torch.zeros(0, 3, image_size, image_size)
    return torch.stack(images)


# ---- pre-resized cache: python -m fast_nst.data prepare DIR --image_size 256 ----------------------

CACHE_VERSION = 1


def cache_dir(train_dir: str | Path, image_size: int) -> Path:
    """Where ``prepare`` puts the cache for ``image_size`` (inside ``train_dir``)."""
    return Path(train_dir) / f".fast_nst_cache_{image_size}"


class ImageCache:
    """Pre-resized training images (shorter side = image_size) in one memory-mapped uint8 file.

    ``index.json`` holds the relative file names, byte offsets and (H, W) of each image
    (0 x 0 for files that failed to decode); ``pixels.u8`` the pixels, (H, W, 3) each.
    The memory map is opened lazily so the object pickles cheaply into loader workers.
    """

    def __init__(self, folder: Path, meta: dict):
        self.folder = folder
        self.files: list[str] = meta["files"]
        self.offsets: list[int] = meta["offsets"]
        self.shapes: list[list[int]] = meta["shapes"]
        self._map: Optional[np.memmap] = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def get(self, i: int) -> np.ndarray:
        h, w = self.shapes[i]
        if h == 0:
            raise DataError(f"{self.files[i]}: could not be decoded when the cache was prepared")
        if self._map is None:
            self._map = np.memmap(self.folder / "pixels.u8", dtype=np.uint8, mode="r")
        start = self.offsets[i]
        return self._map[start:start + h * w * 3].reshape(h, w, 3)


def _relative_names(files: Sequence[Path], train_dir: str | Path) -> list[str]:
    """How the cache's index names ``files``: relative to ``train_dir``, so the folder can move."""
    return [str(Path(f).relative_to(train_dir)) for f in files]


def open_cache(train_dir: str | Path, image_size: int, files: Sequence[Path]) -> Optional[ImageCache]:
    """The cache for ``files`` at ``image_size`` if ``prepare`` made one and it is current;
    None (with a warning when it exists but is stale) otherwise."""
    import json
    import warnings

    folder = cache_dir(train_dir, image_size)
    if not (folder / "index.json").is_file():
        return None
    try:
        meta = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        warnings.warn(f"Ignoring unreadable cache {folder}; run prepare again.")
        return None
    if (meta.get("version") != CACHE_VERSION or meta.get("image_size") != image_size
            or meta.get("files") != _relative_names(files, train_dir)):
        warnings.warn(f"Ignoring stale cache {folder} (files or settings changed); refresh it with: "
                      f"python -m fast_nst.data prepare {train_dir} --image_size {image_size}")
        return None
    return ImageCache(folder, meta)


class _DecodeDataset(Dataset):
    def __init__(self, files: Sequence[Path], size: int):
        self.files, self.size = list(files), size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            return decode_resized(self.files[i], self.size)
        except DataError as e:
            return str(e)


def _identity(item):
    return item


def prepare_cache(train_dir: str | Path, image_size: int, num_workers: Optional[int] = None,
                  progress: bool = True) -> Path:
    """Decode and resize every image under ``train_dir`` once into :func:`cache_dir`, with
    ``num_workers`` decoding processes (default: one per usable CPU core; nothing else runs)."""
    import shutil

    if image_size < MIN_IMAGE_SIZE:
        raise DataError(f"--image_size must be at least {MIN_IMAGE_SIZE} (training's minimum: VGG "
                        f"pools 4 times), got {image_size}; use the image_size of your config, e.g. 256.")
    if num_workers is None:
        num_workers = usable_cores()
    if num_workers < 0:
        raise DataError(f"--num_workers must be >= 0, got {num_workers}")
    files = find_training_images(train_dir)
    final = cache_dir(train_dir, image_size)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_cache(files, train_dir, image_size, num_workers, progress, tmp, final)
    except BaseException:  # an error or Ctrl-C: leave no half-written cache in the photo folder
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_cache(files: Sequence[Path], train_dir: str | Path, image_size: int, num_workers: int,
                 progress: bool, tmp: Path, final: Path) -> None:
    import json
    import shutil
    import sys

    from tqdm import tqdm

    loader = DataLoader(_DecodeDataset(files, image_size), batch_size=None, num_workers=usable_workers(num_workers),
                        collate_fn=_identity)
    offsets, shapes, offset, bad = [], [], 0, 0
    with open(tmp / "pixels.u8", "wb") as out:
        for item in tqdm(loader, total=len(files), desc="prepare", unit="img", disable=not progress,
                         file=sys.stderr):
            offsets.append(offset)
            if isinstance(item, str):
                print(f"warning: skipping unreadable training file: {item}", file=sys.stderr)
                shapes.append([0, 0])
                bad += 1
                continue
            out.write(item.tobytes())
            shapes.append(list(item.shape[:2]))
            offset += item.size
        out.flush()
        os.fsync(out.fileno())
    meta = {"version": CACHE_VERSION, "image_size": image_size,
            "files": _relative_names(files, train_dir),
            "offsets": offsets, "shapes": shapes}
    (tmp / "index.json").write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    size = f"{offset / 2**30:.2f} GiB" if offset >= 2**30 else f"{offset / 2**20:.1f} MiB"
    print(f"Cached {len(files) - bad} images ({size}) in {final}"
          + (f"; {bad} unreadable files skipped" if bad else ""), file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fast_nst.data",
        description="Pre-resize a training folder into a memory-mapped cache that train.py uses "
                    "automatically (same image_size, same files) for faster repeated runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the cache for DIR")
    prep.add_argument("train_dir")
    prep.add_argument("--image_size", type=int, default=256, help="training image_size (default 256)")
    prep.add_argument("--num_workers", type=int, default=None,
                      help=f"decoding processes (default: one per usable CPU core, {usable_cores()} here)")
    args = parser.parse_args(argv)

    def run() -> int:
        prepare_cache(args.train_dir, args.image_size, args.num_workers)
        return 0

    return run_command(run)


if __name__ == "__main__":
    raise SystemExit(main())
