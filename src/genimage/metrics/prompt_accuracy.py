"""Prompt accuracy on the ``shapes`` benchmark (a GenEval-style check, Ghosh et al. 2023).

Sample captions from the shapes grammar (seen compositions from the train split, held-out
colour–shape pairs from the eval split), generate one image per caption, and score each
with the dataset's analyzer (:func:`genimage.data.shapes_analyzer.score`): object count,
colour–shape binding, spatial relation, and all three together ("overall"). Position is
reported over the two-object captions only (single-object captions have no relation).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from genimage.data.shapes import parse_caption, sample_captions
from genimage.data.shapes_analyzer import score


@dataclass
class SplitAccuracy:
    """Accuracy on one split.

    Attributes:
        n: Number of prompts.
        overall: Fraction with count, binding and position all correct.
        count: Fraction with the right number of objects.
        binding: Fraction where every caption object's colour–shape pair is present.
        position: Fraction of two-object prompts whose relation holds.
        n_relations: Number of two-object prompts.
    """

    n: int
    overall: float
    count: float
    binding: float
    position: float
    n_relations: int


def _summarize(captions: list[str], scores: list) -> SplitAccuracy:
    rel = [s for c, s in zip(captions, scores) if parse_caption(c).relation is not None]
    n = len(scores)
    return SplitAccuracy(
        n=n,
        overall=sum(s.overall for s in scores) / n,
        count=sum(s.count_ok for s in scores) / n,
        binding=sum(s.binding_ok for s in scores) / n,
        position=(sum(s.position_ok for s in rel) / len(rel)) if rel else float("nan"),
        n_relations=len(rel),
    )


def evaluate_prompts(pipe, n: int = 500, seed: int = 0, options=None, batch_size: int = 64,
                     progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Generate and score ``n`` seen and ``n`` held-out prompts.

    Args:
        pipe: A :class:`~genimage.pipeline.Pipeline` of a text-conditional shapes model.
        n: Prompts per split.
        seed: Seed of the prompts; image ``i`` of a split uses seed ``seed + i``.
        options: Sampling options (default: the model's).
        batch_size: Images per network batch.
        progress: Called with the number of images finished so far.

    Returns:
        ``{"seen": SplitAccuracy, "held_out": SplitAccuracy, "images_per_s": float, ...}``
        as plain dicts, plus a few failure examples per split.
    """
    options = options or pipe.options()
    out: dict[str, Any] = {"n_per_split": n, "seed": seed, "sampling": asdict(options)}
    done = 0
    total_time = 0.0
    for name, split in (("seen", "train"), ("held_out", "eval")):
        captions = sample_captions(n, seed=seed, split=split)
        scores = []
        for start in range(0, n, batch_size):
            chunk = captions[start:start + batch_size]
            t0 = time.perf_counter()
            images = pipe(list(range(seed + start, seed + start + len(chunk))), prompts=chunk, options=options,
                          batch_size=batch_size)
            total_time += time.perf_counter() - t0
            scores += [score(img, cap) for img, cap in zip(images, chunk)]
            done += len(chunk)
            if progress:
                progress(done)
        out[name] = asdict(_summarize(captions, scores))
        out[name]["failures"] = [c for c, s in zip(captions, scores) if not s.overall][:10]
    out["images_per_s"] = 2 * n / total_time
    return out
