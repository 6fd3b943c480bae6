from pathlib import Path

from setuptools import find_namespace_packages, setup

about = {}  # __version__ and the oldest torch/torchvision it runs on, from fast_nst/core/version.py
for line in Path("fast_nst/core/version.py").read_text().splitlines():
    if line.startswith(("__version__", "__min_")):
        exec(line, about)

# The onnx extra; the openvino extra holds it too (see extras_require).
ONNX = [f"torch>={about['__min_torch_onnx__']}", "onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1"]

setup(
    name="fast-nst",
    version=about["__version__"],
    description="Fast neural style transfer (Johnson et al. 2016) in PyTorch",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # Namespace-aware: fast_nst/core and fast_nst/io have no __init__.py, and find_packages
    # would leave them (and so every command) out of a non-editable install.
    packages=find_namespace_packages(include=["fast_nst", "fast_nst.*"],
                                     exclude=["*.__pycache__", "fast_nst.assets"]),
    # The built-in model (fast_nst.io.bundled): a fresh install stylizes with no download.
    package_data={"fast_nst": ["assets/*.pth"]},
    python_requires=">=3.10",
    install_requires=[
        f"torch>={about['__min_torch__']}",
        "pillow>=9.1",
        "pyyaml>=5.4",
        "tensorboard>=2.10",
        "tqdm>=4.60",
        "numpy",
    ],
    extras_require={
        # selenium drives a headless Chromium in the web app's test (tests/test_app.py); hypothesis
        # generates hostile inputs for the boundary of outside data (tests/test_untrusted_*.py).
        # torchvision: the tests compare the loss networks against torchvision's VGG16/VGG19.
        # pytest-xdist runs the test files in parallel worker processes (pytest.ini).
        "test": ["pytest>=7", "pytest-xdist>=3.5", "selenium>=4.11", "hypothesis>=6.80", f"torchvision>={about['__min_torchvision__']}"],
        # Export to ONNX and run .onnx models (python -m fast_nst.export, eval.py on .onnx).
        "onnx": ONNX,
        # Run models with Intel's OpenVINO on the CPU (eval.py --runtime openvino): 1.1-1.4x faster
        # than the PyTorch bf16 path on a Xeon with AMX (docs/benchmarks.md). OpenVINO compiles the
        # model's ONNX export, made and checked with the onnx extra's packages.
        "openvino": ["openvino>=2024.0", *ONNX],
        # Stylize videos (eval.py --video_file), keeping frame rate and audio.
        "video": ["av>=12"],
        # The local web app (python -m fast_nst.app); 6 for launch()'s run_history and footer_links.
        "app": ["gradio>=6"],
        # .safetensors models (export --format safetensors, reading them anywhere a .pth is read);
        # 0.4 is the first release with safe_open(..., framework="pt") as used here.
        "safetensors": ["safetensors>=0.4"],
        # Model files named hf://OWNER/REPO/FILE (fetched into the Hugging Face cache) and the hf
        # CLI to publish them; 0.24 is the first release with the huggingface_hub.errors module used here.
        "hub": ["huggingface_hub>=0.24", "safetensors>=0.4"],
    },
    entry_points={
        # One per command (fast_nst/commands/); python train.py, eval.py and python -m
        # fast_nst.<command> run the same main().
        "console_scripts": [
            f"fast-nst-{name}=fast_nst.commands.{name}:main"
            for name in ("train", "eval", "export", "convert", "download", "data", "optimize", "evaluate",
                         "app")
        ] + ["fast-nst-stylize-dataset=fast_nst.commands.stylize_dataset:main"]
    },
)
