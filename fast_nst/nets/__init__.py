"""Transform networks and their registry: ``model_type`` (stored in every checkpoint) -> class.

Adding a network: write a module here with a :class:`~fast_nst.nets.base.StyleNetwork`
subclass (its ``Args`` dataclass, ``forward``, and the contract's methods), then add one line to
:data:`NETWORKS`. Training builds it from ``model_type``/``model_args`` in the config,
checkpoints rebuild it from the same two entries, and stylizing, tiling and export use only the
contract.

The table names modules instead of importing them, so that a config can be checked (and a typo
reported) before torch is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["ENCODER_KEYS", "MAX_PARAMETERS", "NETWORKS", "NetworkEntry", "USER_FILE_ARGS", "build_network",
           "check_config", "make_args", "network_class", "receptive_radius", "takes_style_image", "tile_grid"]

# The most parameters any registered network may be built with (a model file is untrusted input,
# its arguments are checked against this before anything is allocated; checkpoint loading bounds
# archive sizes by it): 200M float32 weights are 800 MB, 120x the default Johnson network.
MAX_PARAMETERS = 200_000_000


@dataclass(frozen=True)
class NetworkEntry:
    module: str  # the module that defines the class
    class_name: str
    summary: str
    # Arguments this entry presets (a config's model_args override them): a preset is a
    # registry name for a width/depth trade-off of the same class.
    defaults: tuple[tuple[str, Any], ...] = ()
    # One network for several styles (trained from style_images; its Args has num_styles).
    many_styles: bool = False
    # "image": the style is an image given at every call (arbitrary style transfer: trained on
    # the paintings of style_dir, stylizing with --style_image); "": the styles are learned.
    style_input: str = ""


NETWORKS: dict[str, NetworkEntry] = {
    "johnson": NetworkEntry("fast_nst.nets.johnson", "TransformNet",
                            "Johnson et al. (2016) residual network with instance norm"),
    # Half the width and three residual blocks: about 1/5 of the default's FLOPs per pixel
    # (the CPU speed-up measured in docs/benchmarks.md), for CPUs and phones.
    "johnson_slim": NetworkEntry("fast_nst.nets.johnson", "TransformNet",
                                 "the Johnson network at half width with 3 residual blocks",
                                 (("base_channels", 16), ("num_residual", 3))),
    "johnson_multi": NetworkEntry("fast_nst.nets.multistyle", "MultiStyleNet",
                                  "the Johnson network with one instance-norm scale and shift per style "
                                  "(Dumoulin et al. 2017): many styles and their blends",
                                  many_styles=True),
    # The bare build (no arguments: tests, the API) has a random encoder, so that it needs no
    # 548 MB weights file; training takes the encoder from loss_model, loss_model_file and
    # loss_model_weights, and checkpoints store it in model_args.
    "adain": NetworkEntry("fast_nst.nets.adain", "AdaINNet",
                          "Huang & Belongie (2017): a frozen VGG encoder, adaptive instance norm and a "
                          "trained decoder; any style image, given when stylizing",
                          (("encoder_weights", "random"),), style_input="image"),
}


def _unknown(model_type: object) -> ValueError:
    return ValueError(f"unknown model_type {str(model_type)[:60]!r}; choose one of: {', '.join(NETWORKS)}")


def network_class(model_type: str) -> type:
    """The class registered as ``model_type``; ValueError listing the choices otherwise."""
    if not isinstance(model_type, str) or model_type not in NETWORKS:
        raise _unknown(model_type)
    entry = NETWORKS[model_type]
    return getattr(importlib.import_module(entry.module), entry.class_name)


def make_args(model_type: str, model_args: Mapping[str, Any]) -> Any:
    """The network's ``Args`` dataclass from the entry's preset ``defaults`` and a plain mapping;
    ValueError naming an unknown or out-of-bounds argument (before anything is allocated)."""
    cls = network_class(model_type)
    model_args = {**dict(NETWORKS[model_type].defaults), **model_args}
    names = [f.name for f in dataclasses.fields(cls.Args)]
    unknown = [str(k)[:40] for k in model_args if k not in names]
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(unknown)} for model_type {model_type}; "
                         f"valid: {', '.join(names)}")
    try:
        return cls.Args(**model_args)
    except TypeError as e:
        raise ValueError(str(e)) from None


def build_network(model_type: str, model_args: Mapping[str, Any] = {}) -> Any:
    """A new network of ``model_type`` built from ``model_args`` (see :func:`make_args`). Its
    checkpoints record the class's own ``model_type`` and the full arguments, so a preset's
    model loads wherever its class is registered."""
    return network_class(model_type)(make_args(model_type, model_args))


def receptive_radius(model_type: str, model_args: Mapping[str, Any]) -> int:
    """How many input pixels away an output pixel of ``model_type`` built from ``model_args``
    can see, without building it; ValueError as :func:`make_args`, NotImplementedError for a
    class that cannot tell."""
    return network_class(model_type).radius_of(make_args(model_type, model_args))


def tile_grid(model_type: str, model_args: Mapping[str, Any]) -> int:
    """The pixel grid tiles of ``model_type`` built from ``model_args`` start on (its total
    downsampling), without building it; ValueError as :func:`make_args`."""
    return network_class(model_type).grid_of(make_args(model_type, model_args))


def takes_style_image(model_type: str) -> bool:
    """Whether ``model_type`` is a registered arbitrary-style network (``style_input`` "image"):
    trained on style_dir, given a style image when stylizing, exported with it as an input."""
    entry = NETWORKS.get(model_type)
    return entry is not None and entry.style_input == "image"


def check_config(cfg: Any, fail: Callable[[str, str], None]) -> None:
    """A :data:`fast_nst.core.config.ConfigCheck`: ``model_type`` names a registered network.
    (``model_args`` need the network's module, which imports torch: training checks them with
    :func:`fast_nst.training.config.check_model_args`.)"""
    if cfg.model_type not in NETWORKS:
        fail("model_type", f"is {cfg.model_type[:60]!r}; choose one of: {', '.join(NETWORKS)}")
    many = [name for name, entry in NETWORKS.items() if entry.many_styles]
    if NETWORKS[cfg.model_type].many_styles and not cfg.style_images:
        fail("model_type", f"{cfg.model_type} is a multi-style network: list its styles in "
                           "style_images (style_image is for one style)")
    if cfg.style_images and not NETWORKS[cfg.model_type].many_styles:
        fail("style_images", f"needs a multi-style network: set model_type: {many[0]} "
                             f"(model_type {cfg.model_type} learns one style, from style_image)")
    if "num_styles" in cfg.model_args:
        fail("model_args", "sets num_styles, which comes from style_images; remove it")
    if cfg.freeze != "none" and not NETWORKS[cfg.model_type].many_styles:
        fail("freeze", f"is {cfg.freeze!r}: it trains only the per-style norms of a multi-style network "
                       f"(model_type {many[0]}); model_type {cfg.model_type} trains all its weights")
    _check_style_input(cfg, fail)


# model_args an arbitrary-style network gets from the config's loss network keys (its encoder is
# the loss network, as in Huang & Belongie 2017).
ENCODER_KEYS = {"encoder": "loss_model", "encoder_file": "loss_model_file",
                "encoder_weights": "loss_model_weights", "encoder_seed": "seed",
                "encoder_sha256": "the checksum of the weights file"}


# Arguments that name a file on the user's machine -> the argument naming the loss network the
# file holds. A model file is untrusted: its value of such an argument is never opened, hashed or
# shown; loading (io.checkpoint.build_model) replaces it with the file the user gives for that
# loss network (eval.py, evaluate: --loss_model_file), or "" for the registry's default path.
USER_FILE_ARGS = {"encoder_file": "encoder"}


def _check_style_input(cfg: Any, fail: Callable[[str, str], None]) -> None:
    """An arbitrary-style network (style_input "image") learns from style_dir, and only it does."""
    images = [name for name in NETWORKS if takes_style_image(name)]
    if not takes_style_image(cfg.model_type):
        if cfg.style_dir:
            fail("style_dir", f"is for arbitrary-style networks (model_type {images[0]}), which learn "
                              f"from a folder of paintings; model_type {cfg.model_type} learns style_image")
        if cfg.style_warmup_steps:
            fail("style_warmup_steps", f"is for arbitrary-style networks (model_type {images[0]}); "
                                       f"model_type {cfg.model_type} trains with the full style weight: remove it")
        return
    if not cfg.style_dir:
        fail("style_dir", f"is required for model_type {cfg.model_type}: a folder of paintings (flat "
                          "or nested) to learn arbitrary styles from")
    for key in ("style_image", "style_images"):
        if getattr(cfg, key):
            fail(key, f"is set, but model_type {cfg.model_type} learns from the paintings of style_dir "
                      "and takes its style when stylizing (eval.py --style_image); remove it")
    fixed = [k for k in cfg.model_args if k in ENCODER_KEYS]
    if fixed:
        taken = "; ".join(f"{k} from {ENCODER_KEYS[k]}" for k in fixed)
        fail("model_args", f"sets {', '.join(fixed)}, which training takes from the loss network (the "
                           f"encoder is the loss network): {taken}; remove {'them' if len(fixed) > 1 else 'it'}")
