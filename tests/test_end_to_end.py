"""Train a few steps through the real train.py, stylize with eval.py, read TensorBoard back."""

import pytest
import torch
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fast_nst.io.checkpoint import FORMAT_VERSION, read_checkpoint
from fast_nst.commands.eval import main as eval_main
from fast_nst.commands.train import main as train_main
from fast_nst.training import load_train_config as load_config

from conftest import make_photo, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_dir, style_file, vgg_file):
    """One real CLI run with the random-init VGG16 file in torchvision's layout (imagenet path)."""
    root = tmp_path_factory.mktemp("e2e")
    conf = root / "conf" / "mystyle.yml"
    conf.parent.mkdir()
    conf.write_text(yaml.safe_dump(dict(
        style_image=str(style_file), train_dir=str(train_dir), image_size=32, style_size=40,
        batch_size=2, max_steps=4, num_workers=1, log_every=2, image_log_every=2,
        checkpoint_every=2, loss_model_file=str(vgg_file), device="cpu", num_samples=3,
    )))
    result = run_cli("train.py", "-c", str(conf), "--set", "max_steps=5", cwd=root)
    return root, conf, result


def test_train_cli_writes_model_checkpoints_config_and_events(trained):
    root, conf, result = trained
    assert result.returncode == 0, result.stderr
    run = root / "models" / "mystyle"
    assert (run / "mystyle.pth").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_00000002.pth", "step_00000004.pth", "step_00000005.pth"]
    saved = load_config(run / "config.yml")
    assert saved.max_steps == 5 and saved.naming == "mystyle"  # the override is in the saved config
    assert "RANDOM" not in result.stderr  # real weights-file path, no random warning
    assert "mystyle: 100%" in result.stderr  # tqdm bar
    assert "loss=" in result.stderr and "img_s=" in result.stderr
    assert "model:       models/mystyle/mystyle.pth" in result.stderr
    assert "tensorboard --logdir models/mystyle" in result.stderr


def test_checkpoints_describe_themselves(trained):
    root, _, _ = trained
    final = read_checkpoint(root / "models/mystyle/mystyle.pth")
    assert final["format_version"] == FORMAT_VERSION and final["kind"] == "model"
    assert final["step"] == 5 and final["model_args"] == {"base_channels": 32, "num_residual": 5,
                                                          "output_activation": "tanh"}
    assert final["config"]["max_steps"] == 5 and "optimizer_state" not in final
    train_ck = read_checkpoint(root / "models/mystyle/checkpoints/step_00000004.pth")
    assert train_ck["kind"] == "training" and train_ck["step"] == 4
    assert set(train_ck["optimizer_state"]) == {"state", "param_groups"}
    assert {"torch", "python"} <= set(train_ck["rng_state"])
    # final weights equal the last training checkpoint's
    last = read_checkpoint(root / "models/mystyle/checkpoints/step_00000005.pth")
    for k, v in final["model_state"].items():
        assert torch.equal(v, last["model_state"][k])


def test_tensorboard_scalars_and_images(trained):
    root, _, _ = trained
    acc = EventAccumulator(str(root / "models" / "mystyle"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ["loss/total", "loss/content", "loss/style", "loss/tv", "loss/style/relu1_2",
                "loss/style/relu2_2", "loss/style/relu3_3", "loss/style/relu4_3",
                "perf/images_per_s", "lr"]:
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("loss/total")] == [1, 2, 4, 5]
    assert all(e.value > 0 for e in acc.Scalars("loss/total"))
    assert set(tags["images"]) == {"style", "samples/content", "samples/stylized"}
    events = acc.Images("samples/stylized")
    assert [e.step for e in events] == [2, 4, 5]
    assert events[0].width * events[0].height >= 3 * 32 * 32  # a grid of the 3 sample photos
    assert [e.step for e in acc.Images("samples/content")] == [0]


def test_eval_cli_writes_same_size_image(trained, tmp_path):
    root, _, _ = trained
    photo = make_photo(tmp_path / "photo.jpg", (97, 131), seed=5)
    result = run_cli("eval.py", "--model_file", str(root / "models/mystyle/mystyle.pth"),
                     "--image_file", str(photo), "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "generated" / "photo_mystyle.jpg"
    assert "Saved generated/photo_mystyle.jpg" in result.stdout
    with Image.open(out) as img:
        assert img.size == (97, 131)


def test_eval_folder_mode_and_explicit_output(trained, tmp_path):
    root, _, _ = trained
    model = str(root / "models/mystyle/checkpoints/step_00000004.pth")  # training ckpts work too
    src = tmp_path / "in"
    for i, size in enumerate([(20, 30), (33, 17)]):
        make_photo(src / f"p{i}.png", size, seed=i, fmt="PNG")
    assert eval_main(["--model_file", model, "--image_file", str(src),
                      "--output_file", str(tmp_path / "out")]) == 0
    for i, size in enumerate([(20, 30), (33, 17)]):
        with Image.open(tmp_path / "out" / f"p{i}_mystyle.jpg") as img:
            assert img.size == size
    one = tmp_path / "deep" / "er" / "x.png"
    assert eval_main(["--model_file", model, "--image_file", str(src / "p0.png"),
                      "--output_file", str(one)]) == 0
    assert Image.open(one).size == (20, 30)


def test_eval_honours_exif_orientation(trained, tmp_path):
    root, _, _ = trained
    path = make_photo(tmp_path / "rot.jpg", (40, 20))
    img = Image.open(path)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(path, exif=exif)
    out = tmp_path / "rot_out.jpg"
    assert eval_main(["--model_file", str(root / "models/mystyle/mystyle.pth"),
                      "--image_file", str(path), "--output_file", str(out)]) == 0
    assert Image.open(out).size == (20, 40)


def test_user_errors_print_message_not_traceback(capsys, tmp_path):
    code = train_main(["-c", str(tmp_path / "missing.yml")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: Config file not found") and "Traceback" not in err


def test_help_works_for_both_commands(capsys):
    """In-process: the scripts themselves start as subprocesses in the tests above."""
    for main, flag in ((train_main, "--config"), (eval_main, "--model_file")):
        with pytest.raises(SystemExit) as stop:
            main(["--help"])
        out = capsys.readouterr().out
        assert stop.value.code == 0 and out.startswith("usage:") and flag in out, out[:500]


def test_learning_halves_the_loss_on_a_fixed_batch(train_dir):
    """~50 Adam steps on one fixed batch must cut the total loss by at least half."""
    from fast_nst.training.data import find_training_images, load_sample_images
    from fast_nst.lossnet.losses import PerceptualLoss
    from fast_nst.nets.johnson import TransformNet
    from fast_nst.lossnet.vgg import VGGEncoder, random_features

    torch.manual_seed(0)
    files = find_training_images(train_dir)
    batch = load_sample_images([], files, 2, 32)  # (2, 3, 32, 32)
    style = load_sample_images([], files[5:], 1, 48)
    cfg = load_config(None, ["style_image=x", "naming=x"])
    enc = VGGEncoder(random_features("vgg16", 0), list(dict.fromkeys(cfg.content_layers + cfg.style_layers)))
    crit = PerceptualLoss(enc, style, cfg.content_layers, cfg.style_layers, cfg.content_weight,
                          cfg.style_weight, cfg.tv_weight)
    net = TransformNet()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        total = crit(net(batch), batch)["total"]
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
