"""The fast paths (CPU inference rewrite, bf16/fp16 autocast, torch.compile, content branch cut at
the deepest content layer) must compute what the plain fp32 reference computes."""

import shutil
import sys
import time
import warnings

import pytest
import torch
import torch.nn.functional as F

from fast_nst.nets.fast_cpu import FastTransformNet, pad_nhwc, phase_weight, strided_weight, unshuffle_weight
from fast_nst.lossnet.losses import PerceptualLoss, gram_matrix
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.stylize import TorchStylizer as Stylizer
from fast_nst.lossnet.vgg import VGGEncoder, random_features

from conftest import psnr, trained_like_norms


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = TransformNet().eval()
    trained_like_norms(net)  # non-trivial norm parameters, as after training
    return net


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 37, 53), (1, 3, 3, 7), (1, 3, 96, 40)])
def test_fast_cpu_net_equals_reference(net, shape):
    x = torch.rand(*shape)
    with torch.inference_mode():
        ref, fast = net(x), FastTransformNet(net)(x)
    assert fast.shape == ref.shape
    assert torch.allclose(fast, ref, atol=1e-4), (fast - ref).abs().max()


def test_phase_upsample_conv_equals_upsample_then_conv():
    torch.manual_seed(2)
    x, w = torch.randn(1, 5, 6, 7), torch.randn(4, 5, 3, 3)
    ref = F.conv2d(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect"), w)
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), phase_weight(w)).view(1, 2, 2, 4, 7, 8)
    for a in range(2):
        for b in range(2):
            assert torch.allclose(ref[:, :, a::2, b::2], y[:, a, b, :, a:a + 6, b:b + 7], atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_pads_equal_torchs(mode, dtype):
    """pad_nhwc gives F.pad's values to the bit (of the ReLU of the input with relu=True), in
    channels_last (its own copies, kept in that layout) and in any other layout (F.pad itself);
    a reflection as wide as the map is F.pad's error. The input is left as it was."""
    torch.manual_seed(0)
    for shape, p in (((1, 5, 7, 9), 1), ((2, 3, 6, 5), 2), ((1, 4, 9, 10), 4), ((1, 2, 2, 3), 1)):
        x = torch.randn(shape).to(dtype)
        for layout in (torch.channels_last, torch.contiguous_format):
            for relu in (False, True):
                xl = x.contiguous(memory_format=layout)
                y = pad_nhwc(xl, p, mode, relu)
                assert torch.equal(y, F.pad(x.relu() if relu else x, (p, p, p, p), mode=mode)), (shape, p, layout, relu)
                assert y.is_contiguous(memory_format=layout) and torch.equal(xl, x)
    with pytest.raises(RuntimeError):
        pad_nhwc(torch.randn(1, 2, 3, 8).contiguous(memory_format=torch.channels_last), 3, "reflect")


def test_unshuffled_and_strided_convs_equal_the_plain_conv():
    """The last 9x9 conv as a 5x5 conv of the pixel-unshuffled input, and as the 10x10 stride-2
    conv to 4 phases that the fast CPU form and the ONNX export run: the same output."""
    torch.manual_seed(3)
    x, w = torch.randn(2, 4, 20, 18), torch.randn(3, 4, 9, 9)
    ref = F.conv2d(x, w)  # (2, 3, 12, 10)
    y = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(x, 2), unshuffle_weight(w)), 2)
    assert torch.allclose(ref, y, atol=1e-4)
    assert strided_weight(w).shape == (12, 4, 10, 10)
    z = F.pixel_shuffle(F.conv2d(x, strided_weight(w), stride=2), 2)
    assert z.shape == ref.shape and torch.allclose(ref, z, atol=1e-4)


def test_stylizer_paths_agree(net):
    x = torch.rand(1, 3, 48, 64)
    ref = Stylizer(net, torch.device("cpu"), fast=False).stylize_tensor(x)
    fast = Stylizer(net, torch.device("cpu")).stylize_tensor(x)  # default on CPU: the fast net
    assert isinstance(Stylizer(net, torch.device("cpu")).model, FastTransformNet)
    assert psnr(fast, ref) > 80
    bf16 = Stylizer(net, torch.device("cpu"), precision="bf16").stylize_tensor(x)
    assert bf16.dtype == torch.float32 and bf16.shape == x.shape
    assert psnr(bf16, ref) >= 40


def test_compiled_stylizer_matches_eager():
    torch.manual_seed(0)
    small = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    x = torch.rand(1, 3, 32, 32)
    ref = Stylizer(small, torch.device("cpu"), fast=False).stylize_tensor(x)
    compiled = Stylizer(small, torch.device("cpu"), fast=False, compile=True).stylize_tensor(x)
    assert psnr(compiled, ref) >= 40


@pytest.fixture
def cuda_build_without_gpu(monkeypatch, tmp_path):
    """A CUDA build of torch on a machine with a CUDA toolkit and no usable GPU, with the module
    that warns about it not yet imported; yields the records it logs and the warnings raised."""
    import logging
    import warnings

    import torch.utils

    monkeypatch.setattr(torch.cuda, "_is_compiled", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch.utils.cpp_extension", raising=False)
    monkeypatch.delattr(torch.utils, "cpp_extension", raising=False)
    logger = logging.getLogger("torch.utils.cpp_extension")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield records, caught
    logger.removeHandler(handler)
    # The module imported under the fake CUDA build goes; monkeypatch then puts back the one
    # there was before, if any.
    sys.modules.pop("torch.utils.cpp_extension", None)
    if hasattr(torch.utils, "cpp_extension"):
        delattr(torch.utils, "cpp_extension")


def test_the_fixture_reproduces_the_no_cuda_runtime_warning(cuda_build_without_gpu):
    import importlib

    records, _ = cuda_build_without_gpu
    importlib.import_module("torch.utils.cpp_extension")  # what torch.compile does on its own
    assert any(r.startswith("No CUDA runtime is found") for r in records), records


def test_compile_on_the_cpu_says_nothing_about_cuda(cuda_build_without_gpu):
    """torch.compile on the CPU (eval.py --compile, --set compile=true) with a CUDA build of torch:
    no "No CUDA runtime is found" warning, also not when the compiled network first runs."""
    records, caught = cuda_build_without_gpu
    small = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    Stylizer(small, torch.device("cpu"), fast=False, compile=True)
    assert "torch.utils.cpp_extension" in sys.modules  # imported now, quietly: not again later
    assert not [r for r in records if "CUDA" in r] and not [w for w in caught if "CUDA" in str(w.message)]


def test_unknown_precision_is_refused(net):
    with pytest.raises(Exception, match="choose one of: fp32, bf16, fp16, int8"):
        Stylizer(net, torch.device("cpu"), precision="int4")


@pytest.fixture(scope="module")
def loss_setup():
    enc = VGGEncoder(random_features("vgg16", 0), ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    torch.manual_seed(1)
    style = torch.rand(1, 3, 40, 40)
    crit = PerceptualLoss(enc, style, ["relu2_2"], ["relu1_2", "relu2_2", "relu3_3", "relu4_3"],
                          1.0, 1e5, 1.0)
    return enc, style, crit


def test_fast_loss_equals_reference_loss(loss_setup):
    """pytorch/examples' path: both images through VGG up to relu4_3, style Grams recomputed."""
    enc, style, crit = loss_setup
    y, x = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    fy, fx, fs = enc(y, layers), enc(x, layers), enc(style, layers)
    content = F.mse_loss(fy["relu2_2"], fx["relu2_2"])
    style_ref = sum(1e5 * F.mse_loss(gram_matrix(fy[n]), gram_matrix(fs[n]).expand(2, -1, -1)) for n in layers)
    tv = ((y[..., 1:] - y[..., :-1]) ** 2).mean() + ((y[..., 1:, :] - y[..., :-1, :]) ** 2).mean()
    terms = crit(y, x)
    assert torch.allclose(terms["total"], content + style_ref + tv, rtol=1e-5)


def test_bf16_autocast_losses_close_to_fp32(loss_setup):
    _, _, crit = loss_setup
    torch.manual_seed(5)
    y, x = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    ref = crit(y, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = crit(y, x)
    for k in ("total", "content", "style", "tv"):
        assert low[k].dtype == torch.float32
        assert abs(low[k].item() - ref[k].item()) <= 0.05 * abs(ref[k].item()) + 1e-8, k


def test_bf16_training_reaches_fp32_loss(train_dir):
    """Same 20 steps on the same batch: the bf16-trained network's loss (read in fp32) within 5 %
    of the fp32-trained one's, and both well below the start (measured: 0.125 -> 0.028, the
    two within 2 %), so a bf16 run that did not learn would fail."""
    from fast_nst.training.data import find_training_images, load_sample_images

    files = find_training_images(train_dir)
    batch = load_sample_images([], files, 2, 32)
    style = load_sample_images([], files[4:], 1, 40)
    enc = VGGEncoder(random_features("vgg16", 0), ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    crit = PerceptualLoss(enc, style, ["relu2_2"], ["relu1_2", "relu2_2", "relu3_3", "relu4_3"], 1.0, 1e5, 1.0)
    finals, starts = {}, {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        net = TransformNet(TransformNetArgs(base_channels=16, num_residual=2))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for step in range(20):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                total = crit(net(batch), batch)["total"]
            starts.setdefault(precision, total.item())
            total.backward()
            opt.step()
        with torch.no_grad():
            finals[precision] = crit(net(batch), batch)["total"].item()
    assert finals["fp32"] < 0.5 * starts["fp32"] and finals["bf16"] < 0.5 * starts["bf16"], (starts, finals)
    assert abs(finals["bf16"] - finals["fp32"]) <= 0.05 * finals["fp32"], finals


# ---- the training loop with each speed option -------------------------------------------------

@pytest.mark.parametrize("options", [
    {"precision": "bf16"},
    {"precision": "fp16"},
    {"channels_last": True},
    {"compile": True, "precision": "bf16"},
], ids=["bf16", "fp16", "channels_last", "compile_bf16"])
def test_training_loop_with_speed_option(options, tmp_path, train_dir, style_file):
    """train.py's loop runs with each option: finite losses, a loadable model, the option saved in
    the checkpoint's config (fp16: the gradient scaler's state too) and a resumable run."""
    from fast_nst.io.checkpoint import read_checkpoint
    from fast_nst.training import train_config_from_dict as config_from_dict
    from fast_nst.stylize import load_stylizer
    from fast_nst.training import train as do_train

    from conftest import tiny_values

    # fp16's convolution backward on a CPU is a plain loop (~80x fp32's time): 16 px, not 32.
    size = {"image_size": 16} if options.get("precision") == "fp16" else {}
    if options.get("compile"):
        # Compiling is paid per generated kernel (~1 s each with a cold cache, as on a new
        # machine): the smallest network and loss network that still train keep their count low.
        size.update(model_args={"base_channels": 8, "num_residual": 1},
                    content_layers=["relu1_2"], style_layers=["relu1_2"])
    values = tiny_values(tmp_path / "models", train_dir, style_file, naming="opt", max_steps=2,
                         num_samples=0, **size, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = do_train(config_from_dict(values, "test"), progress=False)
        resumed = do_train(config_from_dict({**values, "max_steps": 3}, "test"), resume=True, progress=False)
    slow = [str(w.message) for w in caught if "trains about 80x slower" in str(w.message)]
    assert len(slow) == (2 if options.get("precision") == "fp16" else 0), slow  # once a run
    assert result.step == 2 and result.model_file.is_file() and resumed.step == 3
    ckpt = read_checkpoint(resumed.last_checkpoint)
    for key, value in options.items():
        assert ckpt["config"][key] == value
    assert ("scaler_state" in ckpt) == (options.get("precision") == "fp16")
    assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values())
    y = load_stylizer(result.model_file, device="cpu").stylize_tensor(torch.rand(1, 3, 24, 24))
    assert y.shape == (1, 3, 24, 24) and torch.isfinite(y).all()


def test_resume_across_channels_last_gives_adam_state_the_parameter_layout():
    """A checkpoint keeps its Adam moments' layout; CUDA's fused Adam rejects moments whose
    strides differ from the parameters', so a resumed run converts them."""
    from fast_nst.training.trainer import match_param_layout

    torch.manual_seed(0)
    saved = TransformNet(TransformNetArgs(base_channels=8, num_residual=1)).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(saved.parameters(), lr=1e-3, fused=True)
    saved(torch.rand(1, 3, 16, 16).contiguous(memory_format=torch.channels_last)).mean().backward()
    opt.step()
    state = opt.state_dict()

    for memory_format in (torch.contiguous_format, torch.channels_last):
        net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1)).to(memory_format=memory_format)
        resumed = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
        resumed.load_state_dict(state)
        match_param_layout(resumed)
        for p, p_saved in zip(net.parameters(), saved.parameters()):
            for key in ("exp_avg", "exp_avg_sq"):
                moment = resumed.state[p][key]
                assert moment.stride() == p.stride(), (key, p.shape)
                assert torch.equal(moment, opt.state[p_saved][key])


# ---- telling a user when the data loader holds training back -------------------------------------

def test_feeding_advice_names_the_fixes_that_apply(monkeypatch, tmp_path, train_dir, style_file):
    import fast_nst.training.data as data
    from fast_nst.training import train_config_from_dict as config_from_dict
    from fast_nst.training.monitor import DATA_WAIT_WARNING, feeding_advice

    from conftest import tiny_values

    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: set(range(16)))
    cfg = config_from_dict(tiny_values(tmp_path, train_dir, style_file, naming="a", num_workers=4,
                                       image_size=64), "t")
    assert feeding_advice(DATA_WAIT_WARNING * 0.9, cfg, cached=False) is None

    both = feeding_advice(0.4, cfg, cached=False)
    assert both.startswith("training waited for images 40% of the time")
    assert "--set num_workers=16" in both and "4 workers now" in both
    assert f"python -m fast_nst.data prepare {train_dir} --image_size 64" in both

    cached = feeding_advice(0.4, cfg, cached=True)
    assert "num_workers=16" in cached and "prepare" not in cached
    assert "--set num_workers=8" in feeding_advice(0.4, cfg, cached=True, world_size=2)  # cores per process

    all_cores = config_from_dict(tiny_values(tmp_path, train_dir, style_file, naming="a", num_workers=32), "t")
    assert "num_workers" not in feeding_advice(0.4, all_cores, cached=False)
    assert feeding_advice(0.9, all_cores, cached=True) is None  # nothing left to suggest


def test_feeding_advice_prepares_the_cache_training_opens_with_resize_to(tmp_path, train_dir, style_file):
    """With resize_to set, training opens the cache of that shorter side: the advice used to name
    image_size's, a cache the run never used."""
    from fast_nst.training import train_config_from_dict as config_from_dict
    from fast_nst.training.cache import open_cache, prepare_cache
    from fast_nst.training.data import find_training_images
    from fast_nst.training.monitor import feeding_advice

    from conftest import tiny_values

    photos = shutil.copytree(train_dir, tmp_path / "photos")  # the cache is written inside the folder
    cfg = config_from_dict(tiny_values(tmp_path, photos, style_file, naming="a", image_size=32, resize_to=40,
                                       num_workers=64), "t")
    advice = feeding_advice(0.4, cfg, cached=False)
    assert advice.endswith(f"python -m fast_nst.data prepare {photos} --image_size 40"), advice
    prepare_cache(photos, int(advice.rsplit(" ", 1)[1]), num_workers=0, progress=False)
    # the cache the advice makes is the one the trainer opens (trainer.py: resize_to or image_size)
    assert open_cache(photos, cfg.resize_to or cfg.image_size, find_training_images(photos)) is not None


class _Clock:
    """The time module as the trainer sees it, with a perf_counter that moves only when told:
    what the trainer measures then depends on nothing but the test."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def test_training_reports_waiting_for_data(monkeypatch, capsys, tmp_path, train_dir, style_file):
    """A slow loader shows in the log lines and TensorBoard (perf/data_wait), and training warns
    once, after the first interval (which includes starting the workers). The clock is the
    test's: decoding a photo takes 0.3 s of it, a training step 0.4 s, so each step waits 0.6 s
    (a batch of 2) of 1.0 s, whatever the machine's speed or load."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import fast_nst.training.data as data
    import fast_nst.training.reporting as reporting
    import fast_nst.training.trainer as trainer
    from fast_nst.training import train_config_from_dict as config_from_dict
    from fast_nst.training import train as do_train

    from conftest import tiny_values

    clock = _Clock()
    decode, step = data.decode_resized, trainer.Trainer.train_step

    def slow_decode(path, size):
        clock.now += 0.3
        return decode(path, size)

    def slow_step(self, *inputs):
        step(self, *inputs)
        clock.now += 0.4

    monkeypatch.setattr(trainer, "time", clock)  # the loop's clock
    monkeypatch.setattr(reporting, "time", clock)  # the log's
    monkeypatch.setattr(data, "decode_resized", slow_decode)
    monkeypatch.setattr(trainer.Trainer, "train_step", slow_step)
    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: {0, 1})
    values = tiny_values(tmp_path / "models", train_dir, style_file, naming="slow", max_steps=4, num_samples=0)
    capsys.readouterr()
    result = do_train(config_from_dict(values, "test"), progress=False)
    err = capsys.readouterr().err
    assert err.count("warning: training waited for images 60% of the time") == 1, err
    assert "--set num_workers=2: 2 CPU cores per training process, 0 workers now" in err
    assert "python -m fast_nst.data prepare" in err
    assert "step 4/4: " in err and "data_wait=60%" in err
    waits = EventAccumulator(str(result.run_dir)).Reload().Scalars("perf/data_wait")
    assert [e.step for e in waits] == [1, 2, 3, 4]
    assert [e.value for e in waits] == pytest.approx([0.6] * 4)
