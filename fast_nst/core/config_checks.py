"""The checks of a training config's values (:func:`validate`, run by
:func:`fast_nst.core.config.build_config`): ranges, choices, names, lists that must fit other
lists. Each failure is a :class:`~fast_nst.core.errors.ConfigError` naming the key and the file
(or ``--set``) that set it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

from .errors import ConfigError, quote
from .files import MAX_COMPONENT, safe_component
from .untrusted.text import shown

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["CHOICES", "ConfigCheck", "DEVICE_CHOICES", "MAX_IMAGE_SIZE", "MAX_NAMING_BYTES", "MAX_RESIZE_TO",
           "MIN_IMAGE_SIZE", "SEED_LIMIT", "is_device_name", "validate"]

# Bytes of naming: a file-name component holds 255 bytes on common filesystems (ext4, XFS,
# APFS, NTFS in UTF-16 units); the longest name made from it, the final model's temporary file
# .NAME.pth.tmpPID (PID up to 7 digits), adds 16; exports and logs add suffixes of their own.
MAX_NAMING_BYTES = 200
# Smallest training image_size: VGG16 pools 4 times before relu4_3 (16 -> 1 px there).
MIN_IMAGE_SIZE = 16
# Largest training image_size (and resize_to, 2x it): one 2048 x 2048 crop already holds 1 GB in
# each of VGG's first float32 layers (64 channels), a batch several times that, forward and
# backward; the papers train at 256 (Johnson et al.) and 256 crops of 512 (Huang & Belongie).
MAX_IMAGE_SIZE = 2048
# Largest resize_to (and so the largest shorter side of a training cache worth preparing): 2x
# image_size's, as the AdaIN paper's 512 resize for 256 crops.
MAX_RESIZE_TO = 2 * MAX_IMAGE_SIZE
# Seeds lie in [-SEED_LIMIT, SEED_LIMIT): torch's generators take -2**63 to 2**64 - 1, and
# training also seeds with seed + epoch and seed + 1_000_003 + epoch (the paintings' order):
# below 2**63 every one of them stays valid for any number of epochs a run can reach. Negative
# seeds worked before this bound and stay allowed, so such runs still resume.
SEED_LIMIT = 2 ** 63
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"

# Keys with a fixed set of values here; the registries' keys (model_type, loss_model...) are
# checked by the ConfigChecks they pass in.
CHOICES: dict[str, tuple[str, ...]] = {
    "loss_model_weights": ("imagenet", "random"),
}

#: A check of choices that live outside this module: ``check(cfg, fail)`` calls
#: ``fail(key, message)`` (which raises a :class:`ConfigError` naming the file that set the key).
ConfigCheck = Callable[["TrainConfig", Callable[[str, str], None]], None]


# Keys whose value must fit another key's: an error in one also names where the other was set
# (the --set that changed it, when the file's value no longer fits).
_FITS = {"style_weights": "style_images", "style_layer_weights": "style_layers"}


def validate(cfg: TrainConfig, origin: dict[str, str], where: str = "defaults",
             checks: Sequence[ConfigCheck] = ()) -> None:
    """ConfigError for the first value of ``cfg`` out of its range, naming the key and where it
    was set (``origin``: key -> file or --set; ``where`` for keys nobody set); then ``checks``."""

    def fail(key: str, msg: str) -> None:  # a key nobody set (a required one) blames the config
        other = _FITS.get(key)
        if other and other not in origin:
            msg += f" ({other} is the default)"  # not "set by" the file or --set: nobody set it
        elif other and origin[other] != origin.get(key, where):
            msg += f" ({other} set by {origin[other]})"
        # A key nobody set holds its default: said so, unless it is an empty one the config must fill.
        default = " (the default)" if key not in origin and getattr(type(cfg)(), key, None) else ""
        raise ConfigError(f"{origin.get(key, where)}: key '{key}'{default} {msg}")

    _validate_blank_paths(cfg, fail)  # before "style_image and style_images are both set" for '  '
    _validate_names(cfg, fail)
    _validate_values(cfg, fail)
    _validate_resize_to(cfg, fail)
    for check in checks:
        check(cfg, fail)


def _validate_names(cfg: TrainConfig, fail: Callable[[str, str], None]) -> None:
    """The run's name and its style images (or folder), as names: set, plain, not both kinds."""
    if not cfg.naming or cfg.naming != safe_component(cfg.naming, fallback=""):
        # The run folder and model file are named after it: one plain file-name component.
        fail("naming", f"must be a plain name for the run folder (letters, digits, '-', '_', inner "
                       f"dots; at most {MAX_COMPONENT} characters), got '{shown(cfg.naming, 80)}'; e.g. "
                       f"{safe_component(cfg.naming, fallback='my_style')!r}")
    size = len(cfg.naming.encode("utf-8", "surrogatepass"))
    if size > MAX_NAMING_BYTES:
        # Filesystems limit a name to 255 bytes, not characters: 61 four-byte letters pass the
        # character limit, train every step and then fail writing .NAME.pth.tmpPID.
        fail("naming", f"is {size} bytes in UTF-8 ({len(cfg.naming)} characters); file names hold 255 "
                       f"bytes and the run's files add to it (.NAME.pth.tmpPID), so naming may take at most "
                       f"{MAX_NAMING_BYTES} bytes. Use a shorter name (letters outside ASCII take 2 to 4 bytes).")
    if not cfg.style_image and not cfg.style_images and not cfg.style_dir:
        fail("style_image", "is required: a path or https URL of the style painting "
                            "(or style_images: a list of them, for a multi-style network; or "
                            "style_dir: a folder of paintings, for an arbitrary-style network)")
    # Path("") is the current folder: training would read every image below it, and write the
    # run folder into it. (Spaces alone would be a folder named so: surely a slip too.)
    if not cfg.train_dir.strip():
        fail("train_dir", "is empty; set it to the folder of training photos (e.g. data/train2014: "
                          "python -m fast_nst.download coco)")
    if not cfg.model_path.strip():
        fail("model_path", "is empty; set it to the folder run folders go in (e.g. models; '.' for the "
                           "current folder)")
    for key, each in (("style_images", "a path or https URL"), ("sample_images", "a photo's path")):
        empty = [i for i, item in enumerate(getattr(cfg, key)) if not item.strip()]
        if empty:  # Path("") is the current folder: an error about a folder named "."
            fail(key, f"has an empty entry (number {empty[0] + 1}); give {each} in each, or remove it")
    if cfg.style_image and cfg.style_images:
        fail("style_images", "and style_image are both set; use style_image for one style or "
                             "style_images for several, not both")


# Optional path keys ('' for none) and what each takes. Spaces alone name a file or folder of
# spaces: surely a slip, refused here rather than found missing at train start.
_OPTIONAL_PATHS = {
    "style_image": ("a path or https URL of the style painting", "none: style_images or style_dir instead"),
    "style_dir": ("a folder of paintings", "none"),
    "val_dir": ("a folder of held-out photos", "no validation"),
    "init_from": ("a trained model's .pth", "random weights"),
    "loss_model_file": ("the loss network's weights file", "the loss network's default file"),
}


def _validate_blank_paths(cfg: TrainConfig, fail: Callable[[str, str], None]) -> None:
    for key, (what, empty) in _OPTIONAL_PATHS.items():
        value = getattr(cfg, key)
        if value and not value.strip():
            fail(key, f"holds only white space ({quote(value, 20)}); give {what}, or leave it empty "
                      f"('' for {empty})")


def _validate_values(cfg: TrainConfig, fail: Callable[[str, str], None]) -> None:
    """Every number in its range, every choice among its choices, the lists that must fit others."""
    if cfg.style_warmup_steps < 0:
        fail("style_warmup_steps", f"must be 0 (off) or a number of steps, got {cfg.style_warmup_steps}")
    if cfg.style_weights and len(cfg.style_weights) != len(cfg.style_images):
        fail("style_weights", f"has {len(cfg.style_weights)} weights for {len(cfg.style_images)} "
                              "style_images; give one per style or []")
    if any(not math.isfinite(w) or w < 0 for w in cfg.style_weights):
        fail("style_weights", f"must be finite numbers >= 0, got {list(cfg.style_weights)}")
    if cfg.freeze != "none" and not cfg.init_from:
        fail("freeze", f"is {cfg.freeze!r} without init_from: frozen convolutions must come from a "
                       "trained model (train.py ... --init_from MODEL.pth)")
    for key in ("image_size", "batch_size", "epochs", "lr", "log_every", "image_log_every",
                "checkpoint_every", "keep_checkpoints", "val_every", "val_images"):
        if getattr(cfg, key) <= 0:
            fail(key, f"must be > 0, got {getattr(cfg, key)}")
    for key in ("style_size", "max_steps"):
        value = getattr(cfg, key)
        if value is not None and value <= 0:
            fail(key, f"must be > 0 or null, got {value}")
    if cfg.image_size < MIN_IMAGE_SIZE:
        fail("image_size", f"must be at least {MIN_IMAGE_SIZE} (VGG pools 4 times), got {cfg.image_size}")
    for key, most in (("image_size", MAX_IMAGE_SIZE), ("resize_to", MAX_RESIZE_TO)):
        if (getattr(cfg, key) or 0) > most:
            fail(key, f"must be at most {most} px, got {getattr(cfg, key)}: a batch of {MAX_IMAGE_SIZE} px "
                      "crops already needs many GB in VGG's layers (the papers train at 256)")
    for key in ("lr", "content_weight", "style_weight", "tv_weight", "stability_weight"):
        # NaN passes every comparison and inf turns every weight into NaN after one step.
        if not math.isfinite(getattr(cfg, key)) or getattr(cfg, key) < 0:
            fail(key, f"must be a finite number {'> 0' if key == 'lr' else '>= 0'}, got {getattr(cfg, key)}")
    if not 0.0 <= cfg.ema_decay < 1.0:  # NaN fails too
        fail("ema_decay", f"must be at least 0 (off) and below 1, got {cfg.ema_decay}; 0.99 averages "
                          "about the last 100 steps")
    if not -SEED_LIMIT <= cfg.seed < SEED_LIMIT:
        fail("seed", f"must be a whole number from -2**63 to 2**63 - 1, got {shown(str(cfg.seed), 40)}")
    if cfg.num_workers < 0 or cfg.num_samples < 0:
        fail("num_workers" if cfg.num_workers < 0 else "num_samples", "must be >= 0")
    for key, choices in CHOICES.items():
        if getattr(cfg, key) not in choices:
            fail(key, f"is {getattr(cfg, key)!r}; choose one of: {', '.join(choices)}")
    _validate_layers(cfg, fail)
    if not is_device_name(cfg.device):
        fail("device", f"is {quote(cfg.device)}; choose one of: {DEVICE_CHOICES}")


def _validate_layers(cfg: TrainConfig, fail: Callable[[str, str], None]) -> None:
    """The loss layers (their names are the loss network's check) and the style layers' weights."""
    for key, weight in (("content_layers", "content_weight"), ("style_layers", "style_weight")):
        layers = getattr(cfg, key)
        if not layers and getattr(cfg, weight) > 0:
            fail(key, f"is empty but {weight} > 0")
        twice = sorted({name for name in layers if layers.count(name) > 1})
        if twice:
            # A layer's loss would count twice, and style_layer_weights weigh it by its first entry only.
            fail(key, f"lists {', '.join(shown(n, 40) for n in twice)} more than once; list each layer once "
                      "(weigh a style layer with style_layer_weights)")
    if cfg.style_layer_weights is not None and len(cfg.style_layer_weights) != len(cfg.style_layers):
        fail("style_layer_weights", f"has {len(cfg.style_layer_weights)} weights for "
             f"{len(cfg.style_layers)} style_layers; give one per layer or null")
    if any(not math.isfinite(w) or w < 0 for w in cfg.style_layer_weights or ()):
        # Like style_weight: NaN passes every comparison, inf makes the loss NaN after one step.
        fail("style_layer_weights", f"must be finite numbers >= 0, got {list(cfg.style_layer_weights or ())}")


def _validate_resize_to(cfg: TrainConfig, fail: Callable[[str, str], None]) -> None:
    if cfg.resize_to is not None and cfg.resize_to < cfg.image_size:
        fail("resize_to", f"is {cfg.resize_to}, smaller than image_size {cfg.image_size}: the random "
                          f"image_size crop is cut from the image resized to shorter side resize_to; set it "
                          f">= {cfg.image_size} (e.g. {2 * cfg.image_size}, as Huang & Belongie), or null")


def is_device_name(name: str) -> bool:
    """Whether ``name`` is a device setting fast-nst understands (see :data:`DEVICE_CHOICES`)."""
    # ASCII digits: str.isdigit() also takes '\u0661' (Arabic-Indic one), which int() reads as 1 and
    # torch.device refuses; 6 at most, as int() of thousands of digits raises.
    index = name[5:]
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and index.isascii() and index.isdigit()
                                               and len(index) <= 6)
