"""The denoiser: a backbone plus a path plus a prediction type.

This is the only place where a backbone's raw output becomes a denoised estimate. It is
the model every sampler sees (``model(x, t, cond) -> Prediction``) and the model every
objective trains (through :meth:`Denoiser.raw` and :meth:`Denoiser.target`). EDM's
preconditioning (Karras et al. 2022, Eq. 7) is the ``"edm"`` prediction type: the input
scaling ``c_in`` and output mixing ``c_skip``/``c_out`` happen here, so the backbone
itself stays schedule-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genimage.paths.base import NoisePath
from genimage.paths.conversions import PathCoefficients, check_prediction, from_x0_eps, input_scale, to_x0_eps

Cond = dict[str, torch.Tensor] | None


@dataclass
class Prediction:
    """A denoiser's answer at ``(x, t)``: the clean-image estimate and the implied noise.

    Attributes:
        x0: Estimated clean image ``(B, C, H, W)``.
        eps: Estimated noise ``(B, C, H, W)``; ``x = alpha x0 + sigma eps``.
    """

    x0: torch.Tensor
    eps: torch.Tensor


def per_sample_time(t: float | torch.Tensor, batch: int) -> torch.Tensor:
    """Broadcast a scalar or ``(B,)`` time to a float64 ``(B,)`` tensor."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return t.expand(batch).clone() if t.ndim == 0 else t.double()


class Denoiser(nn.Module):
    """Wraps a backbone so that it answers "what is x0 (and eps) at (x, t)?".

    Args:
        network: Backbone ``(x, c_noise, cond) -> raw`` (see ``models/backbones/base.py``).
        path: The noise path the network was trained on.
        prediction: What the raw output means: ``eps``, ``x0``, ``v``, ``velocity`` or ``edm``.
        sigma_data: Data standard deviation used by the ``edm`` preconditioning.
    """

    def __init__(self, network: nn.Module, path: NoisePath, prediction: str, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.network = network
        self.path = path
        self.prediction = check_prediction(prediction)
        self.sigma_data = sigma_data

    def coefficients(self, t: torch.Tensor, ndim: int = 4) -> PathCoefficients:
        return PathCoefficients.at(self.path, t, ndim)

    def raw(self, x: torch.Tensor, t: float | torch.Tensor, cond: Cond = None) -> torch.Tensor:
        """The backbone's raw output at noisy ``x`` ``(B, C, H, W)`` and time ``t`` (scalar or ``(B,)``)."""
        t = per_sample_time(t, x.shape[0]).to(x.device)
        c = self.coefficients(t, x.ndim)
        scale = input_scale(self.prediction, c, self.sigma_data).to(x.dtype)
        c_noise = self.path.c_noise(t).to(torch.float32)
        return self.network(x * scale, c_noise, cond)

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What :meth:`raw` should output for clean ``x0`` and noise ``eps`` at times ``t`` ``(B,)``."""
        t = per_sample_time(t, x0.shape[0]).to(x0.device)
        return from_x0_eps(self.prediction, x0, eps, self.coefficients(t, x0.ndim), self.sigma_data)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor, cond: Cond = None) -> Prediction:
        t = per_sample_time(t, x.shape[0]).to(x.device)
        if self.prediction in ("eps", "edm") and bool((self.path.alpha(t) == 0).any()):
            from genimage.errors import GenimageError

            raise GenimageError(
                f"a {self.prediction!r}-prediction model cannot denoise where alpha = 0 (pure noise on the "
                f"{self.path.name!r} path at t = 1); use --schedule karras or a path with alpha > 0")
        raw = self.raw(x, t, cond).to(x.dtype)
        x0, eps = to_x0_eps(self.prediction, raw, x, self.coefficients(t, x.ndim), self.sigma_data)
        return Prediction(x0, eps)
