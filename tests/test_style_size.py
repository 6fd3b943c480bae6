"""``style_size`` means one thing everywhere: the style image's longest side (training configs,
python -m fast_nst.optimize, eval.py's --style_size for arbitrary-style models)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from fast_nst import gatys
from fast_nst.commands import eval as eval_cmd
from fast_nst.commands import optimize as optimize_cmd
from fast_nst.stylize.torch_stylizer import TorchStylizer
from fast_nst.training import load_train_config
from fast_nst.training.setup import load_style_tensor

from conftest import make_photo, random_adain_net

WIDE, TALL = (96, 48), (40, 80)  # a landscape and a portrait painting


@pytest.mark.parametrize("size", [WIDE, TALL])
def test_training_optimize_and_eval_resize_the_longest_side(size, tmp_path, monkeypatch):
    painting = make_photo(tmp_path / "style.png", size)
    expected = (1, 3, 32 * size[1] // max(size), 32 * size[0] // max(size))  # longest side 32

    cfg = load_train_config(None, [f"style_image={painting}", "naming=s", "style_size=32"])
    assert tuple(load_style_tensor(cfg).shape) == expected

    assert tuple(gatys._style_at(Image.open(painting), 32, 1, torch.device("cpu")).shape) == expected

    seen = []
    stylizer = TorchStylizer(random_adain_net(), torch.device("cpu"))
    monkeypatch.setattr(stylizer, "_set_style_images",
                        lambda images, weights, label, alpha: seen.extend(tuple(t.shape) for t in images))
    stylizer.set_style(painting, style_size=32)
    assert seen == [expected]


def test_help_texts_say_longest_side():
    for parser in (eval_cmd.parser(), optimize_cmd.parser()):
        (action,) = [a for a in parser._actions if "--style_size" in a.option_strings]
        assert "longest side" in action.help and "shorter" not in action.help, action.help
