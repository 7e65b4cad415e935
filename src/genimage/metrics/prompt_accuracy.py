"""Prompt accuracy on the ``shapes`` benchmark (a GenEval-style check, Ghosh et al. 2023).

Sample captions from the shapes grammar (seen compositions from the train split, held-out
colour–shape pairs from the eval split), generate one image per caption, and score each
with the dataset's analyzer (:func:`genimage.data.shapes_analyzer.score`): object count,
colour–shape binding, spatial relation(s), and all three together ("overall"). Position is
reported over the captions with a relation (two- and three-object captions; for three
objects both relations must hold in one assignment of detections).

Each split's report also breaks the numbers down by the number of objects in the caption
(``by_objects``: ``"1"``, ``"2"``, ``"3"``), with each relation of a three-object caption
(``relation1``: A rel1 B, ``relation2``: B rel2 C) checked on its own. With
``three_object_share=0`` (the default) the prompts are exactly the original one/two-object
prompts, so the top-level numbers of a report are unchanged.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from genimage.data.shapes import parse_caption, sample_captions
from genimage.data.shapes_analyzer import score
from genimage.errors import GenimageError


@dataclass
class SplitAccuracy:
    """Accuracy on one split.

    Attributes:
        n: Number of prompts.
        overall: Fraction with count, binding and position all correct.
        count: Fraction with the right number of objects.
        binding: Fraction where every caption object's colour–shape pair is present.
        position: Fraction of prompts with a relation whose relation(s) hold.
        n_relations: Number of prompts with a relation (two or three objects).
    """

    n: int
    overall: float
    count: float
    binding: float
    position: float
    n_relations: int


@dataclass
class ObjectCountAccuracy:
    """Accuracy on the prompts of one split that name a given number of objects.

    Attributes:
        objects: Number of objects the prompts name (1, 2 or 3).
        n: Number of such prompts.
        overall: Fraction with count, binding and position all correct.
        count: Fraction with the right number of objects.
        binding: Fraction with every colour–shape pair present.
        position: Fraction with all relations holding in one assignment (``None`` for 1 object).
        relation1: Fraction whose first relation holds on its own (``None`` for 1 object).
        relation2: Fraction whose second relation holds on its own (``None`` below 3 objects).
    """

    objects: int
    n: int
    overall: float
    count: float
    binding: float
    position: float | None
    relation1: float | None
    relation2: float | None


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


def summarize_by_objects(scores: list) -> dict[str, dict[str, Any]]:
    """Per number of caption objects, the :class:`ObjectCountAccuracy` as a dict.

    Args:
        scores: :class:`~genimage.data.shapes_analyzer.ShapesScore` results.

    Returns:
        ``{"1": {...}, "2": {...}, "3": {...}}``, only for the counts that occur.
    """
    groups: dict[int, list] = {}
    for s in scores:
        groups.setdefault(len(s.spec.objects), []).append(s)
    out = {}
    for k in sorted(groups):
        group, m = groups[k], len(groups[k])

        def frac(values) -> float:
            return sum(bool(v) for v in values) / m

        out[str(k)] = asdict(ObjectCountAccuracy(
            objects=k,
            n=m,
            overall=frac(s.overall for s in group),
            count=frac(s.count_ok for s in group),
            binding=frac(s.binding_ok for s in group),
            position=frac(s.position_ok for s in group) if k >= 2 else None,
            relation1=frac(s.relations_ok[0] for s in group) if k >= 2 else None,
            relation2=frac(s.relations_ok[1] for s in group) if k >= 3 else None,
        ))
    return out


def evaluate_prompts(pipe, n: int = 500, seed: int = 0, options=None, batch_size: int = 64,
                     progress: Callable[[int], None] | None = None,
                     three_object_share: float = 0.0) -> dict[str, Any]:
    """Generate and score ``n`` seen and ``n`` held-out prompts.

    Args:
        pipe: A :class:`~genimage.pipeline.Pipeline` of a text-conditional shapes model.
        n: Prompts per split.
        seed: Seed of the prompts; image ``i`` of a split uses seed ``seed + i``.
        options: Sampling options (default: the model's).
        batch_size: Images per network batch.
        progress: Called with the number of images finished so far.
        three_object_share: Share of three-object prompts (see
            :func:`genimage.data.shapes.sample_captions`): 0 (default) gives the original
            one/two-object prompts, 1 only three-object prompts.

    Returns:
        ``{"seen": SplitAccuracy, "held_out": SplitAccuracy, "images_per_s": float, ...}``
        as plain dicts, each split with ``by_objects`` (:func:`summarize_by_objects`) and a
        few failure examples.
    """
    if not 0.0 <= three_object_share <= 1.0:
        raise GenimageError(f"three_object_share must be in [0, 1], got {three_object_share}")
    options = options or pipe.options()
    out: dict[str, Any] = {"n_per_split": n, "seed": seed, "three_object_share": three_object_share,
                           "sampling": asdict(options)}
    done = 0
    total_time = 0.0
    for name, split in (("seen", "train"), ("held_out", "eval")):
        captions = sample_captions(n, seed=seed, split=split, three_object_share=three_object_share)
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
        out[name]["by_objects"] = summarize_by_objects(scores)
        out[name]["failures"] = [c for c, s in zip(captions, scores) if not s.overall][:10]
    out["images_per_s"] = 2 * n / total_time
    return out
