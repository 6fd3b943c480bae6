"""Regenerate the figures in docs/stylize.md: python docs/make_figures.py [PHOTO]

Without a trained model at hand it uses an untrained transform net with randomised
instance-norm parameters: its output is not a style, but it reacts to normalisation statistics
exactly like a trained one, which is what the tiling figure is about.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from fast_nst.core.images import pil_to_tensor, tensor_to_pil
from fast_nst.nets.johnson import TransformNet
from fast_nst.stylize.tiling import plan_tiles, stylize_tiled

OUT = Path(__file__).parent / "images"


def synthetic_photo(size: int = 1024) -> Image.Image:
    """Smooth gradients, rings and a bright sky band: regions with different statistics."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = 0.5 + 0.5 * np.sin(12 * np.hypot(xx - 0.3, yy - 0.6))
    g = np.clip(1.2 - yy * 1.5, 0, 1)
    b = 0.5 + 0.5 * np.cos(9 * xx + 4 * yy)
    return Image.fromarray((np.stack([r, g, b], -1) * 255).astype(np.uint8))


def main() -> None:
    torch.manual_seed(0)
    net = TransformNet().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    photo = Image.open(sys.argv[1]).convert("RGB").resize((1024, 1024)) if len(sys.argv) > 1 else synthetic_photo()
    x = pil_to_tensor(photo).unsqueeze(0)
    with torch.inference_mode():
        whole = net(x)
        naive = torch.zeros_like(whole)
        for t, l, b, r in plan_tiles(1024, 1024, 256, 0):
            naive[..., t:b, l:r] = net(x[..., t:b, l:r])
    tiled, n = stylize_tiled(net, x, tile=384, overlap=32)
    psnr = lambda a, b: 10 * torch.log10(1 / torch.mean((a - b) ** 2)).item()
    print(f"shared statistics, {n} tiles: {psnr(tiled, whole):.1f} dB; naive 16 tiles: {psnr(naive, whole):.1f} dB")
    crop = (128, 128, 512, 512)  # around the tile corner at (256, 256)
    panels = [("untiled", whole), ("naive tiles", naive), ("fast-nst tiles", tiled)]
    w = crop[2] - crop[0]
    sheet = Image.new("RGB", (3 * w + 20, w + 24), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, img) in enumerate(panels):
        sheet.paste(tensor_to_pil(img[0]).crop(crop), (i * (w + 10), 24))
        draw.text((i * (w + 10) + 4, 5), name, fill="black")
    OUT.mkdir(exist_ok=True)
    sheet.save(OUT / "tiling_seams.png")
    print(f"wrote {OUT / 'tiling_seams.png'}")


if __name__ == "__main__":
    main()
