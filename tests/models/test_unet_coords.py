"""CoordConv input channels of the UNet (``coord_channels=True``): the network sees where it is."""

import pytest
import torch

from genimage.errors import GenimageError
from genimage.models.backbones.unet import UNet, UNetConfig, coordinate_channels


def test_coordinate_channels_run_left_to_right_and_top_to_bottom():
    c = coordinate_channels(torch.zeros(3, 4, 2, 5))
    assert c.shape == (3, 2, 2, 5)
    assert torch.equal(c[0, 0, 1], torch.linspace(-1, 1, 5))  # x grows along a row
    assert torch.equal(c[2, 1, :, 3], torch.tensor([-1.0, 1.0]))  # y grows down a column


def test_unet_with_coordinates_takes_and_returns_the_latent_channels():
    cfg = UNetConfig(image_size=8, in_channels=4, block_out_channels=(16, 32), norm_num_groups=8,
                     attention_head_dim=16, text_dim=24, max_text_len=4, coord_channels=True)
    torch.manual_seed(0)
    net = UNet(cfg).eval()
    assert net.diffusers_model.conv_in.weight.shape[1] == 6
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    x = torch.randn(3, 4, 8, 8)
    text = {"text": torch.randn(3, 4, 24), "text_mask": torch.ones(3, 4, dtype=torch.bool)}
    with torch.no_grad():
        out = net(x, torch.rand(3), text)
        assert out.shape == x.shape
        one = net(x[:1], torch.full((1,), 0.5), {k: v[:1] for k, v in text.items()})
        batch = net(x, torch.full((3,), 0.5), text)
        net.diffusers_model.conv_in.weight[:, 4:] = 0  # cut the coordinates off: the output changes
        blind = net(x, torch.full((3,), 0.5), text)
    assert torch.equal(one[0], batch[0])  # batch invariant as without coordinates
    assert (blind - batch).abs().max() > 1e-2
    with pytest.raises(GenimageError, match=r"\(B, 4, H, W\)"):
        net(torch.randn(1, 6, 8, 8), torch.rand(1), None)
