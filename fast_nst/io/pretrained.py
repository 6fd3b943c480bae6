"""pytorch/examples' published fast_neural_style models, downloaded and converted into
fast-nst checkpoints ready to stylize with (``python -m fast_nst.download pretrained``)."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from ..core.untrusted import downloads, shown
from ..core.errors import CheckpointError, DownloadError
from ..core.files import safe_component
from .adain_pretrained import ADAIN_MODEL_NAME
from .convert import converted_checkpoint, write_converted

__all__ = ["PRETRAINED_NAMES", "PRETRAINED_URL", "PRETRAINED_ZIP", "download_pretrained", "pretrained_hint",
           "require_downloaded"]

# pytorch/examples' published fast_neural_style models (candy, mosaic, rain_princess, udnie),
# the archive their README links to.
PRETRAINED_URL = "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"
PRETRAINED_ZIP = "pytorch_examples_saved_models.zip"
PRETRAINED_NAMES = ("candy", "mosaic", "rain_princess", "udnie")
# Each published model is 6.7 MB; a member claiming more than 100x that is not one of them.
MAX_MODEL_BYTES = 700 << 20


def pretrained_hint(path: str | Path) -> str:
    """How to get ``path`` when it is where ``python -m fast_nst.download pretrained`` puts one of
    its models, or ``download adain`` the published AdaIN model (``.../mosaic/mosaic.pth``,
    ``.../adain/adain.pth``, or the run folder ``.../mosaic``); "" otherwise."""
    path = Path(path)
    for name in (*PRETRAINED_NAMES, ADAIN_MODEL_NAME):
        if path.parts[-2:] == (name, f"{name}.pth") or (path.name == name and not path.suffix):
            where = path.parent.parent if path.suffix else path.parent
            dest = "" if where == Path("models") else f" --dest {where}"
            if name == ADAIN_MODEL_NAME:
                return (f" It is the published AdaIN model: python -m fast_nst.download adain{dest} puts it "
                        "there.")
            return (f" It is one of pytorch/examples' ready-made models: python -m fast_nst.download "
                    f"pretrained{dest} puts {', '.join(PRETRAINED_NAMES)} there.")
    return ""


def require_downloaded(path: str | Path) -> None:
    """:class:`CheckpointError` saying which download makes ``path`` when it is missing and is
    where a download puts a ready-made model (see :func:`pretrained_hint`)."""
    if not Path(path).exists() and pretrained_hint(path):
        raise CheckpointError(f"Model file not found: {path}.{pretrained_hint(path)}")


def download_pretrained(models_dir: str | Path = "models", data_dir: str | Path = "data") -> list[Path]:
    """Fetch pytorch/examples' four published models and convert each into
    ``models_dir/<name>/<name>.pth``; returns the written paths."""
    zip_path = Path(data_dir) / PRETRAINED_ZIP
    if not zip_path.exists():
        try:
            downloads.download_url(PRETRAINED_URL, zip_path)
        except DownloadError as e:
            raise downloads.finish_by_hand(e, PRETRAINED_URL, zip_path, "converts the models into "
                                       f"{Path(models_dir) / '<name>' / '<name>.pth'}") from None
    # Every member is read and converted before any is written: a bad one leaves no half set.
    return [write_converted(ckpt, dest) for dest, ckpt in _converted_members(zip_path, Path(models_dir))]


def _converted_members(zip_path: Path, models_dir: Path) -> list[tuple[Path, dict]]:
    """(destination, checkpoint) of each .pth model in the zip at ``zip_path``; DownloadError,
    naming the zip and the member and saying to fetch it again, for any that is not a model."""
    converted = []
    try:
        with zipfile.ZipFile(zip_path) as zf, tempfile.TemporaryDirectory() as tmp:
            for member in zf.infolist():
                if not member.filename.endswith(".pth") or Path(member.filename).name.startswith("."):
                    continue
                # The archive's member names become folder names: make them safe.
                name = safe_component(Path(member.filename).stem)
                if member.file_size > MAX_MODEL_BYTES:
                    raise DownloadError(f"{zip_path}: {name}.pth claims {member.file_size:,} bytes, far more "
                                        "than a style network; delete the zip and run the command again.")
                src = Path(tmp) / f"{name}.pth"
                src.write_bytes(zf.read(member))
                dest = models_dir / name / f"{name}.pth"
                try:
                    converted.append((dest, converted_checkpoint(src, dest, naming=name)))
                except CheckpointError as e:  # the model, not dest: its message names the temporary copy
                    reason = str(e).replace(f"{src}: ", "").replace(str(src), member.filename)
                    raise DownloadError(f"{zip_path}: its member {shown(member.filename)} cannot be converted: "
                                        f"{reason.rstrip('.')}. Nothing was written; delete the zip and run "
                                        "the command again.") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{zip_path} is damaged ({e}); delete it and run the command again.") from None
    if not converted:
        raise DownloadError(f"{zip_path} holds no .pth models; delete it and run the command again.")
    return converted
