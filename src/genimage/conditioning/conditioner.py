"""Turns labels and captions into the conditioning dict a backbone reads.

Built from a :class:`~genimage.models.config.ModelConfig`; used by training (dataset items
-> batch) and by generation (user prompts/labels -> batch) so both see the same tensors.
"""

from __future__ import annotations

from typing import Sequence

import torch

from genimage.errors import GenimageError
from genimage.models.config import ModelConfig


class Conditioner:
    """Args:
        config: The model config (``num_classes``, ``text_encoder``, ``text_max_length``,
            ``text_layers``).
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._text_encoder = None

    @property
    def uses_labels(self) -> bool:
        return self.config.num_classes > 0

    @property
    def uses_text(self) -> bool:
        return bool(self.config.text_encoder)

    @property
    def encodes_empty_prompt(self) -> bool:
        """True when guidance's unconditional input is the *encoded* empty prompt (Stable
        Diffusion's CLIP conditioning), not genimage's zero/masked null text."""
        return self.config.family_config.get("text_conditioning") == "sd-clip"

    @property
    def text_encoder(self):
        if self._text_encoder is None and self.encodes_empty_prompt:
            from genimage.interop.sd_import import load_sd_text_encoder

            self._text_encoder = load_sd_text_encoder(self.config)
        if self._text_encoder is None:
            from genimage.conditioning.text import TextEncoder

            self._text_encoder = TextEncoder.from_name(self.config.text_encoder, max_length=self.config.text_max_length,
                                                       layers=self.config.text_layers)
        return self._text_encoder

    def label_tensor(self, labels: Sequence[int | None]) -> torch.Tensor:
        out = []
        for lab in labels:
            if lab is None:
                out.append(-1)
                continue
            lab = int(lab)
            if not -1 <= lab < self.config.num_classes:
                raise GenimageError(f"label {lab} is out of range: this model knows labels 0..{self.config.num_classes - 1}")
            out.append(lab)
        return torch.tensor(out, dtype=torch.long)

    def __call__(self, *, labels: Sequence[int | None] | None = None,
                 captions: Sequence[str] | None = None, batch: int | None = None) -> dict[str, torch.Tensor] | None:
        """Conditioning for a batch. Missing labels/captions mean "unconditional" for that input.

        Args:
            labels: One label per sample (``None`` or -1 = no label).
            captions: One caption per sample (``""`` = no text).
            batch: Batch size when neither is given.
        """
        n = len(labels) if labels is not None else len(captions) if captions is not None else batch
        if n is None:
            raise ValueError("batch size unknown")
        cond: dict[str, torch.Tensor] = {}
        if self.uses_labels:
            cond["label"] = self.label_tensor(labels if labels is not None else [None] * n)
        if self.uses_text:
            enc = self.text_encoder.encode(list(captions) if captions is not None else [""] * n)
            cond["text"] = enc["text"]
            cond["text_mask"] = enc["text_mask"]
        return cond or None
