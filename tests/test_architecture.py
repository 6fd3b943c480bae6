"""The package's shape: layers that import downward only, no import cycles, no imports hidden in
function bodies, short functions, ``__all__`` everywhere, and registries whose every entry builds.

The layer table below is the diagram of docs/architecture.md; a change to one is a change to both.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import REPO

PACKAGE = REPO / "fast_nst"

# Which packages each package may import (besides itself). "commands" and the entry points
# (fast_nst/__init__.py, the python -m shims) sit on top and may import anything.
ALLOWED = {
    "core": set(),
    "nets": {"core", "lossnet"},  # the AdaIN network holds a loss network's encoder
    "lossnet": {"core"},
    "io": {"core", "nets"},
    "training": {"core", "nets", "lossnet", "io"},
    "stylize": {"core", "nets", "io"},
    "gatys": {"core", "lossnet", "stylize"},
    "report": {"core", "nets", "lossnet", "io", "stylize"},
    "commands": {"core", "nets", "lossnet", "io", "training", "stylize", "gatys", "report"},
}
ENTRY_POINTS = {"fast_nst", "fast_nst.download", "fast_nst.data", "fast_nst.export",
                "fast_nst.convert", "fast_nst.optimize", "fast_nst.evaluate", "fast_nst.app",
                "fast_nst.stylize_dataset"}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The fast_nst modules an ``import from`` names (a submodule where ``from X import Y`` imports one)."""
    if node.level:
        base = module.split(".") if _is_package(module) else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("fast_nst"):
        return []
    found = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return found or [target]


def _imports(module: str) -> list[tuple[str, bool, int]]:
    """(imported fast_nst module, inside a function?, line) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                continue  # for type checkers only: never executed
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function, child.lineno) for a in child.names if a.name.startswith("fast_nst"))
            elif isinstance(child, ast.ImportFrom):
                out.extend((t, in_function, child.lineno) for t in _resolve(module, child))
            visit(child, nested)

    visit(tree, False)
    return out


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _main_guard_lines(module: str) -> set[int]:
    """Lines inside ``if __name__ == "__main__":`` (an entry point's own code)."""
    lines: set[int] = set()
    for node in ast.parse(MODULES[module].read_text()).body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def test_every_module_imports_only_the_layers_below_it():
    wrong = []
    for module in MODULES:
        if module in ENTRY_POINTS:
            continue
        own = _package_of(module)
        assert own in ALLOWED, f"{module}: package {own!r} is missing from the layer table"
        for target, _, line in _imports(module):
            theirs = _package_of(target)
            if theirs != own and theirs not in ALLOWED[own]:
                wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_commands_are_imported_only_by_entry_points():
    wrong = [f"{m}:{line} imports {t}" for m in MODULES if _package_of(m) != "commands"
             for t, _, line in _imports(m)
             if _package_of(t) == "commands" and not (m in ENTRY_POINTS and line in _main_guard_lines(m) | {0})]
    assert not wrong, wrong


def test_no_import_cycles_and_no_fast_nst_imports_in_function_bodies():
    graph = {m: set() for m in MODULES}
    hidden = []
    for module in MODULES:
        guard = _main_guard_lines(module)
        for target, in_function, line in _imports(module):
            if target in MODULES and target != module:
                graph[module].add(target)
            if in_function and line not in guard:
                hidden.append(f"{module}:{line} imports {target} inside a function")
    assert not hidden, hidden
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_functions_are_short():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert not long, long


def test_every_library_module_declares_its_public_names():
    missing = []
    for module, path in MODULES.items():
        if module in ENTRY_POINTS - {"fast_nst"}:
            continue
        tree = ast.parse(path.read_text())
        names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)}
        if "__all__" not in names and any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in tree.body):
            missing.append(module)
    assert not missing, missing


def test_public_api_from_the_package():
    import fast_nst

    for name in fast_nst.__all__:
        assert getattr(fast_nst, name) is not None, name
    from fast_nst.core.config import TrainConfig
    from fast_nst.gatys import optimize
    from fast_nst.stylize import load_stylizer

    assert fast_nst.TrainConfig is TrainConfig and fast_nst.optimize is optimize
    assert fast_nst.load_stylizer is load_stylizer and callable(fast_nst.train)
    with pytest.raises(AttributeError):
        fast_nst.no_such_name


# ---- the boundary for outside data --------------------------------------------------------------

BOUNDARY = "fast_nst.core.untrusted"
# Calls that read outside data raw: module (as imported) -> functions. Outside the boundary
# package each is an error unless ALLOWED_RAW lists the module and the call, with its reason.
RAW_READS = {"yaml": {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all",
                      "full_load_all", "unsafe_load_all", "compose", "parse", "scan"},
             "json": {"load", "loads"}, "torch": {"load"}, "Image": {"open"}, "PIL.Image": {"open"},
             "urllib.request": {"urlopen", "Request", "build_opener", "urlretrieve"},
             "http.client": {"HTTPConnection", "HTTPSConnection"},
             # a model loaded from a path has its external-data paths opened (onnx_files)
             "onnxruntime": {"InferenceSession"}, "ort": {"InferenceSession"},
             "onnx": {"load", "load_model", "load_model_from_string", "load_from_string"},
             # reading a video (PyAV); av.open(..., "w") writes one and is not a read
             "av": {"open"}}
# Modules allowed a raw read outside the boundary: module -> {call: why}. Empty: every image,
# URL, YAML, JSON and torch.load goes through fast_nst/core/untrusted/.
ALLOWED_RAW: dict[str, dict[str, str]] = {}
# Attributes holding text from a model file, and the calls that make such text safe to show
# (or reduce it to a number): an f-string may only format them through one of these.
FILE_BORNE = {"style_names"}
SAFE_WRAPPERS = {"shown", "quote", "style_list", "len", "safe_component", "style_label"}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, "" for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id] + parts[::-1])


def _opens_for_writing(call: ast.Call) -> bool:
    """Whether ``av.open(...)`` is given the mode "w" (second argument or ``mode=``)."""
    modes = [k.value for k in call.keywords if k.arg == "mode"] + call.args[1:2]
    return any(isinstance(m, ast.Constant) and m.value == "w" for m in modes)


def _raw_reads(source: str) -> list[tuple[int, str]]:
    """(line, call) for every raw read of outside data in ``source`` (see RAW_READS): calls of
    ``module.function`` and of names imported with ``from module import function``."""
    tree = ast.parse(source)
    imported: dict[str, str] = {}  # local name -> "module.function"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in RAW_READS:
            for a in node.names:
                if a.name in RAW_READS[node.module]:
                    imported[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        module, _, function = name.rpartition(".")
        if name == "av.open" and _opens_for_writing(node):
            continue
        if module in RAW_READS and function in RAW_READS[module]:
            found.append((node.lineno, name))
        elif name in imported:
            found.append((node.lineno, imported[name]))
    return found


def _raw_file_text(source: str) -> list[tuple[int, str]]:
    """(line, expression) for every f-string field that formats text from a model file
    (FILE_BORNE) without passing it through one of SAFE_WRAPPERS."""
    found = []

    def unsafe(node: ast.AST) -> bool:
        if isinstance(node, ast.Call) and _dotted(node.func).rpartition(".")[2] in SAFE_WRAPPERS:
            return False
        if isinstance(node, ast.Attribute) and node.attr in FILE_BORNE:
            return True
        if isinstance(node, ast.IfExp):  # its test is not shown
            return unsafe(node.body) or unsafe(node.orelse)
        return any(unsafe(child) for child in ast.iter_child_nodes(node))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FormattedValue) and unsafe(node.value):
            found.append((node.lineno, ast.unparse(node.value)))
    return found


def test_outside_data_is_read_only_through_the_boundary():
    wrong, stale = [], []
    for module, path in MODULES.items():
        if module == BOUNDARY or module.startswith(BOUNDARY + "."):
            continue
        allowed = ALLOWED_RAW.get(module, {})
        calls = _raw_reads(path.read_text())
        wrong += [f"{module}:{line} calls {call}" for line, call in calls if call not in allowed]
        stale += [f"{module}: ALLOWED_RAW lists {call}, which it no longer calls"
                  for call in allowed if call not in {c for _, c in calls}]
    assert not wrong, ("read outside data through fast_nst.core.untrusted (or list the call in "
                       "ALLOWED_RAW with its reason):\n" + "\n".join(wrong))
    assert not stale, stale


def test_text_from_model_files_is_shown_through_the_boundary():
    wrong = [f"{module}:{line} formats {expr} raw" for module, path in MODULES.items()
             for line, expr in _raw_file_text(path.read_text())]
    assert not wrong, "format model-file text with fast_nst.core.untrusted.shown():\n" + "\n".join(wrong)


def test_the_boundary_checks_find_a_new_raw_read_and_raw_text():
    source = """
import json, yaml, torch
from PIL import Image
from urllib.request import urlopen as get
import http.client
import onnx
import onnxruntime as ort
import av

def f(path, s):
    a = torch.load(path, weights_only=True)
    b = yaml.safe_load(open(path))
    c = json.loads("{}")
    d = Image.open(path)
    e = get("https://example.com")
    g = http.client.HTTPSConnection("example.com")
    h = ort.InferenceSession(str(path))
    i = onnx.load(path)
    j = av.open(path, "r")
    k = av.open(path, mode="w"), av.open(path, "w")  # writing a video is not a read
    print(f"styles: {', '.join(s.style_names)} ({len(s.style_names)})")
    print(f"first: {shown(s.style_names[0])}{'s' if s.style_names else ''}")
"""
    calls = [call for _, call in _raw_reads(source)]
    assert calls == ["torch.load", "yaml.safe_load", "json.loads", "Image.open", "urllib.request.urlopen",
                     "http.client.HTTPSConnection", "ort.InferenceSession", "onnx.load", "av.open"]
    assert [expr for _, expr in _raw_file_text(source)] == ["', '.join(s.style_names)"]


# ---- registries ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model_type", sorted(__import__("fast_nst.nets", fromlist=["NETWORKS"]).NETWORKS))
def test_every_registered_network_builds_and_honours_the_contract(model_type):
    from fast_nst.nets import build_network, network_class
    from fast_nst.nets.base import StyleNetwork

    from fast_nst.nets import NETWORKS

    cls = network_class(model_type)
    assert issubclass(cls, StyleNetwork) and cls.model_type in NETWORKS  # presets share a class
    torch.manual_seed(0)
    net = build_network(model_type, {}).eval()
    assert net.args == cls.Args(**dict(NETWORKS[model_type].defaults))
    assert cls.Args(**net.args.to_dict()) == net.args
    x = torch.rand(2, 3, 37, 50)
    # A multi-style network also takes the style weights, one per style (here a blend).
    inputs = (x, torch.full((net.args.num_styles,), 1 / net.args.num_styles)) if NETWORKS[model_type].many_styles else (x,)
    with torch.no_grad():
        y = net(*inputs)
        assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
        assert torch.allclose(net.fast_inference()(*inputs), y, atol=1e-4)
        assert torch.allclose(net.exportable()(*inputs), y, atol=1e-6)
    assert net.receptive_radius > 0 and net.bytes_per_pixel > 0


def test_network_registry_refuses_unknown_names_and_arguments():
    from fast_nst.nets import build_network, network_class

    with pytest.raises(ValueError, match="choose one of: johnson, johnson_slim"):
        network_class("unet")
    with pytest.raises(ValueError, match="unknown argument.*width.*valid: base_channels"):
        build_network("johnson", {"width": 3})
    with pytest.raises(ValueError, match="num_residual must be a whole number from 1 to 64"):
        build_network("johnson", {"num_residual": 4096})
    with pytest.raises(ValueError, match="parameters, over the limit"):
        build_network("johnson", {"base_channels": 1024, "num_residual": 64})
    slim = build_network("johnson_slim", {})
    assert (slim.args.base_channels, slim.args.num_residual) == (16, 3)
    assert sum(p.numel() for p in slim.parameters()) == slim.args.parameter_count()
    assert build_network("johnson_slim", {"num_residual": 2}).args.num_residual == 2  # config wins


@pytest.mark.parametrize("name", sorted(__import__("fast_nst.lossnet", fromlist=["LOSS_NETWORKS"]).LOSS_NETWORKS))
def test_every_registered_loss_network_builds_at_every_layer(name):
    from fast_nst.lossnet import LOSS_NETWORKS, layer_choices
    from fast_nst.lossnet.vgg import build_loss_network

    entry = LOSS_NETWORKS[name]
    assert entry.url.startswith("https://") and Path(entry.file).name in entry.url
    assert len(entry.sha256) >= 8 and int(entry.sha256, 16) >= 0
    # torchvision-style files carry their hash's start in their name; the AdaIN port's file does
    # not, and its row pins the whole SHA-256.
    assert entry.sha256 in Path(entry.file).name or len(entry.sha256) == 64
    layers = layer_choices(name)
    enc = build_loss_network("random", layers, seed=1, quiet=True, name=name)
    feats = enc(torch.rand(1, 3, 32, 32), layers)
    assert list(feats) == layers and enc.convention is entry.convention
    assert feats[layers[-1]].shape[1] == 512  # the last block of a VGG has 512 channels


def test_config_checks_come_from_the_registries(tmp_path):
    from fast_nst.core.config import load_config
    from fast_nst.core.errors import ConfigError
    from fast_nst.training import load_train_config

    from conftest import write_config

    path = write_config(tmp_path / "c.yml", style_image="s.jpg", model_type="unet")
    assert load_config(path).model_type == "unet"  # the schema alone knows no registry
    with pytest.raises(ConfigError, match=r"c.yml: key 'model_type' is 'unet'; choose one of: johnson, johnson_slim"):
        load_train_config(path)
    path = write_config(tmp_path / "d.yml", style_image="s.jpg", loss_model="vgg19",
                        style_layers=["relu5_4"])
    assert load_train_config(path).style_layers == ("relu5_4",)  # a VGG19 layer
    with pytest.raises(ConfigError, match="relu5_4' of vgg16"):
        load_train_config(path, ["loss_model=vgg16"])
    cfg = load_train_config(path, ["model_args={base_channels: 8}"])
    assert dict(cfg.model_args) == {"base_channels": 8}
    with pytest.raises(ConfigError, match="model_args' must be a mapping"):
        load_train_config(path, ["model_args=3"])


def test_version_1_checkpoints_still_load_and_give_identical_outputs(tmp_path):
    """A checkpoint in the layout written before model_type existed (format_version 1)."""
    from fast_nst.io.checkpoint import FORMAT_VERSION, load_model, make_checkpoint
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs
    from fast_nst.training import train_config_from_dict

    torch.manual_seed(3)
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=2)).eval()
    cfg = train_config_from_dict({"naming": "old", "style_image": "s.jpg"}, "test")
    old = make_checkpoint(net, cfg, step=5)
    old["format_version"] = 1
    del old["model_type"]
    torch.save(old, tmp_path / "old.pth")
    loaded, ckpt = load_model(tmp_path / "old.pth")
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert type(loaded) is TransformNet and ckpt["step"] == 5 and FORMAT_VERSION == 2
    new = make_checkpoint(net, cfg, step=5)
    assert new["model_type"] == "johnson" and new["format_version"] == 2
    bad = {**new, "model_type": "unet"}
    torch.save(bad, tmp_path / "bad.pth")
    from fast_nst.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="unknown model_type 'unet'"):
        load_model(tmp_path / "bad.pth")


def test_stylize_options_are_checked_in_one_place():
    from fast_nst.core.errors import FastNSTError
    from fast_nst.stylize import StylizeOptions
    from fast_nst.stylize.tiling import DEFAULT_OVERLAP

    assert StylizeOptions().overlap == DEFAULT_OVERLAP == 32
    for kwargs, message in (({"strength": 2}, "strength must be between 0 and 1"),
                            ({"overlap": -1}, "overlap must be >= 0"),
                            ({"scale": float("nan")}, "scale must be > 0"),
                            ({"max_size": 0}, "max_size must be > 0"),
                            ({"tile_size": 100}, "tile_size: tile size 100 is too small")):
        with pytest.raises(FastNSTError, match=message):
            StylizeOptions(**kwargs)
        with pytest.raises(FastNSTError, match="--" + message):
            StylizeOptions.from_flags(**kwargs)
    assert dataclasses.replace(StylizeOptions(), strength=0.5).strength == 0.5


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from fast_nst.core.files import atomic_write

    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_write(path, keep_suffix=True) as tmp:
        assert tmp.suffix == ".txt" and tmp.name.startswith(".out.tmp")
        tmp.write_text("new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=oct)
def test_atomic_write_gives_the_mode_of_a_new_file_whatever_the_writer_chose(tmp_path, umask):
    """safetensors' writer makes its file 0600; every output gets 0666 less the umask instead."""
    import os
    import stat

    from fast_nst.core.files import atomic_write, process_umask

    previous = os.umask(umask)
    try:
        assert process_umask() == umask
        with atomic_write(tmp_path / "shared.safetensors", keep_suffix=True) as tmp:
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "shared.safetensors").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode), oct(mode)
