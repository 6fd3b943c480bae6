"""The pre-resized training cache: ``python -m fast_nst.data prepare DIR --image_size 256``
decodes and resizes every photo once into one memory-mapped file that training then reads
instead of the JPEGs (identical tensors, no decoding per step).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..core.config import MIN_IMAGE_SIZE
from ..core.config_checks import MAX_IMAGE_SIZE, MAX_RESIZE_TO
from ..core.errors import DataError
from ..core.files import atomic_write, fsync_dir
from ..core.untrusted import read_json_file
from .data import decode_resized, find_training_images, usable_cores, usable_workers, worker_init

__all__ = ["CACHE_VERSION", "ImageCache", "cache_dir", "open_cache", "prepare_cache"]

# 2: the index records each photo's size and mtime (ns), so that a photo replaced under the same
# name makes the cache stale. A version-1 cache cannot tell, so it is treated as stale.
CACHE_VERSION = 2
# Nesting of index.json (a mapping of lists of [h, w] pairs); deeper is damage.
_INDEX_DEPTH = 3


def cache_dir(train_dir: str | Path, image_size: int) -> Path:
    """Where ``prepare`` puts the cache for ``image_size`` (inside ``train_dir``)."""
    return Path(train_dir) / f".fast_nst_cache_{image_size}"


class ImageCache:
    """Pre-resized training images (shorter side = image_size) in one memory-mapped uint8 file.

    ``index.json`` holds the relative file names, their [size, mtime in ns] when prepared, byte
    offsets and (H, W) of each image (0 x 0 for files that failed to decode); ``pixels.u8`` the
    pixels, (H, W, 3) each.
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
    folder = cache_dir(train_dir, image_size)
    if not (folder / "index.json").is_file():
        return None
    try:  # {version, image_size, files: [...], offsets: [...], shapes: [[h, w], ...]}: depth 3
        meta = read_json_file(folder / "index.json", "the cache index", DataError, max_depth=_INDEX_DEPTH)
    except DataError as e:
        warnings.warn(f"Ignoring unreadable cache {folder} ({e}); run prepare again.")
        return None
    refresh = f"python -m fast_nst.data prepare {train_dir} --image_size {image_size}"
    if isinstance(meta, dict) and meta.get("version") == 1:
        warnings.warn(f"Ignoring cache {folder}: an older fast-nst made it without the photos' sizes and times, "
                      f"so a changed photo would go unnoticed; rebuild it with: {refresh}")
        return None
    if (not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION or meta.get("image_size") != image_size
            or meta.get("files") != _relative_names(files, train_dir)):
        warnings.warn(f"Ignoring stale cache {folder} (files or settings changed); refresh it with: {refresh}")
        return None
    changed = _changed_file(files, meta.get("stats"), train_dir)
    if changed:
        warnings.warn(f"Ignoring stale cache {folder} ({changed}); refresh it with: {refresh}")
        return None
    problem = _index_problem(folder, meta, len(files))
    if problem:
        warnings.warn(f"Ignoring damaged cache {folder} ({problem}); rebuild it with: {refresh}")
        return None
    return ImageCache(folder, meta)


def _file_stats(files: Sequence[Path]) -> list[list[int]]:
    """[size, mtime in ns] of each file: one ``stat`` each, no photo read. A photo replaced
    under the same name (a copy, an edit) changes at least its mtime."""
    stats = []
    for f in files:
        st = os.stat(f)
        stats.append([st.st_size, st.st_mtime_ns])
    return stats


def _changed_file(files: Sequence[Path], stats: object, train_dir: str | Path) -> str:
    """Which of ``files`` changed since the index's ``stats`` were taken (the first, relative to
    ``train_dir``, and how many more), or why that cannot be told; "" when none did."""
    if not isinstance(stats, list) or len(stats) != len(files):
        return "its index does not record each photo's size and time"
    try:
        now = _file_stats(files)
    except OSError as e:  # removed or unreadable since the folder was listed
        return f"{e.filename} cannot be read: {e.strerror or e}"
    changed = [f for f, old, new in zip(files, stats, now) if old != new]
    if not changed:
        return ""
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return f"{Path(changed[0]).relative_to(train_dir)}{more} changed since it was prepared"


def _index_problem(folder: Path, meta: dict, count: int) -> str:
    """What is wrong with a cache whose index matches the files ("" when nothing): an index that
    is not one offset and (H, W) per file, or a pixels.u8 shorter than the index says (a copy or
    a prepare cut short), which would otherwise fail in the middle of training."""
    offsets, shapes = meta.get("offsets"), meta.get("shapes")
    try:
        if len(offsets) != count or len(shapes) != count:
            return "its index does not list every file"
        needed = max((int(o) + int(h) * int(w) * 3 for o, (h, w) in zip(offsets, shapes)), default=0)
    except (TypeError, ValueError):
        return "its index is not a list of offsets and sizes"
    try:
        size = (folder / "pixels.u8").stat().st_size
    except OSError as e:
        return f"pixels.u8 cannot be read: {e.strerror or e}"
    if size < needed:
        return f"pixels.u8 holds {size:,} bytes, its index needs {needed:,}: the file is truncated"
    return ""


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
    if image_size < MIN_IMAGE_SIZE:
        raise DataError(f"--image_size must be at least {MIN_IMAGE_SIZE} (training's minimum: VGG "
                        f"pools 4 times), got {image_size}; use the image_size of your config, e.g. 256.")
    if image_size > MAX_RESIZE_TO:  # a cache no run can open: training refuses larger sizes
        raise DataError(f"--image_size must be at most {MAX_RESIZE_TO}, the largest shorter side training "
                        f"resizes photos to (resize_to; image_size itself at most {MAX_IMAGE_SIZE}), got "
                        f"{image_size}; use your config's resize_to, or its image_size when resize_to is null.")
    if num_workers is None:
        num_workers = usable_cores()
    if num_workers < 0:
        raise DataError(f"--num_workers must be >= 0, got {num_workers}")
    files = find_training_images(train_dir)
    final = cache_dir(train_dir, image_size)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        _write_cache(files, train_dir, image_size, num_workers, progress, tmp, final)
    except BaseException as e:  # an error or Ctrl-C: leave no half-written cache in the photo folder
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # a read-only photo folder, a full disk
            raise DataError(f"cannot write the cache in {final.parent}: {e.strerror or e}. Make room, or "
                            "make the folder writable, and run prepare again.") from None
        raise
    return final


def _write_cache(files: Sequence[Path], train_dir: str | Path, image_size: int, num_workers: int,
                 progress: bool, tmp: Path, final: Path) -> None:
    stats = _file_stats(files)  # before decoding: a photo changed meanwhile makes the cache stale
    workers = usable_workers(num_workers)
    # Workers decode within this process's --max_image_pixels, also when started by spawn or
    # forkserver (a fresh Pillow with its default limit).
    loader = DataLoader(_DecodeDataset(files, image_size), batch_size=None, num_workers=workers,
                        collate_fn=_identity,
                        worker_init_fn=worker_init() if workers else None)
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
            "files": _relative_names(files, train_dir), "stats": stats,
            "offsets": offsets, "shapes": shapes}
    with atomic_write(tmp / "index.json") as index:
        index.write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    size = f"{offset / 2**30:.2f} GiB" if offset >= 2**30 else f"{offset / 2**20:.1f} MiB"
    print(f"Cached {len(files) - bad} images ({size}) in {final}"
          + (f"; {bad} unreadable files skipped" if bad else ""), file=sys.stderr)
