"""genimage.utils.skip_init: constructors skip their random init inside the block only, and a
model loaded that way is the same model as one built and initialised first."""

import pytest
import torch

from genimage.utils.skip_init import skip_weight_init


def test_init_is_skipped_inside_and_restored_after():
    original = torch.nn.init.kaiming_uniform_
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    with skip_weight_init():
        torch.nn.Linear(64, 64)
    assert torch.equal(torch.random.get_rng_state(), before)  # no random init ran
    assert torch.nn.init.kaiming_uniform_ is original
    with pytest.raises(RuntimeError), skip_weight_init():
        raise RuntimeError("boom")
    assert torch.nn.init.kaiming_uniform_ is original
    torch.nn.Linear(4, 4)
    assert not torch.equal(torch.random.get_rng_state(), before)  # outside, init draws again


def test_loaded_model_matches_initialised_build():
    from genimage.models.io import build_denoiser, load_model, resolve_model_folder
    from genimage.models.config import ModelConfig, WEIGHTS_FILE
    from genimage.utils.weights import load_safetensors

    folder = resolve_model_folder("shapes")
    reference = build_denoiser(ModelConfig.load(folder)).network
    reference.load_state_dict(load_safetensors(folder / WEIGHTS_FILE))
    loaded = load_model("shapes").denoiser.network
    ref_state, got = reference.state_dict(), loaded.state_dict()
    assert ref_state.keys() == got.keys()
    assert all(torch.equal(ref_state[k], got[k]) for k in ref_state)
