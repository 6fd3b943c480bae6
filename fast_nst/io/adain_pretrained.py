"""The reference PyTorch port's published AdaIN model (naoto0804/pytorch-AdaIN, release v0.0.0),
downloaded and converted into a fast-nst model: ``python -m fast_nst.download adain``."""

from __future__ import annotations

from pathlib import Path

from ..core.untrusted import downloads
from ..core.config import config_from_dict
from ..core.errors import CheckpointError, DownloadError
from ..nets.adain_port import (DECODER_SHA256, DECODER_URL, ENCODER_FILE, ENCODER_SHA256, ENCODER_URL, PORT,
                               published_adain)
from .checkpoint import atomic_torch_save, make_checkpoint, safe_torch_load

__all__ = ["ADAIN_DECODER_FILE", "ADAIN_MODEL_NAME", "convert_published_adain", "download_adain"]

ADAIN_DECODER_FILE = "pretrained/adain_decoder.pth"
ADAIN_MODEL_NAME = "adain"


def _fetch(url: str, dest: Path, sha256: str) -> Path:
    """``dest`` if it is there and matches ``sha256``, else downloaded from ``url`` and checked
    against it (a file there that does not match is moved aside: see ``download_url``)."""
    return downloads.download_url(url, dest, sha256_prefix=sha256)


def download_adain(models_dir: str | Path = "models", encoder_file: str | Path | None = None,
                   decoder_file: str | Path = ADAIN_DECODER_FILE) -> Path:
    """Fetch the port's ``vgg_normalised.pth`` (to ``encoder_file``, default the loss-network
    row's file) and ``decoder.pth`` (to ``decoder_file``) unless they are there already, and
    convert them into ``models_dir/adain/adain.pth``; returns that path. Offline, the
    DownloadError names both URLs and where to put the files."""
    # A download must match its pinned SHA-256 (a truncated body or a changed release asset is
    # refused and not kept); the conversion also checks every key and shape.
    files = [(ENCODER_URL, Path(encoder_file or ENCODER_FILE), ENCODER_SHA256),
             (DECODER_URL, Path(decoder_file), DECODER_SHA256)]
    for url, dest, sha in files:
        try:
            _fetch(url, dest, sha)
        except (DownloadError, OSError) as e:
            failed = e if isinstance(e, DownloadError) else f"Download of {url} to {dest} failed: {e.strerror or e}."
            where = " and ".join(f"{u} at {d}" for u, d, _ in files)
            # one line, like every error (and the other download targets' "finish by hand")
            raise DownloadError(f"{failed} The published AdaIN model of {PORT} is two files: to finish by hand, "
                                f"download them on a machine with internet, put {where}, and run this command "
                                "again: it converts the files it finds there.") from None
    dest = Path(models_dir) / ADAIN_MODEL_NAME / f"{ADAIN_MODEL_NAME}.pth"
    return convert_published_adain(files[0][1], files[1][1], dest)


def convert_published_adain(encoder_file: str | Path, decoder_file: str | Path, dest: str | Path) -> Path:
    """Convert the port's two files into a fast-nst AdaIN model at ``dest`` (exact: the same
    layers and weights; the encoder stays in its file, pinned by its SHA-256)."""
    net = published_adain(encoder_file, safe_torch_load(decoder_file), str(decoder_file))
    cfg = config_from_dict({"naming": ADAIN_MODEL_NAME, "model_type": "adain", "model_args": net.args.to_dict(),
                            "style_image": f"any (the published AdaIN decoder of {PORT})"}, "download adain")
    try:
        atomic_torch_save(make_checkpoint(net, cfg, step=0), dest)
    except OSError as e:
        raise CheckpointError(f"cannot write {dest}: {e.strerror or e}; choose a writable models folder.") from None
    return Path(dest)
