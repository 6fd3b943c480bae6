import pytest
import torch
from torch import nn

from fast_nst.nets.johnson import TransformNet, TransformNetArgs


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return TransformNet().eval()


@pytest.mark.parametrize("h,w", [(97, 131), (1, 1), (3, 7), (32, 32), (5, 64), (130, 2)])
def test_output_size_equals_input_size(net, h, w):
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, h, w)
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1


def test_architecture_matches_johnson_layout(net):
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # c9s1-32, d64, d128, 5 residual blocks x 2 convs, u64, u32, c9s1-3
    shapes = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs]
    assert shapes[:3] == [(3, 32, 9, 1), (32, 64, 3, 2), (64, 128, 3, 2)]
    assert shapes[3:13] == [(128, 128, 3, 1)] * 10
    assert shapes[13:] == [(128, 64, 3, 1), (64, 32, 3, 1), (32, 3, 9, 1)]
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 2 + 1 + 10 + 2 and all(m.affine for m in norms)
    ups = [m for m in net.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 2 and all(m.mode == "nearest" for m in ups)
    pads = [m for m in net.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert len(pads) == len(convs)  # every convolution is reflection padded


def test_odd_sizes_are_padded_at_the_end_and_cropped_back(net):
    # 67 columns are reflection-padded to 68 on the right; the output is the first 67 columns of
    # the network applied to that padded image, so nothing shifts.
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 67)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 0), mode="reflect")
    with torch.no_grad():
        assert torch.allclose(net(x), net(padded)[..., :67], atol=1e-6)


def test_custom_args_roundtrip():
    args = TransformNetArgs(base_channels=8, num_residual=2)
    net = TransformNet(args)
    assert net.args.to_dict() == {"base_channels": 8, "num_residual": 2, "output_activation": "tanh"}
    assert net(torch.rand(1, 3, 20, 21)).shape == (1, 3, 20, 21)


def test_rejects_wrong_channel_count(net):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.rand(1, 4, 8, 8))
