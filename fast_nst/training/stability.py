"""Stability training: the network should commute with small motions of its input.

Frame-by-frame stylization flickers because a transform network is not equivariant to sub-pixel
motion (strided convolutions sample a fixed grid) and its instance norms see slightly different
statistics each frame. Without optical flow, we can teach it: each step also stylizes a copy of
the batch moved by a known random motion (sub-pixel shift, zoom, rotation; :func:`random_motions`)
plus a little noise, and penalises the difference between the moved stylization and the
stylization of the moved photos on the pixels both see (Gupta et al. 2017 penalise the noise
part; the known-motion part is the flow-free form of Ruder et al.'s temporal loss).

Only the transform network runs on the moved copy (it is stacked onto the batch: one forward,
so DistributedDataParallel sees one call per step); the loss network does not. For an AdaIN
network the frozen encoder makes the copy's target in the batch's styles, and the decoder (what
trains) takes both targets as one batch.
"""

from __future__ import annotations

import torch

from ..core.motion import SMALL_MOTION, WARP_MODE, random_motions, warp

__all__ = ["moved_copy", "stability_loss"]


def moved_copy(x: torch.Tensor, seed: int, step: int, first: int = 0,
               noise: float = SMALL_MOTION["noise"]) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (N, 3, H, W) in [0, 1] moved by a random small motion each, plus Gaussian noise of
    std ``noise``. Returns (moved (N, 3, H, W) in [0, 1], motions (N, 3, 3)).

    Photo ``i`` of the batch is sample ``first + i`` of the global batch of step ``step``: its
    motion and noise come from a generator seeded by (``seed``, ``step``, that index) alone, so a
    resumed run and a run on several processes (each passing its slice's ``first``) draw exactly
    what one uninterrupted process would. The border the motion uncovers is filled by reflection
    (a real frame has content there too); :func:`stability_loss` leaves it out."""
    n, c, h, w = x.shape
    motions, noises = [], []
    for i in range(n):
        gen = torch.Generator().manual_seed(((seed * 1_000_003 + step) * 65_537 + first + i) % (1 << 63))
        motions.append(random_motions(1, h, w, generator=gen)[0])
        if noise:
            noises.append(torch.randn(c, h, w, generator=gen))
    motions_t = torch.stack(motions)
    moved, _ = warp(x, motions_t, padding_mode="reflection")
    if noise:
        moved = moved + torch.stack(noises).to(moved.device, moved.dtype) * noise
    return moved.clamp(0, 1), motions_t


def stability_loss(y: torch.Tensor, y_moved: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
    """The mean over photos of the mean squared difference (over valid pixels and channels)
    between the stylization ``y`` (N, 3, H, W) moved by ``motions`` (N, 3, 3) and ``y_moved``, the
    stylization of the moved photos; a scalar (float32). Pixels whose source lies outside the
    image are left out. Per photo first, so that the mean over processes of their batches' losses
    is the loss of the global batch (DistributedDataParallel averages gradients).

    ``y`` is moved with bicubic interpolation (:data:`~fast_nst.core.motion.WARP_MODE`, as the
    warping error measures): a bilinear move blurs a sharp texture, and the network would learn
    to blur its texture to match it (measured: 600 fine-tuning steps reached 1.9x less flicker
    at +6 % style loss with a bilinear move, 2.1x at +7 % with a bicubic one, docs/video.md)."""
    target, valid = warp(y.float(), motions, mode=WARP_MODE)
    valid = valid.float()
    sq = (target - y_moved.float()).square().mean(dim=1, keepdim=True)  # (N, 1, H, W)
    per_photo = (sq * valid).sum(dim=(1, 2, 3)) / valid.sum(dim=(1, 2, 3)).clamp(min=1)  # (N,)
    return per_photo.mean()
