"""COCO train2014, the photos Johnson et al. trained on (``python -m fast_nst.download coco``)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from tqdm import tqdm

from ..core import fetch
from ..core.errors import DownloadError

__all__ = ["COCO_DIR", "COCO_URL", "download_coco"]

COCO_URL = "http://images.cocodataset.org/zips/train2014.zip"
COCO_DIR = "data/train2014"


def download_coco(data_dir: str | Path = "data", keep_zip: bool = False) -> Path:
    """Fetch COCO train2014 (13 GB, 82,783 images) and unpack it into ``data_dir/train2014``."""
    data_dir = Path(data_dir)
    zip_path = data_dir / "train2014.zip"
    # COCO publishes no checksum; zipfile's CRC check while extracting catches corruption.
    if not zip_path.exists():
        try:
            fetch.download_url(COCO_URL, zip_path)
        except DownloadError as e:
            raise fetch.finish_by_hand(e, COCO_URL, zip_path, f"unpacks it into {data_dir / 'train2014'}"
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
