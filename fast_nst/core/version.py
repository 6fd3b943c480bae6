"""fast-nst's version and the oldest PyTorch it runs on (setup.py reads these lines)."""

__all__ = ["__version__", "__min_torch__", "__min_torchvision__", "__min_torch_onnx__"]

__version__ = "0.2.0"
# The oldest PyTorch and torchvision fast-nst runs on (the test suite was run on 2.1.2, 2.4.1,
# 2.6.0, 2.8.0, 2.11.0 and 2.14.1: docs/benchmarks.md); the command-line tools refuse older
# versions with a message instead of failing half-way.
__min_torch__ = "2.4"
__min_torchvision__ = "0.19"  # the tests' only: fast-nst itself does not import torchvision
# ONNX export with free batch/height/width: torch 2.6's torch.export still guards height >= 9.
__min_torch_onnx__ = "2.8"
