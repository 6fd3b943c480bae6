"""train.py --init_from a one-style model: training starts from its weights (a fresh optimizer at
step 0) when it is the network the config trains, and says what to set when it is not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import REPO, tiny_values
from fast_nst.core.errors import ConfigError
from fast_nst.io.checkpoint import load_model, read_checkpoint
from fast_nst.training import setup as training_setup
from fast_nst.training.config import train_config_from_dict
from fast_nst.training.trainer import train

SMALL = {"base_channels": 8, "num_residual": 1}
BUILT_IN = REPO / "fast_nst" / "assets" / "mosaic_slim.pth"


@pytest.fixture(scope="module")
def first(tmp_path_factory, train_dir, style_file):
    """A small one-style network trained 3 steps."""
    root = tmp_path_factory.mktemp("fine_tune")
    values = tiny_values(root, train_dir, style_file, naming="first", model_args=SMALL)
    return train(train_config_from_dict(values, "first.yml"), progress=False)


def _train(tmp_path, train_dir, style_file, naming: str, **overrides):
    values = tiny_values(tmp_path, train_dir, style_file, naming=naming, max_steps=1, **overrides)
    return train(train_config_from_dict(values, f"{naming}.yml"), progress=False)


def _largest_difference(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_training_starts_from_the_weights_of_init_from(first, tmp_path, train_dir, style_file, capsys):
    start = read_checkpoint(first.model_file)["model_state"]
    # A learning rate too small to move a weight: the run's model is the one it started from.
    tuned = _train(tmp_path, train_dir, style_file, "tuned", model_args=SMALL, lr=1e-12,
                   init_from=str(first.model_file))
    assert f"Training tuned from {first.model_file} on cpu: " in capsys.readouterr().err
    fresh = _train(tmp_path, train_dir, style_file, "fresh", model_args=SMALL, lr=1e-12)
    ckpt = read_checkpoint(tuned.model_file)
    assert _largest_difference(ckpt["model_state"], start) < 1e-6
    # The same seed without init_from: the random start that 3 steps moved ``first`` from.
    assert _largest_difference(read_checkpoint(fresh.model_file)["model_state"], start) > 1e-4
    # A new run: its own step count and optimizer, the model it started from in its config.
    assert ckpt["step"] == 1 and ckpt["config"]["init_from"] == str(first.model_file)


def test_the_built_in_model_trains_further_as_its_preset(tmp_path, train_dir, style_file):
    net, _ = load_model(BUILT_IN)
    tuned = _train(tmp_path, train_dir, style_file, "builtin", model_type="johnson_slim", lr=1e-12,
                   init_from=str(BUILT_IN))
    assert _largest_difference(load_model(tuned.model_file)[0].state_dict(), net.state_dict()) < 1e-6
    with pytest.raises(ConfigError, match="is a johnson network with base_channels 16 \\(the config: 32\\), "
                                          "num_residual 3 \\(the config: 5\\); set model_type: johnson_slim "
                                          "and no model_args to train it further"):
        _train(tmp_path, train_dir, style_file, "default", init_from=str(BUILT_IN))


def test_init_from_another_network_says_what_to_set(first, tmp_path, train_dir, style_file):
    with pytest.raises(ConfigError, match="base_channels 8 \\(the config: 4\\); set model_type: johnson and "
                                          "model_args: \\{'base_channels': 8, 'num_residual': 1\\}"):
        _train(tmp_path, train_dir, style_file, "narrow", model_args={"base_channels": 4, "num_residual": 1},
               init_from=str(first.model_file))
    (tmp_path / "notes.pth").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="^init_from: .*notes.pth"):
        _train(tmp_path, train_dir, style_file, "damaged", model_args=SMALL, init_from=str(tmp_path / "notes.pth"))
    assert not (tmp_path / "narrow").exists() and not (tmp_path / "damaged").exists()  # found before any work


def test_what_init_from_cannot_start(first, tmp_path, train_dir, style_file):
    with pytest.raises(ConfigError, match="key 'freeze' is 'convolutions': it trains only the per-style norms "
                                          "of a multi-style network \\(model_type johnson_multi\\)"):
        train_config_from_dict(tiny_values(tmp_path, train_dir, style_file, naming="x", freeze="convolutions",
                                           init_from=str(first.model_file)), "x.yml")
    with pytest.raises(ConfigError, match="model_type adain learns no styles to start from; continue an "
                                          "arbitrary-style run with --resume"):
        training_setup._read_init(SimpleNamespace(model_type="adain", init_from=str(first.model_file)), [])
