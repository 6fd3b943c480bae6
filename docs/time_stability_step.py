"""Time a training step with and without the stability term (docs/video.md):

    python docs/time_stability_step.py [--model_type johnson] [--image_size 256] [--batch_size 4]

A step is what the trainer runs: the transform network forward (on the batch, or on the batch and
its moved copy), the perceptual loss with VGG16 (random weights: the same arithmetic as trained
ones), backward and an Adam update. Prints the best of --repeats alternating timings of each
(the least disturbed by other programs) and the extra time in percent.
"""

from __future__ import annotations

import argparse
import time

import torch

from fast_nst.lossnet.losses import PerceptualLoss
from fast_nst.lossnet.vgg import build_loss_network
from fast_nst.nets import NETWORKS, build_network
from fast_nst.training.stability import moved_copy, stability_loss

CONTENT, STYLE = ["relu2_2"], ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_type", default="johnson", choices=[n for n, e in NETWORKS.items() if not e.many_styles
                                                               and not e.style_input])
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    net = build_network(args.model_type)
    encoder = build_loss_network("random", CONTENT + STYLE, quiet=True)
    style = torch.rand(1, 3, args.image_size, args.image_size)
    loss = PerceptualLoss(encoder, [style], CONTENT, STYLE, 1.0, 1e5, 1.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size)
    idx = torch.tensor(0)

    def step(stable: bool, n: int) -> None:
        opt.zero_grad(set_to_none=True)
        if stable:
            moved, motions = moved_copy(x, 0, n)
            y, y_moved = net(torch.cat([x, moved])).split(len(x))
            total = loss(y, x, idx)["total"] + 1e3 * stability_loss(y, y_moved, motions)
        else:
            total = loss(net(x), x, idx)["total"]
        total.backward()
        opt.step()

    best = {False: float("inf"), True: float("inf")}
    for n in range(args.repeats + 1):
        for stable in (False, True):
            t0 = time.perf_counter()
            step(stable, n)
            if n:  # the first round warms up
                best[stable] = min(best[stable], time.perf_counter() - t0)
    print(f"{args.model_type}, batch {args.batch_size} x {args.image_size} px: step {best[False]:.2f} s, with "
          f"stability {best[True]:.2f} s (+{100 * (best[True] / best[False] - 1):.0f} %)")


if __name__ == "__main__":
    main()
