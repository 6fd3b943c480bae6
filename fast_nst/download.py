"""Downloads: VGG16/VGG19 loss-network weights and COCO train2014 for training, and
pytorch/examples' published models for stylizing without training.

``python -m fast_nst.download vgg16``  -> pretrained/vgg16-397923af.pth (vgg19: vgg19-dcbb9e9d.pth)
``python -m fast_nst.download coco``   -> data/train2014/ (13 GB zip, resumable)
``python -m fast_nst.download pretrained`` -> models/{candy,mosaic,rain_princess,udnie}/ (converted
pytorch/examples models, ready to stylize with)

Downloads go to ``<dest>.part`` first and resume from it (HTTP Range) when run again; the file
is renamed into place only when complete and, where a checksum is published, verified.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional, Sequence

from tqdm import tqdm

from .cli import run_command
from .errors import DownloadError

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILE = "pretrained/vgg16-397923af.pth"
# torchvision names weight files <name>-<first 8 hex digits of the file's sha256>.pth.
VGG16_SHA256_PREFIX = "397923af"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILE = "pretrained/vgg19-dcbb9e9d.pth"
VGG19_SHA256_PREFIX = "dcbb9e9d"
COCO_URL = "http://images.cocodataset.org/zips/train2014.zip"
COCO_DIR = "data/train2014"
STYLE_CACHE = "data/styles"
# pytorch/examples' published fast_neural_style models (candy, mosaic, rain_princess, udnie),
# the archive their README links to.
PRETRAINED_URL = "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"
PRETRAINED_ZIP = "pytorch_examples_saved_models.zip"
PRETRAINED_NAMES = ("candy", "mosaic", "rain_princess", "udnie")
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def _open(url: str, start: int):
    request = urllib.request.Request(url, headers={"User-Agent": "fast-nst"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)


def download_url(url: str, dest: str | Path, sha256_prefix: Optional[str] = None,
                 quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, resuming a previous ``.part`` file.

    Raises :class:`DownloadError` naming the URL and destination when anything goes wrong.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    created = missing_dirs(dest.parent)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        start = part.stat().st_size if part.exists() else 0
        with _open(url, start) as response:
            status = getattr(response, "status", 200)
            if start and status != 206:  # server ignored Range: start over
                start = 0
            length = response.headers.get("Content-Length")
            total = int(length) + start if length is not None else None
            with open(part, "ab" if start else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=quiet, file=sys.stderr,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except (urllib.error.URLError, OSError, ValueError) as e:
        _clean_up(part, created)
        kept = (f" The {part.stat().st_size / 2**20:.1f} MB downloaded so far are kept in {part}; "
                "running the command again resumes from there." if part.exists() else "")
        raise DownloadError(f"Download of {url} to {dest} failed: {getattr(e, 'reason', e)}.{kept}") from None
    if sha256_prefix is not None:
        digest = sha256_file(part)
        if not digest.startswith(sha256_prefix):
            part.unlink(missing_ok=True)
            raise DownloadError(f"Download of {url} is corrupt (sha256 {digest[:8]}..., expected "
                                f"{sha256_prefix}...); run the command again.")
    os.replace(part, dest)
    return dest


def missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_dirs(made: list[Path]) -> None:
    """Remove the folders :func:`missing_dirs` listed (deepest first) again, while they are empty."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # something else is in it now: leave it and its parents
            return


def _clean_up(part: Path, created: list[Path]) -> None:
    """After a failed download: drop an empty ``.part`` and the folders made for it if empty.

    A ``.part`` with data is kept: running the command again resumes from it.
    """
    try:
        if part.exists() and part.stat().st_size == 0:
            part.unlink()
    except OSError:
        pass
    remove_dirs(created)


def _by_hand(error: DownloadError, url: str, zip_path: Path, then: str) -> DownloadError:
    """``error`` plus how to finish without network here: the commands reuse a zip at ``zip_path``."""
    return DownloadError(
        f"{error}\nTo finish by hand, download\n  {url}\non a machine with internet (in a browser, "
        f"or with curl -L -o {zip_path.name} URL), put the file at {zip_path} and run this command "
        f"again: it then uses that zip instead of downloading, and {then}."
    )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def fetch_style_image(source: str, cache_dir: str | Path = STYLE_CACHE) -> Path:
    """Local path of a style image; an http(s) URL is downloaded once into ``cache_dir``."""
    if not is_url(source):
        return Path(source)
    name = Path(urllib.parse.urlparse(source).path).name or "style.jpg"
    # The URL's hash in the name: two paintings published as .../style.jpg must not share a file.
    tag = hashlib.sha1(source.encode("utf-8")).hexdigest()[:8]
    dest = Path(cache_dir) / f"{Path(name).stem}-{tag}{Path(name).suffix or '.jpg'}"
    if not dest.exists():
        try:
            download_url(source, dest)
        except DownloadError as e:
            raise DownloadError(f"{str(e).rstrip('.')}. Download the style image yourself and set "
                                "style_image to its local path.") from None
    return dest


def download_vgg(arch: str = "vgg16", dest: str | Path | None = None, quiet: bool = False) -> Path:
    """Fetch torchvision's ImageNet VGG16 (528 MB) or VGG19 (548 MB) weights into ``dest``."""
    url, default, prefix = ((VGG16_URL, VGG16_FILE, VGG16_SHA256_PREFIX) if arch == "vgg16"
                            else (VGG19_URL, VGG19_FILE, VGG19_SHA256_PREFIX))
    dest = dest or default
    try:
        return download_url(url, dest, sha256_prefix=prefix, quiet=quiet)
    except DownloadError as e:
        raise DownloadError(
            f"{e}\nThe {arch.upper()} loss network needs torchvision's ImageNet weights. Download\n"
            f"  {url}\nand put the file at {dest} (or set loss_model_file / --loss_model_file to "
            "where it is). For a smoke test without them, use --set loss_model_weights=random "
            "(train.py) or --loss_model_weights random (optimize)."
        ) from None


def download_vgg16(dest: str | Path = VGG16_FILE, quiet: bool = False) -> Path:
    """Fetch torchvision's ImageNet VGG16 weights (528 MB) into ``dest``."""
    return download_vgg("vgg16", dest, quiet)


def download_coco(data_dir: str | Path = "data", keep_zip: bool = False) -> Path:
    """Fetch COCO train2014 (13 GB, 82,783 images) and unpack it into ``data_dir/train2014``."""
    data_dir = Path(data_dir)
    zip_path = data_dir / "train2014.zip"
    # COCO publishes no checksum; zipfile's CRC check while extracting catches corruption.
    if not zip_path.exists():
        try:
            download_url(COCO_URL, zip_path)
        except DownloadError as e:
            raise _by_hand(e, COCO_URL, zip_path, f"unpacks it into {data_dir / 'train2014'}"
                           + ("" if keep_zip else ", then deletes it")) from None
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = zf.infolist()
            for member in tqdm(members, desc="unzip train2014", unit="file", file=sys.stderr):
                zf.extract(member, data_dir)
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{zip_path} is damaged ({e}); delete it and run the command again.") from None
    if not keep_zip:
        zip_path.unlink()
    return data_dir / "train2014"


def download_pretrained(models_dir: str | Path = "models", data_dir: str | Path = "data") -> list[Path]:
    """Fetch pytorch/examples' four published models and convert each into
    ``models_dir/<name>/<name>.pth``; returns the written paths."""
    import tempfile

    from .convert import convert_file

    zip_path = Path(data_dir) / PRETRAINED_ZIP
    if not zip_path.exists():
        try:
            download_url(PRETRAINED_URL, zip_path)
        except DownloadError as e:
            raise _by_hand(e, PRETRAINED_URL, zip_path, "converts the models into "
                           f"{Path(models_dir) / '<name>' / '<name>.pth'}") from None
    written = []
    try:
        with zipfile.ZipFile(zip_path) as zf, tempfile.TemporaryDirectory() as tmp:
            for member in zf.infolist():
                name = Path(member.filename).stem
                if not member.filename.endswith(".pth") or name.startswith("."):
                    continue
                src = Path(tmp) / f"{name}.pth"
                src.write_bytes(zf.read(member))
                written.append(convert_file(src, Path(models_dir) / name / f"{name}.pth", naming=name))
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{zip_path} is damaged ({e}); delete it and run the command again.") from None
    if not written:
        raise DownloadError(f"{zip_path} holds no .pth models; delete it and run the command again.")
    return written


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fast_nst.download",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Download the loss-network weights and photos that training needs, or ready-made models to
stylize with, no training needed. Default destinations are relative to the current directory.

targets:
  vgg16       torchvision's ImageNet VGG16 weights (528 MB): the loss network of train.py
              and python -m fast_nst.optimize
                from {VGG16_URL}
                to   {VGG16_FILE}
  vgg19       the same for VGG19 (548 MB), for loss_model vgg19
                from {VGG19_URL}
                to   {VGG19_FILE}
  coco        COCO train2014 (13 GB zip, 82,783 photos): the training photos
                from {COCO_URL}
                to   data/train2014.zip, unpacked into data/train2014/ (zip then deleted)
  pretrained  pytorch/examples' published fast_neural_style models, ready for inference
              ({', '.join(PRETRAINED_NAMES)}; python eval.py --model_file models/candy/candy.pth)
                from {PRETRAINED_URL}
                to   data/{PRETRAINED_ZIP} (kept),
                     converted into models/<name>/<name>.pth

An interrupted download resumes from <file>.part when run again. Without internet here,
download the URL on another machine and put the file at the "to" path; for coco and
pretrained, then run the command again: it uses the zip there instead of downloading.""",
        epilog="Example: python -m fast_nst.download vgg16",
    )
    p.add_argument("what", choices=["vgg16", "vgg19", "coco", "pretrained"],
                   help="vgg16, vgg19: loss-network weights (training, optimize); coco: training "
                        "photos; pretrained: ready-made models for inference (see targets above)")
    p.add_argument("--dest", help=f"override the destination: vgg16, vgg19: the weights file "
                   f"(default {VGG16_FILE}, {VGG19_FILE}); coco: the folder that gets "
                   "train2014.zip and train2014/ (default data); pretrained: the folder that gets "
                   "<name>/<name>.pth (default models; the zip still goes to data/)")
    p.add_argument("--keep_zip", action="store_true",
                   help="coco: keep train2014.zip after unpacking it")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        if args.what in ("vgg16", "vgg19"):
            paths = [download_vgg(args.what, args.dest)]
        elif args.what == "coco":
            paths = [download_coco(args.dest or "data", keep_zip=args.keep_zip)]
        else:
            paths = download_pretrained(args.dest or "models")
        for path in paths:
            print(f"Saved {path}")
        if args.what == "pretrained":
            print(f"Try: python eval.py --model_file {paths[0]} --image_file photo.jpg")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
