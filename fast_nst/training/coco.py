"""COCO train2014, the photos Johnson et al. trained on (``python -m fast_nst.download coco``),
and val2014 for validation while training (``--split val``)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from tqdm import tqdm

from ..core.untrusted import downloads
from ..core.errors import DownloadError

__all__ = ["COCO_DIR", "COCO_SPLITS", "COCO_URL", "coco_url", "download_coco"]

# split -> (folder, what it holds): the 2014 release Johnson et al. used.
COCO_SPLITS = {"train": ("train2014", "13 GB zip, 82,783 photos"), "val": ("val2014", "6 GB zip, 40,504 photos")}
COCO_URL = "http://images.cocodataset.org/zips/train2014.zip"
COCO_DIR = "data/train2014"


def coco_url(split: str = "train") -> str:
    return f"http://images.cocodataset.org/zips/{COCO_SPLITS[split][0]}.zip"


def download_coco(data_dir: str | Path = "data", keep_zip: bool = False, split: str = "train") -> Path:
    """Fetch COCO train2014 (or val2014 with ``split="val"``) and unpack it into
    ``data_dir/train2014`` (``val2014``)."""
    if split not in COCO_SPLITS:
        raise DownloadError(f"Unknown COCO split {split!r}; choose one of: {', '.join(COCO_SPLITS)}")
    name, url = COCO_SPLITS[split][0], coco_url(split)
    data_dir = Path(data_dir)
    zip_path = data_dir / f"{name}.zip"
    # COCO publishes no checksum; zipfile's CRC check while extracting catches corruption.
    if not zip_path.exists():
        try:
            downloads.download_url(url, zip_path)
        except DownloadError as e:
            raise downloads.finish_by_hand(e, url, zip_path, f"unpacks it into {data_dir / name}"
                                       + ("" if keep_zip else ", then deletes it")) from None
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = zf.infolist()
            for member in tqdm(members, desc=f"unzip {name}", unit="file", file=sys.stderr):
                zf.extract(member, data_dir)  # zipfile drops "..", absolute paths and drive letters
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{zip_path} is damaged ({e}); delete it and run the command again.") from None
    except OSError as e:  # a full disk or read-only folder: the zip itself is fine, keep it
        raise DownloadError(f"Cannot unpack {zip_path} into {data_dir}: {e.strerror or e}. Free some space "
                            "(or choose another --dest) and run the command again; the zip is kept.") from None
    if not keep_zip:
        zip_path.unlink()
    return data_dir / name
