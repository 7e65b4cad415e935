"""Scale of Fréchet distances in the generic feature net (``--features generic``), on CPU.

FD between pairs of image sets in the bundled ``generic`` features, so a reported FD can be
read against known points: photos vs photos (two disjoint halves of ``builtin:photos`` eval
crops: the floor for that set size), photos train vs eval split (other pixel regions),
shapes vs photos, digits vs photos, blurred photos vs photos, uniform noise vs photos; plus
the share of each set the domain check puts outside the net's domain.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/generic_features.py [--n 1000] [--out results.json]
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from genimage.data.builtin import load_builtin
from genimage.metrics.features import load_feature_net
from genimage.metrics.frechet import frechet_distance


def stack(ds) -> torch.Tensor:
    return torch.stack([ds[i]["image"] for i in range(len(ds))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="images per set")
    ap.add_argument("--features", default="generic")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    n = args.n
    net = load_feature_net(args.features)
    ref = stack(load_builtin("photos", split="eval", seed=11, length=2 * n))
    a, b = ref[:n], ref[n:]
    g = torch.Generator().manual_seed(0)
    sets = {
        "photos eval, other half": b,
        "photos train split": stack(load_builtin("photos", split="train", seed=12, length=n)),
        "photos blurred (3x3 box, twice)": F.avg_pool2d(F.avg_pool2d(b, 3, 1, 1, count_include_pad=False), 3, 1, 1,
                                                        count_include_pad=False),
        "shapes": stack(load_builtin("shapes", split="all", seed=2, length=n)),
        "digits (gray, 32 px)": F.interpolate(stack(load_builtin("digits", split="all"))[:n], size=32, mode="bilinear"),
        "uniform noise": torch.rand(n, 3, 32, 32, generator=g) * 2 - 1,
        "mean colour of each photo": b.mean((2, 3), keepdim=True).expand_as(b).contiguous(),
    }
    fa = net.features(a)
    rows = []
    for name, x in sets.items():
        f = net.features(x)
        dom = net.domain_check(x)  # features and the pixel statistic
        rows.append({"set": name, "n": len(x), "fd_vs_photos": round(frechet_distance(fa, f), 2),
                     "outside_domain": dom["outside"] if dom else None})
        print(f"| {name} | {len(x)} | {rows[-1]['fd_vs_photos']:.2f} | "
              f"{'-' if dom is None else format(dom['outside'], '.2f')} |", flush=True)
    own = net.domain_check(features=fa)
    print(f"reference: {n} builtin:photos eval crops (seed 11), outside domain {own['outside'] if own else '-'}; "
          f"features {net.source}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"features": net.source, "n": n, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
