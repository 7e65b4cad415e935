import torch

from genimage.utils.precision import bf16_is_fast, resolve_bf16


def test_explicit_choice_is_kept_and_auto_follows_the_cpu():
    assert resolve_bf16(True) is True and resolve_bf16(False) is False
    expected = bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    assert resolve_bf16(None) == bf16_is_fast("cpu") == expected
