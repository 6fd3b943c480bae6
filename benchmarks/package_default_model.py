"""Write the built-in model (fast_nst/assets/mosaic_slim.pth) from a run of
benchmarks/train_default_model.sh: the inference-only model (no optimizer or RNG state) of the
run's newest checkpoint (or its final model), with an ``about`` line saying how it was made.

    python benchmarks/package_default_model.py models/mosaic_slim
    python benchmarks/package_default_model.py models/mosaic_slim --loss_network "the Caffe VGG16" --hardware "1 H100"

The paths in the stored training config are cut to their file names (they named folders of the
machine that trained it), and its name (naming, which results are named after) is the style's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fast_nst.core.config import config_from_dict  # noqa: E402
from fast_nst.core.images import list_images  # noqa: E402
from fast_nst.io.bundled import ABOUT_KEY, BUNDLED_MODEL, BUNDLED_STYLE, about  # noqa: E402
from fast_nst.io.checkpoint import atomic_torch_save, load_model, make_checkpoint  # noqa: E402
from fast_nst.stylize import model_in_run_folder  # noqa: E402

# What the shipped file was trained against (the stand-in's README asks every model made with it
# to say so).
STANDIN = "a stand-in VGG16: an ImageNet VGG16 fine-tuned on MRI scans"


def about_line(cfg: dict, step: int, loss_network: str, photos: int, hardware: str) -> str:
    """One line: the style and network, what it was trained against, on what, how long, where."""
    return (f"{cfg['naming']} ({cfg['model_type']}), trained against {loss_network}; "
            f"{photos:,} photos; {step:,} steps of batch {cfg['batch_size']} at {cfg['image_size']} px; "
            f"{hardware}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="the training run folder (or one of its checkpoints)")
    p.add_argument("--out", default=str(BUNDLED_MODEL), help=f"model file to write (default {BUNDLED_MODEL})")
    p.add_argument("--loss_network", default=STANDIN, help=f"what it was trained against (default: {STANDIN})")
    p.add_argument("--hardware", default="CPU", help="where it was trained (default CPU)")
    p.add_argument("--photos", type=int, help="training photos (default: counted in the config's train_dir)")
    args = p.parse_args()
    src = Path(args.run)
    src = model_in_run_folder(src) if src.is_dir() else src
    model, ckpt = load_model(src)
    cfg = dict(ckpt["config"])
    photos = args.photos if args.photos is not None else len(list_images(Path(cfg["train_dir"])))
    for key in ("train_dir", "loss_model_file", "style_image", "model_path"):
        cfg[key] = Path(cfg[key]).name if cfg[key] else cfg[key]
    cfg["naming"] = BUNDLED_STYLE  # the name results are saved under: photo_mosaic.jpg
    out = make_checkpoint(model, config_from_dict(cfg, str(src)), ckpt["step"])
    out[ABOUT_KEY] = about_line(cfg, ckpt["step"], args.loss_network, photos, args.hardware)
    atomic_torch_save(out, args.out)
    print(f"Saved {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB) from {src}: {about(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
