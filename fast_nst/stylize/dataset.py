"""Stylizing a whole dataset (Stylized-ImageNet, Geirhos et al., ICLR 2019): the plan and the
manifest. The run itself is :mod:`fast_nst.stylize.dataset_run`.

Everything here is a pure function of the photos' relative paths, the paintings' and the
options, so every process of a torchrun job computes the same plan without talking to the
others:

- the painting (or style) of output ``k`` of a photo depends only on ``seed``, ``k`` and the
  photo's path relative to the photo folder (:func:`choose`), not on the process count or order;
- the photos, sorted, are cut into chunks of ``batch_size``; the chunks are the unit of work
  (rank r of W takes chunks r, r + W, ...) and of batching, so a photo is computed in the same
  batch, hence to the same bits, whatever the number of processes;
- an output exists only complete (written to a temporary file and renamed), so "done" is "its
  file exists": a chunk with every output present is skipped; a partly done one is computed
  again and only its missing files written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..core.errors import FastNSTError
from ..core.files import atomic_write, distinct_stems
from ..core.images import list_images
from ..core.untrusted import file_sha256, input_folder, load_json, read_json_file, shown

__all__ = ["MANIFEST", "MAX_PAINTING_BYTES", "OUTPUT_FORMATS", "PAINTING_HASHES", "PARTS_DIR", "RUN_SETTINGS",
           "DatasetPlan", "Output", "PaintingHashes",
           "check_folders", "check_run_settings", "choose", "merge_manifest", "painting_list", "paintings_digest",
           "part_path", "plan_dataset", "remove_stale_temps", "save_run_settings", "write_part"]

MANIFEST = "manifest.jsonl"
# What made the files of an output folder, written before its first image: a rerun with other
# settings would otherwise skip the files already there and write a manifest describing them
# with the new settings.
RUN_SETTINGS = ".fast-nst-dataset.json"
_FLAGS = {"weights": "the model's weights (--model_file)", "model_type": "--model_file's model type",
          "styles": "the styles drawn from (--styles, --style)",
          "painting_files": "the paintings' contents (a file under --styles was replaced or edited)",
          "max_size": "--max_size", "seed": "--seed", "alpha": "--alpha", "style_size": "--style_size",
          "quality": "--quality", "format": "--format", "per_image": "--per_image", "batch_size": "--batch_size"}
# Compared by digest: the message says they differ, not from what to what.
_DIGESTS = ("weights", "styles", "painting_files")
# Settings a record written by an earlier fast-nst may lack: such a run is resumed (it cannot
# be told either way) and its record gains them, so that a later change is caught.
_LATER = ("painting_files",)
# The largest painting file read for the run's settings: far beyond any image within the
# decoding limit (89 MP as an uncompressed 8-bit RGBA BMP is 358 MB).
MAX_PAINTING_BYTES = 1 << 30
# Each painting's SHA-256 by (relative path, size, mtime_ns), kept for the next run: a resumed
# run reads only the paintings changed since (Painter by Numbers is tens of GB).
PAINTING_HASHES = ".fast-nst-painting-hashes.json"
# The largest record read back: about 140 bytes a painting, so some 900,000 paintings; a larger
# one is ignored (every painting read again), never an error.
_MAX_HASHES_BYTES = 128 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
PARTS_DIR = ".manifest-parts"  # per-rank parts, merged into MANIFEST by rank 0 and then removed
OUTPUT_FORMATS = {"jpg": ".jpg", "png": ".png", "webp": ".webp"}
# core.files.atomic_write's temporary files: ".<name>.tmp<pid>".
_TEMP = re.compile(r"\..+\.tmp\d+")
# What json.dumps(ensure_ascii=False) leaves as it is but must not reach a JSON line: U+0085,
# U+2028 and U+2029 end a line for str.splitlines() (a photo named so used to break the merge,
# and would break a reader of the manifest), and a lone surrogate (a byte of a file name that is
# not UTF-8) cannot be written as UTF-8 at all.
_NOT_IN_A_LINE = re.compile("[\x85\u2028\u2029\ud800-\udfff]")
# A line of a part: chunk number, "ok" or "bad", the manifest's JSON line.
_PART_LINE = re.compile(r"(\d{1,18})\t(ok|bad)\t(\{.*\})")


def choose(seed: int, photo: str, k: int, count: int) -> int:
    """The index (0 <= i < ``count``) of the painting of output ``k`` of ``photo`` (its relative
    POSIX path): the first 8 bytes of SHA-256(seed, k, photo). A hash, not a random generator
    advanced photo by photo, so it is the same in any process and any order."""
    digest = hashlib.sha256(f"{seed}\0{k}\0{photo}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Output:
    """Output ``k`` of ``photo``: the file ``output`` (relative to the output folder) in the
    style ``style`` (a painting's path relative to the paintings folder, a style name of a
    multi-style model, or "" for a one-style model)."""

    photo: str
    k: int
    style: str
    output: str


@dataclass(frozen=True)
class DatasetPlan:
    """Every output of a run: ``chunks[j]`` lists the photos of chunk j (relative paths), and
    ``outputs[photo]`` that photo's outputs."""

    images: Path
    output: Path
    chunks: list[list[str]]
    outputs: dict[str, list[Output]]

    def shard(self, rank: int, world: int) -> list[int]:
        """The chunks of ``rank`` of ``world`` processes: disjoint, together all of them."""
        return list(range(rank, len(self.chunks), world))

    def pending(self, chunks: Iterable[int]) -> list[int]:
        """Those of ``chunks`` with at least one output file missing."""
        return [j for j in chunks
                if not all((self.output / o.output).is_file() for p in self.chunks[j] for o in self.outputs[p])]


def plan_dataset(images: Path, output: Path, styles: Sequence[str], per_image: int, seed: int,
                 fmt: str, batch_size: int) -> DatasetPlan:
    """The plan for every photo under ``images`` (recursively, sorted) with ``per_image`` outputs
    each, styles drawn from ``styles`` (painting paths or style names; [""]: one-style model)."""
    input_folder(images, "--images")
    check_folders(images, output)
    photos = [p.relative_to(images).as_posix() for p in list_images(images)]
    if output.exists() and not output.is_dir():
        raise FastNSTError(f"--output {output} is a file, not a folder; give a folder for the stylized photos.")
    if not photos:
        raise FastNSTError(f"--images {images}: no photos ({', '.join(OUTPUT_FORMATS)}, jpeg, bmp) in it or "
                           "its subfolders.")
    if not styles:
        raise FastNSTError("no styles to draw from.")
    ext = OUTPUT_FORMATS[fmt]
    stems = dict(zip(photos, distinct_stems(photos)))
    suffixes = [""] if per_image == 1 else [f"_{k}" for k in range(per_image)]
    outputs = {p: [Output(p, k, styles[choose(seed, p, k, len(styles))], f"{stems[p]}{suffix}{ext}")
                   for k, suffix in enumerate(suffixes)] for p in photos}
    chunks = [photos[i:i + batch_size] for i in range(0, len(photos), batch_size)]
    return DatasetPlan(images, output, chunks, outputs)


def check_folders(images: Path, output: Path, styles: Optional[Path] = None) -> None:
    """FastNSTError if ``output`` is, holds or lies in ``images`` or ``styles`` (symbolic links
    followed)."""
    out = output.resolve()
    for flag, folder in (("--images", images), ("--styles", styles)):
        if folder is None:
            continue
        inside = folder.resolve()
        if out == inside or inside in out.parents:
            why = ("a second run would stylize the stylized photos" if flag == "--images" else
                   "the stylized photos would join the paintings drawn from, and a rerun would be refused")
            raise FastNSTError(f"--output {output} is {flag if out == inside else 'inside ' + flag} "
                               f"{folder}: {why}. Choose an output folder outside it.")
        if out in inside.parents:
            why = ("a photo could be taken for another photo's finished output and never stylized"
                   if flag == "--images" else "a painting could be taken for a photo's finished output, and the "
                   "stylized photos could join the paintings")
            raise FastNSTError(f"{flag} {folder} is inside --output {output}: {why}. Choose an output folder "
                               f"that neither holds nor lies in {flag}.")


# -- the manifest --------------------------------------------------------------------------------

def part_path(output: Path, rank: int, world: int) -> Path:
    return output / PARTS_DIR / f"part-{rank:05d}-of-{world:05d}.jsonl"


def write_part(plan: DatasetPlan, chunks: Iterable[int], bad: dict[str, str], settings: dict,
               rank: int, world: int) -> Path:
    """This rank's part of the manifest: one JSON line per output of its ``chunks`` whose file
    exists (``photo``, ``painting`` or ``style``, ``output`` and ``settings``, e.g. alpha and seed),
    and per photo of ``bad`` its ``error``, in the order of the manifest, each line prefixed by its
    chunk number and "ok" or "bad" (so rank 0 merges the parts without parsing them). Written
    whole at the end of the rank's work."""
    lines = []
    for j in chunks:
        for photo in plan.chunks[j]:
            if photo in bad:
                lines.append(f"{j}\tbad\t" + _json_line({"photo": photo, "error": bad[photo]}))
                continue
            for o in plan.outputs[photo]:
                if (plan.output / o.output).is_file():
                    record = {"photo": photo, "k": o.k, **_style_field(o.style, settings), "output": o.output}
                    lines.append(f"{j}\tok\t" + _json_line({**record, **settings}))
    path = part_path(plan.output, rank, world)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _json_line(record: dict) -> str:
    """``record`` as one line of JSON, readable text kept (é, not \\u00e9)."""
    return _NOT_IN_A_LINE.sub(_escape, json.dumps(record, ensure_ascii=False))


def _escape(match: re.Match) -> str:  # only ever inside a JSON string: the same string
    return f"\\u{ord(match.group()):04x}"


def _style_field(style: str, settings: dict) -> dict:
    return {"painting": style} if settings.get("model_type") == "adain" else {"style": style}


def merge_manifest(output: Path, world: int) -> tuple[Path, int, int]:
    """Rank 0, after every rank wrote its part: the parts of ``world`` ranks merged, sorted by
    photo and output number, into ``output/manifest.jsonl`` (replaced whole); the parts removed.
    Returns (path, outputs, bad photos)."""
    lines = []
    for rank in range(world):
        lines += _read_part(part_path(output, rank, world))
    # Chunks hold consecutive photos of the sorted list, and a part lists each chunk in order:
    # sorting by chunk number (stable) is sorting by photo and output number.
    lines.sort(key=lambda fields: fields[0])
    manifest = output / MANIFEST
    with atomic_write(manifest) as tmp:
        tmp.write_text("".join(fields[2] + "\n" for fields in lines), encoding="utf-8")
    for rank in range(world):
        part_path(output, rank, world).unlink(missing_ok=True)
    try:
        (output / PARTS_DIR).rmdir()
    except OSError:  # parts of another process count are still there
        pass
    bad = sum(1 for fields in lines if fields[1] == "bad")
    return manifest, len(lines) - bad, bad


def _read_part(path: Path) -> list[tuple[int, str, str]]:
    """The lines of a part: (chunk number, "ok" or "bad", JSON line). Split at "\\n" only: parts
    written before _json_line escaped U+2028 and the like hold them as they are."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _part_error(path, f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    lines = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        match = _PART_LINE.fullmatch(line)
        try:
            valid = match is not None and isinstance(load_json(match[3], str(path), FastNSTError), dict)
        except FastNSTError:
            valid = False
        if not valid:
            raise _part_error(path, f"is damaged (line {n} is not a line of a manifest part)")
        lines.append((int(match[1]), match[2], _NOT_IN_A_LINE.sub(_escape, match[3])))
    return lines


def _part_error(path: Path, why: str) -> FastNSTError:
    # Every rank writes its part anew at the end of its run: a rerun mends it.
    return FastNSTError(f"the manifest part {shown(str(path), 300)} {shown(why, 300)}: run the same command "
                        "again; finished images are kept.")


def check_run_settings(output: Path, settings: dict) -> None:
    """FastNSTError unless ``output`` is new, or holds a run made with the same ``settings``
    (JSON values, keys of ``_FLAGS``) as :func:`save_run_settings` recorded."""
    path = output / RUN_SETTINGS
    if not path.is_file():
        return
    before = read_json_file(path, "the settings of the run in --output", FastNSTError)
    if not isinstance(before, dict):
        raise FastNSTError(f"{path} is damaged; delete it if the files in {output} were made with these settings.")
    changed = [k for k in _FLAGS if before.get(k) != settings.get(k) and not (k in _LATER and k not in before)]
    if "styles" in changed and "painting_files" in changed:  # other paintings: their contents differ too
        changed.remove("painting_files")
    if changed:
        was = "; ".join(f"{_FLAGS[k]} differ" if k in _DIGESTS else
                        f"{_FLAGS[k]} {_value(k, before.get(k))}, now {_value(k, settings.get(k))}" for k in changed)
        raise FastNSTError(f"--output {output} holds a run made with other settings ({was}): its files would be "
                           "kept and described with the new ones. Rerun with that run's settings to finish it, "
                           "or choose another --output.")


def _value(key: str, value: object) -> str:
    if value is None:  # max_size's "keep the size" is 0 on the command line; alpha etc.: not AdaIN
        return "0" if key == "max_size" else "(none)"
    return shown(str(value), 80)


def save_run_settings(output: Path, settings: dict) -> None:
    """Record ``settings`` in ``output`` (made if missing) unless a run recorded them already
    (after :func:`check_run_settings`: the same ones, but for those an earlier fast-nst did not
    record, which are added)."""
    path = output / RUN_SETTINGS
    try:
        output.mkdir(parents=True, exist_ok=True)
        record = settings
        if path.is_file():
            before = read_json_file(path, "the settings of the run in --output", FastNSTError)
            if not isinstance(before, dict) or not [k for k in _LATER if k not in before]:
                return
            record = {**{k: settings.get(k) for k in _LATER}, **before}
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as e:  # the first write of the run: an unwritable --output is said here, before any work
        raise FastNSTError(f"cannot write into --output {output}: {e.strerror or e}; choose another folder.") from None


def remove_stale_temps(output: Path) -> int:
    """Remove the temporary files a killed run left under ``output`` (its images in flight);
    returns how many. Only while no process writes there (rank 0, before the others start)."""
    removed = 0
    for folder, _, files in os.walk(output):
        for name in files:
            if _TEMP.fullmatch(name):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed


class PaintingHashes:
    """The paintings' SHA-256 remembered in ``output``/:data:`PAINTING_HASHES` by (relative path,
    size, mtime_ns): :meth:`sha256` reads a painting only when it is new or its size or
    modification time changed. Another file put in place with the same size and the same
    mtime_ns (a copy that keeps times, of a file of the same size) is missed: its old hash is
    taken. The record lies in the user's folder: anything in it that is not a valid entry is
    ignored (those paintings are read again), never an error."""

    def __init__(self, output: Path):
        self.path = Path(output) / PAINTING_HASHES
        self.known = self._load()
        self.now: dict[str, list] = {}

    def _load(self) -> dict[str, list]:
        try:
            record = read_json_file(self.path, "the paintings' checksums", FastNSTError, _MAX_HASHES_BYTES, 3)
        except FastNSTError:  # missing, damaged, too large: every painting is read again
            return {}
        files = record.get("files") if isinstance(record, dict) and record.get("version") == 1 else None
        if not isinstance(files, dict):
            return {}
        return {name: entry for name, entry in files.items()
                if isinstance(entry, list) and len(entry) == 3 and all(type(v) is int for v in entry[:2])
                and isinstance(entry[2], str) and _SHA256_HEX.fullmatch(entry[2])}

    def sha256(self, styles: Path, name: str) -> str:
        """The SHA-256 (hex) of painting ``name`` (relative to ``styles``); DataError as
        :func:`~fast_nst.core.untrusted.file_sha256` for one that cannot be read."""
        try:
            # Before the read: a file changed while it is read has a newer mtime at the next run.
            st = os.stat(styles / name)
            key = [st.st_size, st.st_mtime_ns] if stat.S_ISREG(st.st_mode) else None
        except OSError:
            key = None  # file_sha256 says what is wrong
        known = self.known.get(name)
        if key is not None and known is not None and known[:2] == key:
            content = known[2]
        else:
            content = _painting_sha256(styles, name)
        if key is not None:
            self.now[name] = [*key, content]
        return content

    def save(self) -> None:
        """Write the hashes of this run's paintings (only theirs: removed paintings go), unless
        they are what the record held. A record that cannot be written costs only a reread."""
        if self.now == self.known:
            return
        try:
            with atomic_write(self.path) as tmp:
                tmp.write_text(json.dumps({"version": 1, "files": self.now}, separators=(",", ":")),
                               encoding="utf-8")  # ASCII: names that are not UTF-8 as \udcXX escapes
        except OSError:
            pass


def paintings_digest(styles: Path, paintings: Sequence[str], hashes: Optional[PaintingHashes] = None) -> str:
    """SHA-256 over the ``paintings`` (paths relative to ``styles``) and the bytes of each: another
    image saved under a painting's name changes it, so a resumed run never mixes the outputs of
    two paintings under one name. Reads every painting once, or with ``hashes`` only those
    changed since they were recorded (see :class:`PaintingHashes`)."""
    digest = hashlib.sha256()
    for name in paintings:
        content = hashes.sha256(styles, name) if hashes is not None else _painting_sha256(styles, name)
        digest.update(f"{name}\0{content}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _painting_sha256(styles: Path, name: str) -> str:
    return file_sha256(styles / name, "--styles: the painting", MAX_PAINTING_BYTES,
                       "move it out of --styles or save it smaller")


def painting_list(styles: Optional[Path]) -> list[str]:
    """The paintings under ``styles`` (recursively, sorted), relative POSIX paths."""
    if styles is None:
        return []
    input_folder(styles, "--styles")
    found = [p.relative_to(styles).as_posix() for p in list_images(styles)]
    if not found:
        raise FastNSTError(f"--styles {styles}: no images in it or its subfolders.")
    return found
