"""fast-nst: fast neural style transfer (Johnson, Alahi & Fei-Fei 2016) in PyTorch."""

__version__ = "0.1.0"

from .errors import FastNSTError  # noqa: E402


def load_stylizer(path, device: str = "auto", **kwargs):
    """Load a trained checkpoint for stylizing; see :func:`fast_nst.stylize.load_stylizer`."""
    from .stylize import load_stylizer as _load  # keeps `import fast_nst` light

    return _load(path, device=device, **kwargs)


__all__ = ["FastNSTError", "load_stylizer", "__version__"]
