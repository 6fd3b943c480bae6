"""fast-nst: fast neural style transfer (Johnson, Alahi & Fei-Fei 2016) in PyTorch."""

__version__ = "0.1.0"
# The oldest PyTorch and torchvision fast-nst runs on (the test suite was run on 2.1.2, 2.4.1,
# 2.6.0, 2.8.0, 2.11.0 and 2.14.1: docs/benchmarks.md); setup.py reads these lines, and the
# command-line tools refuse older versions with a message instead of failing half-way.
__min_torch__ = "2.4"
__min_torchvision__ = "0.19"
# ONNX export with free batch/height/width: torch 2.6's torch.export still guards height >= 9.
__min_torch_onnx__ = "2.8"

from .errors import FastNSTError  # noqa: E402


def load_stylizer(path, device: str = "auto", **kwargs):
    """Load a trained checkpoint for stylizing; see :func:`fast_nst.stylize.load_stylizer`."""
    from .stylize import load_stylizer as _load  # keeps `import fast_nst` light

    return _load(path, device=device, **kwargs)


__all__ = ["FastNSTError", "load_stylizer", "__version__"]
