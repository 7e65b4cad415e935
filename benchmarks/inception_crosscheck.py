"""genimage's FID Inception-v3 against pytorch-fid's and torch-fidelity's, on random weights.

The published ``pt_inception-2015-12-05-6726825d.pth`` is not on this machine and cannot be
downloaded, so this checks everything except those bytes: one seeded random state_dict of
the FID layout (:func:`genimage.metrics.inception_net.random_fid_state`) is saved as a
``.pth`` and loaded, strictly, by all three implementations, which then see the same 8-bit
images. pytorch-fid loads its weights with ``load_state_dict_from_url`` (patched here to
return the random file); torch-fidelity takes ``feature_extractor_weights_path``.

* ``input_mode="pytorch-fid"`` is compared with pytorch-fid's ``InceptionV3([3])``
  (its defaults: resize + normalise the input, the FID blocks);
* ``input_mode="tensorflow"`` is compared with torch-fidelity's
  ``FeatureExtractorInceptionV3`` (TensorFlow-1 resize, ``(x - 128) / 128``), the extractor
  behind torchmetrics' FID and KID.

It also reports the Fréchet distance between two image sets in each implementation's
features, and with ``--write-reference FILE`` it stores the reference features that
``tests/metrics/test_inception.py`` checks genimage against on every CI run.

Needs a separate environment with torchvision (which must not sit beside genimage's torch
2.13 CPU build): ``python -m venv X && X/bin/pip install torch==2.14.1 torchvision==0.29.1
scipy pytorch-fid==0.3.0 torch-fidelity==0.4.0``, then

    PYTHONPATH=src X/bin/python benchmarks/inception_crosscheck.py [--write-reference FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from genimage.metrics.frechet import frechet_distance
from genimage.metrics.inception_net import FIDInceptionV3, load_fid_state_dict, random_fid_state

SIZES = (8, 32, 64, 299)


def test_images(size: int, n: int, seed: int) -> torch.Tensor:
    """``(n, 3, size, size)`` uint8: smooth random blobs plus noise, so resizing matters."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 3, 4, 4), dtype=np.float32)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bicubic",
                                             align_corners=False).numpy()
    noisy = smooth * 200 + 28 + rng.normal(0, 12, smooth.shape)
    return torch.from_numpy(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def relative_max_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("-n", type=int, default=4, help="images per size for the feature comparison")
    ap.add_argument("--fd-n", type=int, default=64, help="images per set for the Fréchet-distance comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write-reference", type=Path, help="store images + reference features (safetensors)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    try:
        import pytorch_fid.inception as pytorch_fid_inception
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as e:
        sys.exit(f"error: {e}; this benchmark needs pytorch-fid and torch-fidelity (see the module docstring)")

    state = random_fid_state(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random-inception.pth"
        torch.save(state, path)
        pytorch_fid_inception.load_state_dict_from_url = lambda *a, **k: torch.load(path, weights_only=True)
        pfid = pytorch_fid_inception.InceptionV3([3]).eval()
        fidelity = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                               feature_extractor_weights_path=str(path)).eval()
    ours = {m: load_fid_state_dict(FIDInceptionV3(m), state).eval() for m in ("tensorflow", "pytorch-fid")}

    def features(impl: str, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if impl == "pytorch-fid":
                return pfid(images.float() / 255)[0].flatten(1)
            if impl == "torch-fidelity":
                return fidelity(images)[0]
            return ours[impl.split(":")[1]](images.float())

    print(f"random FID-layout weights, seed {args.seed}; torch {torch.__version__}")
    print("| image size | genimage tensorflow vs torch-fidelity | genimage pytorch-fid vs pytorch-fid "
          "| torch-fidelity vs pytorch-fid (the tools' own gap) | feature scale (mean abs) |")
    print("|---|---|---|---|---|")
    reference: dict[str, torch.Tensor] = {}
    for size in SIZES:
        images = test_images(size, args.n, seed=size)
        f = {k: features(k, images) for k in ("ours:tensorflow", "ours:pytorch-fid", "torch-fidelity", "pytorch-fid")}
        print(f"| {size} | {relative_max_error(f['ours:tensorflow'], f['torch-fidelity']):.1e} "
              f"| {relative_max_error(f['ours:pytorch-fid'], f['pytorch-fid']):.1e} "
              f"| {relative_max_error(f['torch-fidelity'], f['pytorch-fid']):.1e} "
              f"| {f['pytorch-fid'].abs().mean():.3f} |")
        if size != 299:  # 299-px images would make the reference file large; 8-64 px cover the resize
            reference[f"images_{size}"] = images
            reference[f"torch_fidelity_{size}"] = f["torch-fidelity"].contiguous()
            reference[f"pytorch_fid_{size}"] = f["pytorch-fid"].contiguous()

    print(f"\nFréchet distance, two sets of {args.fd_n} 32-px images (seeds 1 and 2), in each implementation's features:")
    a, b = test_images(32, args.fd_n, seed=1), test_images(32, args.fd_n, seed=2)
    print("| features | FD |")
    print("|---|---|")
    for impl in ("ours:tensorflow", "torch-fidelity", "ours:pytorch-fid", "pytorch-fid"):
        fd = frechet_distance(features(impl, a).double(), features(impl, b).double())
        print(f"| {impl.replace('ours:', 'genimage ')} | {fd:.6f} |")

    if args.write_reference:
        from safetensors.torch import save_file

        args.write_reference.parent.mkdir(parents=True, exist_ok=True)
        save_file(reference, str(args.write_reference), metadata={
            "weights": f"genimage.metrics.inception_net.random_fid_state({args.seed})",
            "made_by": "benchmarks/inception_crosscheck.py", "pytorch_fid": "0.3.0", "torch_fidelity": "0.4.0"})
        print(f"\nwrote {args.write_reference} ({args.write_reference.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
