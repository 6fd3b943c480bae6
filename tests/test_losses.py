import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fast_nst.lossnet.losses import ContentLoss, PerceptualLoss, StyleLoss, TVLoss, gram_matrix
from fast_nst.lossnet.vgg import VGGEncoder, random_features


def test_gram_matrix_against_hand_computed_values():
    # One image, 2 channels, 1 x 2 pixels: f = [[1, 2], [3, 4]] -> F F^T = [[5, 11], [11, 25]]
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / (2 * 1 * 2)
    assert torch.allclose(gram_matrix(f), expected)


def test_gram_matrix_batched_and_float32_for_half_inputs():
    f = torch.randn(3, 4, 5, 6)
    g = gram_matrix(f)
    assert g.shape == (3, 4, 4)
    flat = f.reshape(3, 4, 30)
    assert torch.allclose(g[1], flat[1] @ flat[1].T / 120, atol=1e-6)
    assert gram_matrix(f.to(torch.bfloat16)).dtype == torch.float32
    assert gram_matrix(f.half()).dtype == torch.float32


def test_gram_matrix_of_channels_last_features_and_its_gradient():
    f = torch.randn(2, 8, 5, 7)
    cl = f.contiguous(memory_format=torch.channels_last).requires_grad_()
    plain = f.clone().requires_grad_()
    g_cl, g = gram_matrix(cl), gram_matrix(plain)
    assert torch.allclose(g_cl, g, atol=1e-6)
    w = torch.randn(2, 8, 8)
    (g_cl * w).sum().backward()
    (g * w).sum().backward()
    assert torch.allclose(cl.grad, plain.grad, atol=1e-6)


def test_gram_matrix_stays_float32_under_bf16_autocast():
    conv = nn.Conv2d(3, 8, 3)
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = conv(x)
        assert feats.dtype == torch.bfloat16  # autocast is really on
        g = gram_matrix(feats)
    assert g.dtype == torch.float32
    assert torch.allclose(g, gram_matrix(feats.float()))


def test_content_loss_is_weighted_mse():
    a, b = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    assert torch.allclose(ContentLoss(3.0)(a, b), 3.0 * ((a - b) ** 2).mean())


def test_style_loss_is_weighted_gram_mse_and_target_is_stored_once():
    style, out = torch.randn(1, 4, 6, 6), torch.randn(3, 4, 5, 7)
    loss = StyleLoss(style, weight=2.0)
    expected = 2.0 * F.mse_loss(gram_matrix(out), gram_matrix(style).expand(3, 4, 4))
    assert torch.allclose(loss(out), expected)
    assert loss.target.shape == (1, 4, 4)
    assert not loss.target.requires_grad


def test_tv_loss_against_hand_computed_values():
    img = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]]).expand(1, 3, 2, 2)
    # horizontal diffs: 1, 2 -> mean sq 2.5 ; vertical diffs: 1, 2 -> mean sq 2.5
    assert torch.allclose(TVLoss(0.5)(img), torch.tensor(0.5 * 5.0))
    assert TVLoss(1.0)(torch.ones(1, 3, 4, 4)) == 0


class TinyEncoder(VGGEncoder):
    """A two-conv stand-in addressed by VGG names, to check PerceptualLoss against the formula."""

    def __init__(self):
        nn.Module.__init__(self)
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, padding=1)
        self.requires_grad_(False)

    def forward(self, x, layers):
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        return {k: v for k, v in {"relu1_1": a, "relu1_2": b}.items() if k in layers}


def test_perceptual_loss_matches_formula_with_fake_encoder():
    enc = TinyEncoder()
    style = torch.rand(1, 3, 10, 12)
    out, content = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    crit = PerceptualLoss(enc, style, ["relu1_1"], ["relu1_1", "relu1_2"], 2.0, 10.0, 0.5,
                          style_layer_weights=[1.0, 3.0])
    terms = crit(out, content)
    fo, fc, fs = enc(out, ["relu1_1", "relu1_2"]), enc(content, ["relu1_1"]), enc(style, ["relu1_1", "relu1_2"])
    content_exp = 2.0 * F.mse_loss(fo["relu1_1"], fc["relu1_1"])
    s1 = 10.0 * F.mse_loss(gram_matrix(fo["relu1_1"]), gram_matrix(fs["relu1_1"]).expand(2, -1, -1))
    s2 = 30.0 * F.mse_loss(gram_matrix(fo["relu1_2"]), gram_matrix(fs["relu1_2"]).expand(2, -1, -1))
    tv_exp = TVLoss(0.5)(out)
    assert torch.allclose(terms["content"], content_exp)
    assert torch.allclose(terms["style/relu1_1"], s1)
    assert torch.allclose(terms["style/relu1_2"], s2)
    assert torch.allclose(terms["style"], s1 + s2)
    assert torch.allclose(terms["tv"], tv_exp)
    assert torch.allclose(terms["total"], content_exp + s1 + s2 + tv_exp)


def test_style_grams_computed_once_not_per_forward():
    calls = []
    enc = TinyEncoder()
    orig = enc.forward

    def counting(x, layers):
        calls.append((x.shape[0], tuple(layers)))
        return orig(x, layers)

    enc.forward = counting
    crit = PerceptualLoss(enc, torch.rand(1, 3, 8, 8), ["relu1_1"], ["relu1_2"], 1.0, 1.0, 0.0)
    n_init = len(calls)
    for _ in range(3):
        crit(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    assert n_init == 1
    # per forward: content photo through the content layers only, output through content+style
    assert calls[1:] == [(2, ("relu1_1",)), (2, ("relu1_1", "relu1_2"))] * 3


def test_perceptual_loss_with_random_vgg_has_gradients_only_for_the_output():
    enc = VGGEncoder(random_features("vgg16", 0), ["relu2_2", "relu3_3"])
    crit = PerceptualLoss(enc, torch.rand(1, 3, 32, 32), ["relu2_2"], ["relu2_2", "relu3_3"], 1.0, 1e5, 1.0)
    out = torch.rand(1, 3, 32, 32, requires_grad=True)
    crit(out, torch.rand(1, 3, 32, 32))["total"].backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())


def test_tf32_grams_only_while_enabled_and_restored():
    from fast_nst.lossnet.losses import tf32_grams

    before = torch.backends.cuda.matmul.allow_tf32
    assert before is False  # torch's default: exact float32 matmuls
    with tf32_grams(False):
        assert torch.backends.cuda.matmul.allow_tf32 is False
    with pytest.raises(RuntimeError):
        with tf32_grams(True):
            assert torch.backends.cuda.matmul.allow_tf32 is True
            raise RuntimeError("a failing step")
    assert torch.backends.cuda.matmul.allow_tf32 is False


@pytest.mark.parametrize("unbiased", [False, True])
def test_instance_normalised_is_adains_normalisation(unbiased):
    """The instance-norm form an export holds equals (x - mean) / std of mean_std, biased or not
    (unbiased: H*W - 1 under the variance), on a map with a near-constant channel (where float32's
    rounding of the mean, divided by a std of 1e-3, allows 2e-4)."""
    from fast_nst.lossnet.losses import instance_normalised, mean_std

    torch.manual_seed(0)
    f = torch.randn(2, 4, 5, 3) * 3 + 1
    f[:, 1] = 2 + 1e-3 * torch.randn(2, 5, 3)  # variance near eps: where eps's place matters
    mean, std = mean_std(f, unbiased=unbiased)
    assert torch.allclose(instance_normalised(f, unbiased), (f - mean) / std, atol=2e-4)
    other, _ = mean_std(f, unbiased=not unbiased)
    assert not torch.allclose(instance_normalised(f, unbiased), (f - other) / mean_std(f, unbiased=not unbiased)[1],
                              atol=1e-3)
