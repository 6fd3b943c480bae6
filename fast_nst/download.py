"""Downloads: VGG16 weights, COCO train2014 and style images.

``python -m fast_nst.download vgg16``  -> pretrained/vgg16-397923af.pth
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

from .errors import DownloadError, FastNSTError

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
        raise DownloadError(f"Download of {url} to {dest} failed: {getattr(e, 'reason', e)}") from None
    if sha256_prefix is not None:
        digest = sha256_file(part)
        if not digest.startswith(sha256_prefix):
            part.unlink(missing_ok=True)
            raise DownloadError(f"Download of {url} is corrupt (sha256 {digest[:8]}..., expected "
                                f"{sha256_prefix}...); run the command again.")
    os.replace(part, dest)
    return dest


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
    dest = Path(cache_dir) / name
    if not dest.exists():
        try:
            download_url(source, dest)
        except DownloadError as e:
            raise DownloadError(f"{e}. Download the style image yourself and set style_image to "
                                "its local path.") from None
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
        download_url(COCO_URL, zip_path)
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

    zip_path = Path(data_dir) / "pytorch_examples_saved_models.zip"
    if not zip_path.exists():
        download_url(PRETRAINED_URL, zip_path)
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fast_nst.download",
                                     description="Download what a real training run needs.")
    parser.add_argument("what", choices=["vgg16", "vgg19", "coco", "pretrained"],
                        help="vgg16/vgg19: loss-network weights into pretrained/; coco: train2014 into "
                             "data/; pretrained: ready-made models (candy, mosaic, rain_princess, "
                             "udnie) into models/")
    parser.add_argument("--dest", help="override the destination (file for vgg16, folder for coco "
                        "and pretrained)")
    parser.add_argument("--keep_zip", action="store_true", help="coco: keep train2014.zip")
    args = parser.parse_args(argv)
    try:
        if args.what in ("vgg16", "vgg19"):
            paths = [download_vgg(args.what, args.dest)]
        elif args.what == "coco":
            paths = [download_coco(args.dest or "data", keep_zip=args.keep_zip)]
        else:
            paths = download_pretrained(args.dest or "models")
    except FastNSTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"Saved {path}")
    if args.what == "pretrained":
        print(f"Try: python eval.py --model_file {paths[0]} --image_file photo.jpg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
