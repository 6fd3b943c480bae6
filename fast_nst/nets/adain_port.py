"""The published AdaIN model of the reference PyTorch port (naoto0804/pytorch-AdaIN, release
v0.0.0) as a fast-nst :class:`~fast_nst.nets.adain.AdaINNet`, exactly.

The port publishes two state dicts: ``vgg_normalised.pth``, Huang & Belongie's normalised VGG-19
(the loss-network row ``vgg19_normalised``, read by :mod:`fast_nst.lossnet.normalised`), and
``decoder.pth``, one ``nn.Sequential`` that mirrors the encoder to relu4_1: each convolution a
reflection padding module, the 3x3 convolution and a ReLU (none after the last), each pool a
nearest x2 upsampling. fast-nst's decoder (:func:`~fast_nst.nets.adain.build_decoder`) has the
same layers in the same order, grouped one module per convolution; only the keys differ.
Its AdaIN divides the variance by H*W - 1 (``AdaINArgs.unbiased_std``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

import torch

from ..core.errors import CheckpointError
from ..lossnet import get_loss_network
from .adain import AdaINArgs, AdaINNet, build_decoder, file_sha256

__all__ = ["DECODER_SHA256", "DECODER_URL", "ENCODER", "ENCODER_FILE", "ENCODER_SHA256", "ENCODER_URL", "PORT", "decoder_from_published", "decoder_keys", "published_adain"]

PORT = "naoto0804/pytorch-AdaIN"
ENCODER = "vgg19_normalised"  # the loss-network row of vgg_normalised.pth
ENCODER_URL, ENCODER_FILE = get_loss_network(ENCODER).url, get_loss_network(ENCODER).file
ENCODER_SHA256 = get_loss_network(ENCODER).sha256
DECODER_URL = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/decoder.pth"
# Not published by the port; the SHA-256 that several independent public projects pin for this
# release asset (like the encoder's, in fast_nst.lossnet's vgg19_normalised row).
DECODER_SHA256 = "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472"
# The published decoder was trained on the encoder up to relu4_1 (the paper's layer).
_ARGS = AdaINArgs(encoder=ENCODER, encoder_layer="relu4_1", unbiased_std=True)


def decoder_keys() -> dict[str, str]:
    """{published key: fast-nst decoder key}: the port's Sequential index of each convolution
    (3 modules per convolution with a ReLU, 2 for the last, 1 per upsampling) against fast-nst's
    module index (one per convolution or upsampling; the convolution is its part 1)."""
    mapping, index = {}, 0
    for ours, (cin, _) in enumerate(reversed(_ARGS.plan())):
        if cin == 0:  # an upsampling
            index += 1
            continue
        for kind in ("weight", "bias"):
            mapping[f"{index + 1}.{kind}"] = f"{ours}.1.{kind}"
        index += 3 if cin != 3 else 2
    return mapping


def decoder_from_published(state: object, where: str = "decoder.pth") -> dict[str, torch.Tensor]:
    """The port's decoder state dict (``1.weight`` ... ``28.bias``) in fast-nst's decoder keys,
    every key and shape checked; CheckpointError (naming ``where``) otherwise."""
    expected = build_decoder(_ARGS.plan()).state_dict()
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{where}: not the published AdaIN decoder (a state dict was expected, "
                              f"got {type(state).__name__}).")
    out = {}
    for theirs, ours in decoder_keys().items():
        value = state.get(theirs)
        if not isinstance(value, torch.Tensor) or value.shape != expected[ours].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
            raise CheckpointError(f"{where}: not the published AdaIN decoder of {PORT} ({theirs} has shape "
                                  f"{shape}, expected {tuple(expected[ours].shape)}). Download {DECODER_URL} again.")
        out[ours] = value.float()
    extra = sorted(set(state) - set(decoder_keys()))
    if extra:
        raise CheckpointError(f"{where}: unexpected keys {', '.join(extra[:4])} for the published AdaIN "
                              f"decoder of {PORT}; download {DECODER_URL} again.")
    return out


def published_adain(encoder_file: Union[str, Path], decoder_state: object,
                    where: str = "decoder.pth") -> AdaINNet:
    """The port's model as an :class:`AdaINNet` (eval mode): the encoder read from
    ``encoder_file`` (``vgg_normalised.pth``) and pinned by its SHA-256, the decoder's weights
    from ``decoder_state`` (``decoder.pth``, loaded)."""
    decoder = decoder_from_published(decoder_state, where)
    path = Path(encoder_file)
    if not path.is_file():
        raise CheckpointError(f"{path}: the AdaIN encoder weights are not there; download {ENCODER_URL} to it.")
    args = AdaINArgs(**{**_ARGS.to_dict(), "encoder_file": str(path), "encoder_sha256": file_sha256(path)})
    net = AdaINNet(args)
    net.decoder.load_state_dict(decoder)
    return net.eval()
