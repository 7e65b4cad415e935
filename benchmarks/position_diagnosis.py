"""Why a shapes model gets spatial relations wrong: axis vs direction, and the text states.

    python benchmarks/position_diagnosis.py [--model shapes] [--n 160]

1. Generates ``--n`` two-object seen prompts (seed 0, the model's default sampling), keeps
   the images whose count and colour-shape binding are right, and splits them into relation
   right / the opposite relation (right axis, wrong direction) / neither.
2. Cosine similarity of the text encoder's states for "left" vs "right" (and "above" vs
   "below", "left" vs "above") in mirrored captions, in every layer of MiniLM.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

OPPOSITE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
            "below": "above"}


def relation_split(model: str, n: int) -> None:
    from genimage.data.shapes import parse_caption, relation_holds, sample_captions
    from genimage.data.shapes_analyzer import _candidates, score
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(model)
    caps = [c for c in sample_captions(4 * n, seed=0, split="train") if parse_caption(c).relation][:n]
    images = pipe(list(range(len(caps))), prompts=caps)
    bound = [s for s in (score(i, c) for i, c in zip(images, caps)) if s.binding_ok and s.count_ok]
    right = sum(s.position_ok for s in bound)
    opposite = 0
    for s in bound:
        a, b = _candidates(s.spec.objects[0], s.detected), _candidates(s.spec.objects[1], s.detected)
        if not s.position_ok and a and b and a[0] != b[0]:
            (sx, sy), (ox, oy) = s.detected[a[0]].centre, s.detected[b[0]].centre
            opposite += bool(relation_holds(sx - ox, sy - oy, OPPOSITE[s.spec.relation], 0.0))
    print(f"{len(caps)} two-object prompts; {len(bound)} with count and binding right: relation right "
          f"{right / max(1, len(bound)):.2f}, opposite relation {opposite / max(1, len(bound)):.2f}, "
          f"neither {(len(bound) - right - opposite) / max(1, len(bound)):.2f}")


def text_states() -> None:
    from genimage.conditioning.text import TextEncoder

    minilm = TextEncoder.from_name("minilm")
    tok, enc = minilm.tokenizer, minilm.model
    caps = ["a red circle to the left of a blue square", "a red circle to the right of a blue square",
            "a red circle above a blue square", "a red circle below a blue square"]
    batch = tok(caps, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = enc(**batch, output_hidden_states=True).hidden_states
    idx = {w: tok.convert_ids_to_tokens(batch["input_ids"][i]).index(w)
           for i, w in enumerate(("left", "right", "above", "below"))}
    print("MiniLM layer | cos(left, right) | cos(above, below) | cos(left, above)")
    for layer, h in enumerate(states):
        def cos(i, a, j, b):
            return F.cosine_similarity(h[i, idx[a]], h[j, idx[b]], dim=0).item()
        print(f"{layer} | {cos(0, 'left', 1, 'right'):.3f} | {cos(2, 'above', 3, 'below'):.3f} | "
              f"{cos(0, 'left', 2, 'above'):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--n", type=int, default=160)
    args = ap.parse_args()
    relation_split(args.model, args.n)
    text_states()


if __name__ == "__main__":
    main()
