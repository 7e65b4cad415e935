"""The edit plan: wrapper steps in order, a newly registered step reaches every batch
without touching ``generate``, and plain generation gets only guidance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genimage.conditioning.cfg import CFGDenoiser
from genimage.editing.known_region import KnownRegionDenoiser
from genimage.editing.plan import WRAPPERS, EditPlan, register_wrapper, wrapper_steps
from genimage.editing.spec import EditSpec
from genimage.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.from_pretrained(tiny_model_dir)


def test_builtin_steps_wrap_in_order():
    names = [s.name for s in wrapper_steps()]
    assert names.index("windows") < names.index("guidance") < names.index("known_region") < names.index("low_resolution")


class _Counting(nn.Module):
    """Passes through, counts calls and records the input shapes it sees."""

    def __init__(self, model, seen):
        super().__init__()
        self.model, self.path, self.seen = model, model.path, seen

    def forward(self, x, t, cond=None):
        self.seen.append(tuple(x.shape))
        return self.model(x, t, cond)


def test_a_registered_step_wraps_every_batch_and_leaves_results_unchanged(pipe):
    image = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1
    edit = EditSpec(image, 1.0, mask)
    opts = pipe.options(steps=3, sampler="euler")
    before = pipe([0, 1, 2], labels=[0, 1, 2], options=opts, edit=edit, batch_size=2)
    seen: list = []
    built: list = []

    def build(model, ctx):
        built.append((ctx.sl, ctx.count, type(model)))
        return _Counting(model, seen)

    register_wrapper("test_counting", order=150)(build)
    try:
        after = pipe([0, 1, 2], labels=[0, 1, 2], options=opts, edit=edit, batch_size=2)
    finally:
        WRAPPERS._items.pop("test_counting")
    assert torch.equal(before, after)
    assert [(b[0], b[1]) for b in built] == [(slice(0, 2), 2), (slice(2, 4), 1)]
    assert all(b[2] is CFGDenoiser for b in built)  # order 150: above guidance, below the known region
    assert len(seen) == 2 * 3 and seen[0] == (2, 1, 8, 8) and seen[-1] == (1, 1, 8, 8)
    assert "test_counting" not in [s.name for s in wrapper_steps()]


def test_plain_generation_is_guidance_only_and_edits_add_their_wrapper(pipe):
    from genimage.editing.plan import BatchContext

    def model_for(edit, cond):
        ctx = BatchContext(pipe.loaded.denoiser, pipe.config, pipe.options(), edit, None, (1, 8, 8),
                           torch.device("cpu"), torch.linspace(1, 0, 3), slice(0, 1), 1, [torch.Generator()],
                           torch.zeros(1, 1, 8, 8), cond=cond)
        plan = EditPlan(edit, pipe.config)
        plan.start(ctx)
        return plan.model(ctx)

    assert model_for(None, None) is pipe.loaded.denoiser
    assert isinstance(model_for(None, {"label": torch.tensor([0])}), CFGDenoiser)
    inpaint = EditSpec(torch.zeros(1, 1, 8, 8), 1.0, torch.ones(1, 1, 8, 8))
    wrapped = model_for(inpaint, {"label": torch.tensor([0])})
    assert isinstance(wrapped, KnownRegionDenoiser) and isinstance(wrapped.model, CFGDenoiser)
