"""Does a real-vs-generated detector trained on one model family find the others? (issue 18, item 5)

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/detector_generalization.py \
        --model gan=/tmp/prov_runs/gan --model vae=/tmp/prov_runs/vae \
        --model normalizing-flow=/tmp/prov_runs/nf --model reflow=/tmp/prov_runs/reflow

Domain: 8x8 digits. The families: ``diffusion`` (bundled ``digits``), ``consistency`` (bundled
``digits-2step``) and the tiny runs of ``benchmarks/train_detector_families.sh`` (GAN, VAE,
normalizing flow, reflow) given with ``--model FAMILY=FOLDER``. Data per family, all with
labels ``seed mod 10`` and each model's default sampling: 1,200 training samples (seeds
0-1,199), 300 validation samples (1,200-1,499), 297 test samples (100,000-100,296). Real:
the digits train split, 1,200 for training and 300 for validation, and the 297 eval-split
digits as the test negatives.

Storage: the real digits have 17 grey levels (0..16). A generated image saved as 8-bit has
off-grid values, which a detector can learn instead of the generator (the format bias of
Grommelt et al. 2024, "Fake or JPEG?"). ``--levels 17`` (default) snaps every generated image to
the real images' 17 levels, so only the content differs; ``--levels 256`` keeps 8 bits.

Protocols: ``one`` trains on real vs one family and tests on real-eval vs every family;
``lofo`` (leave one family out) trains on real vs the other five families (240 training and 60
validation samples of each, so the same count) and tests on the one left out.

Detectors (``--methods``):

* ``cnn``: :class:`~genimage.metrics.features.SmallCNN` (widths 32, 64) on the pixels, as the
  shipped detector (``scripts/train_detectors.py``);
* ``cnn+aug``: the same with Wang et al. (2020, "CNN-generated images are surprisingly easy to
  spot... for now") augmentation: Gaussian blur (p = 0.5, sigma ~ U[0.2, 1] px: their U[0, 3]
  at 256 px would erase an 8 px digit) and JPEG (p = 0.5, quality ~ U[30, 100]), training
  only;
* ``fft``: the same CNN on two channels, the pixels and the centred log-magnitude spectrum
  (``log(1 + |FFT2(x)|)``, standardised), after frequency-domain detectors (Frank et al. 2020,
  "Leveraging frequency analysis for deep fake image recognition"); ``fft+aug`` adds the
  augmentation;
* ``frozen``: the bundled digits feature net (``genimage-digits-cnn``, trained to classify real
  digits, never on generated ones) frozen, with a logistic-regression probe on its 128
  penultimate features, after Ojha et al. (2023, "Towards universal fake image detectors that
  generalize across generative models"), which probes frozen CLIP features;
* ``frozen+fft``: that probe on the frozen features concatenated with the standardised
  log-spectrum;
* ``frozen+knn``: gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``) on
  the frozen features plus six distances to the 1,200 real training digits (log distance to
  the 1st, 5th and 20th nearest, in pixels and in the frozen features; a real training image
  leaves itself out). Small generators sit too close to their training set (memorisation) or
  too far from it, in either direction, which a linear probe cannot express;
* ``cnn+align``: the ``cnn`` trained with aligned fakes as well (Rajan et al. 2025, "On the
  effectiveness of dataset alignment for fake image detection"): the real training digits
  re-made by each training family that can re-make an image (diffusion, consistency and reflow
  by their own img2img at strengths 0.25 / 0.5 / 0.75, the VAE by encoding and decoding; a GAN
  has no encoder and a flow's reconstruction is exact), so a fake and a real share their
  content and only the generator's trace tells them apart. Only families trained on are used,
  never the one left out;
* ``cnn+ens``: the average logit of ``--ensemble`` ``cnn`` detectors trained from different
  seeds (one detector, scored once);
* ``denoise+knn``: one-class evidence from models of the real digits only, with boosted trees
  on top: the bundled ``digits`` diffusion model's denoising error (unconditional, 8 fixed
  noise draws) at noise levels :data:`DENOISE_T` (a per-image likelihood proxy, as the ELBO is
  a weighted sum of them; Ho et al. 2020 eq. 12; used for detection by Ricker et al. 2024,
  "AEROBLADE", with an autoencoder's error instead) and the six distances of
  ``frozen+knn``. The diffusion column is not a fair held-out test here: the model read is the
  one that made those samples;
* ``cnn+denoise``: late fusion of ``cnn`` and ``denoise+knn``: each detector's score in units
  of its spread on the real validation digits (minus their mean), averaged;
* ``grid``: a logistic regression on one hand-made number, the mean distance of the pixels
  from the real digits' 17-level grid: the storage cue alone (with ``--levels 17`` it is 0 for
  every image, so chance).

Scores: average precision (generated = positive) on 297 real-eval vs 297 test samples, and
accuracy at the threshold calibrated on the training family's validation split (the
threshold that maximises balanced accuracy there). Each trained detector is trained with
``--seeds`` seeds (default 2; batch 256, ``--epochs`` 40, AdamW 3e-3 cosine) and the scores are
averaged. Samples are cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from genimage.data.builtin import load_builtin
from genimage.metrics.features import FeatureNetConfig, SmallCNN, load_feature_net

BUNDLED = {"diffusion": "digits", "consistency": "digits-2step"}
ORDER = ["gan", "vae", "normalizing-flow", "diffusion", "consistency", "reflow"]
METHODS = ["cnn", "cnn+aug", "fft", "fft+aug", "frozen", "frozen+fft", "frozen+knn", "cnn+align", "cnn+ens",
           "denoise+knn", "cnn+denoise", "grid"]
RECONSTRUCTS = {"vae", "diffusion", "consistency", "reflow"}  # families that can re-make a given image
ALIGN_STRENGTHS = (0.25, 0.5, 0.75)
DENOISE_T = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
N_TRAIN, N_VAL, N_TEST, TEST_SEED0 = 1200, 300, 297, 100_000


def snap(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Quantise ``[-1, 1]`` images to ``levels`` equally spaced values (17: the digits' 0..16)."""
    q = levels - 1
    return ((x.clamp(-1, 1) + 1) * q / 2).round() * 2 / q - 1


def family_samples(model: str, cache: Path) -> torch.Tensor:
    """Training+validation (seeds 0..1499) then test (100,000..100,296) samples of ``model``, 8-bit."""
    from genimage.families.io import load_generator
    from genimage.samplers.noise import generators_for_seeds

    path = cache / (Path(model).name + ".pt")
    if path.is_file():
        return torch.load(path, weights_only=True)
    gen = load_generator(model).model
    seeds = list(range(N_TRAIN + N_VAL)) + list(range(TEST_SEED0, TEST_SEED0 + N_TEST))
    t0 = time.perf_counter()
    with torch.no_grad():
        out = torch.cat([gen.sample(len(part), [s % 10 for s in part], generators_for_seeds(part)).float()
                         for part in (seeds[i:i + 300] for i in range(0, len(seeds), 300))])
    out = snap(out, 256)
    print(f"{model}: {len(seeds)} samples in {time.perf_counter() - t0:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def aligned_reconstructions(model: str, family: str, real: torch.Tensor, labels: list[int],
                             cache: Path) -> torch.Tensor:
    """``real`` re-made by ``model`` (``cnn+align``): img2img at :data:`ALIGN_STRENGTHS` (a third
    of the images each, with their own digit's label) or, for a VAE, its decoded posterior mean; 8-bit."""
    path = cache / f"{Path(model).name}-aligned-{len(real)}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        if family == "vae":
            from genimage.families.io import load_generator

            vae = load_generator(model).model
            cond = torch.tensor(labels)
            mean, _ = vae.encode(real, cond)
            out = vae.decode(mean, cond)
        else:
            from genimage.editing.spec import EditSpec
            from genimage.pipeline import Pipeline

            pipe = Pipeline.from_pretrained(model)
            o = pipe.options()
            parts = torch.arange(len(real)) % len(ALIGN_STRENGTHS)
            out = torch.empty_like(real)
            for k, strength in enumerate(ALIGN_STRENGTHS):
                idx = (parts == k).nonzero()[:, 0]
                steps = max(o.steps, math.ceil(1 / strength))  # a 2-step consistency model: 4 steps at 0.25
                out[idx] = pipe([200_000 + int(i) for i in idx], labels=[labels[int(i)] for i in idx],
                                options=dataclasses.replace(o, steps=steps), edit=EditSpec(real[idx], strength),
                                batch_size=300).float()
    out = snap(out.float(), 256)
    print(f"{model}: {len(real)} aligned reconstructions in {time.perf_counter() - t0:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def blur_jpeg(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Wang et al. (2020) augmentation of a ``(N, 1, 8, 8)`` batch: blur, then JPEG, each with p = 0.5.

    Blur: a 5x5 Gaussian, sigma ~ U[0.2, 1] per image (one grouped convolution, edges
    replicated). JPEG: one quality ~ U[30, 100] per batch; the chosen 8x8 images are tiled
    into one greyscale mosaic and encoded once, which equals encoding each alone because an
    8x8 image is exactly one JPEG block (greyscale, so no chroma subsampling).
    """
    n, _, h, w = x.shape
    out = x.clone()
    u = torch.rand(n, 3, generator=g)
    blur = u[:, 0] < 0.5
    if blur.any():
        sigma = 0.2 + 0.8 * u[blur, 1]
        r = torch.arange(-2, 3, dtype=torch.float32)
        k1 = torch.exp(-r[None] ** 2 / (2 * sigma[:, None] ** 2))
        k1 = k1 / k1.sum(1, keepdim=True)
        k = (k1[:, :, None] * k1[:, None, :])[:, None]  # (M, 1, 5, 5)
        xb = F.pad(out[blur].transpose(0, 1), (2, 2, 2, 2), mode="replicate")  # (1, M, h+4, w+4)
        out[blur] = F.conv2d(xb, k, groups=len(k)).transpose(0, 1)
    jpeg = u[:, 2] < 0.5
    if jpeg.any() and (h, w) == (8, 8):
        m = int(jpeg.sum())
        cols = math.ceil(math.sqrt(m))
        rows = math.ceil(m / cols)
        tiles = torch.zeros(rows * cols, h, w)
        tiles[:m] = out[jpeg, 0]
        mosaic = tiles.view(rows, cols, h, w).permute(0, 2, 1, 3).reshape(rows * h, cols * w)
        img = Image.fromarray(((mosaic.numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=30 + int(torch.randint(0, 71, (), generator=g)))
        back = torch.from_numpy(np.asarray(Image.open(buf), dtype=np.float32)) / 127.5 - 1
        back = back.view(rows, h, cols, w).permute(0, 2, 1, 3).reshape(rows * cols, h, w)
        out[jpeg, 0] = back[:m]
    return out


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Centred ``log(1 + |FFT2|)`` of ``(N, C, H, W)`` images, same shape."""
    return torch.log1p(torch.fft.fftshift(torch.fft.fft2(x).abs(), dim=(-2, -1)))


class Standardise:
    """Per-element mean/std of a training tensor, applied to others."""

    def __init__(self, x: torch.Tensor) -> None:
        self.mean, self.std = x.mean(0, keepdim=True), x.std(0, keepdim=True) + 1e-3

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def train_cnn(x: torch.Tensor, y: torch.Tensor, *, fft: bool, aug: bool, seed: int, epochs: int):
    """Train a SmallCNN real(0)/generated(1) classifier; returns ``score(images) -> (N,)`` logits."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    spec = Standardise(log_spectrum(x)) if fft else None

    def inputs(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images, spec(log_spectrum(images))], 1) if fft else images

    config = FeatureNetConfig(name="detector", in_channels=2 if fft else 1, image_size=x.shape[-1], widths=(32, 64),
                              feature_dim=64, num_outputs=2, multilabel=False, class_names=("real", "generated"),
                              source="benchmark detector")
    model = SmallCNN(config)
    weight = torch.tensor([len(y) / (2 * float((y == 0).sum())), len(y) / (2 * float((y == 1).sum()))])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    batch, step = 256, 0
    total = epochs * math.ceil(len(y) / batch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            xb = blur_jpeg(x[idx], g) if aug else x[idx]
            for group in opt.param_groups:
                group["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(inputs(xb)), y[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    model.eval()

    @torch.no_grad()
    def score(images: torch.Tensor) -> np.ndarray:
        z = model(inputs(images))
        return (z[:, 1] - z[:, 0]).numpy()

    return score


def train_probe(x: torch.Tensor, y: torch.Tensor, *, fft: bool, seed: int, net):
    """Logistic regression on frozen feature-net features (and the log-spectrum with ``fft``)."""
    spec = Standardise(log_spectrum(x).flatten(1)) if fft else None
    feats = Standardise(net.features(x))

    def inputs(images: torch.Tensor) -> np.ndarray:
        f = feats(net.features(images))
        return (torch.cat([f, spec(log_spectrum(images).flatten(1))], 1) if fft else f).numpy()

    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(inputs(x), y.numpy())
    return lambda images: clf.decision_function(inputs(images))


def knn_distances(images: torch.Tensor, ref: torch.Tensor, net, self_ref: bool = False) -> torch.Tensor:
    """``(N, 6)`` log distances of ``images`` to their 1st, 5th and 20th nearest ``ref`` image, in
    pixels and in ``net``'s features; ``self_ref``: ``images`` is ``ref`` (skip the zero self-distance)."""
    cols = []
    for a, b in ((images.flatten(1), ref.flatten(1)), (net.features(images), net.features(ref))):
        d = torch.cdist(a, b)
        if self_ref:
            d = d + torch.eye(len(a)) * 1e9
        v = d.topk(20, largest=False).values
        cols += [v[:, k].clamp(min=1e-3).log() for k in (0, 4, 19)]
    return torch.stack(cols, 1)


def train_knn(x: torch.Tensor, y: torch.Tensor, *, seed: int, net, ref: torch.Tensor, evidence):
    """Boosted trees on ``evidence(images)`` (``(N, F)``: the frozen features for ``frozen+knn``,
    :class:`DenoisingError` for ``denoise+knn``) and :func:`knn_distances` (``x[:len(ref)]`` is ``ref``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    def inputs(images: torch.Tensor, self_ref: bool = False) -> np.ndarray:
        return torch.cat([evidence(images), knn_distances(images, ref, net, self_ref)], 1).numpy()

    n = len(ref)
    feats = np.concatenate([inputs(x[:n], self_ref=True), inputs(x[n:])])
    clf = HistGradientBoostingClassifier(max_iter=200, class_weight="balanced", random_state=seed).fit(feats, y.numpy())
    return lambda images: clf.decision_function(inputs(images))


class DenoisingError:
    """``(N, len(DENOISE_T))`` log mean squared error of the bundled ``digits`` model's ``x0``
    prediction from ``x_t = alpha_t x + sigma_t eps``, averaged over ``draws`` fixed noises (the
    same for every image, so an image's features do not depend on its batch; memoised per image)."""

    def __init__(self, draws: int = 8) -> None:
        from genimage.pipeline import Pipeline

        self.pipe = Pipeline.from_pretrained("digits")
        self.noise = torch.randn((draws, 1, 8, 8), generator=torch.Generator().manual_seed(0))
        self.memo: dict[bytes, torch.Tensor] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        keys = [row.numpy().tobytes() for row in images]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        if todo:
            for i, f in zip(todo, self._features(images[todo])):
                self.memo[keys[i]] = f
        return torch.stack([self.memo[k] for k in keys])

    @torch.no_grad()
    def _features(self, images: torch.Tensor) -> torch.Tensor:
        from genimage.paths.conversions import PathCoefficients

        model = self.pipe.loaded.denoiser
        n = len(images)
        cond = self.pipe.conditioner(labels=[None] * n, batch=n)
        cols = []
        for t in DENOISE_T:
            c = PathCoefficients.at(model.path, torch.tensor(t), ndim=4)
            err = torch.zeros(n)
            for eps in self.noise:
                pred = model(float(c.alpha) * images + float(c.sigma) * eps, torch.full((n,), t), cond)
                err += ((pred.x0.float() - images) ** 2).flatten(1).mean(1) / len(self.noise)
            cols.append(err.clamp(min=1e-6).log())
        return torch.stack(cols, 1)


def grid_distance(images: torch.Tensor) -> torch.Tensor:
    """``(N, 1)`` mean distance of the pixels from the 17-level grid of the real digits, in levels."""
    v = (images.clamp(-1, 1) + 1) * 8
    return (v - v.round()).abs().flatten(1).mean(1, keepdim=True)


def train_grid(x: torch.Tensor, y: torch.Tensor, *, seed: int):
    clf = LogisticRegression(class_weight="balanced", random_state=seed).fit(grid_distance(x).numpy(), y.numpy())
    return lambda images: clf.decision_function(grid_distance(images).numpy())


def fused(scores: list, real_va: torch.Tensor):
    """The average of ``scores``' outputs, each standardised on the real validation images."""
    stats = [(float(np.mean(v)), float(np.std(v)) + 1e-6) for v in (f(real_va) for f in scores)]
    return lambda images: np.mean([(f(images) - m) / sd for f, (m, sd) in zip(scores, stats)], axis=0)


def calibrated_threshold(real_s: np.ndarray, fake_s: np.ndarray) -> float:
    """The score threshold maximising balanced accuracy on a validation pair."""
    cands = np.unique(np.concatenate([real_s, fake_s]))
    bal = [0.5 * ((real_s < t).mean() + (fake_s >= t).mean()) for t in cands]
    return float(cands[int(np.argmax(bal))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], metavar="FAMILY=FOLDER",
                    help="a trained model of a family not bundled (repeatable)")
    ap.add_argument("--levels", type=int, default=17, help="grey levels generated images are stored with (17 or 256)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--protocols", default="one,lofo")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--ensemble", type=int, default=3, help="detectors averaged by cnn+ens")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/genimage_detector_generalization"))
    ap.add_argument("--json", type=Path, help="write all scores here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = dict(BUNDLED)
    models.update(dict(m.split("=", 1) for m in args.model))
    families = [f for f in ORDER if f in models]
    train = list(load_builtin("digits", split="train"))
    real_all = torch.stack([d["image"] for d in train])
    real_tr, real_va = real_all[:N_TRAIN], real_all[N_TRAIN:N_TRAIN + N_VAL]
    data = load_builtin("digits", split="eval")
    real_te = torch.stack([data[i]["image"] for i in range(len(data))])
    fake = {}
    for f in families:
        s = snap(family_samples(models[f], args.cache), args.levels)
        fake[f] = (s[:N_TRAIN], s[N_TRAIN:N_TRAIN + N_VAL], s[N_TRAIN + N_VAL:])
    net = load_feature_net("digits")
    aligned = {}
    if "cnn+align" in args.methods.split(","):
        real_labels = [int(d["label"]) for d in train[:N_TRAIN + N_VAL]]
        for f in families:
            if f in RECONSTRUCTS:
                r = snap(aligned_reconstructions(models[f], f, torch.cat([real_tr, real_va]), real_labels,
                                                 args.cache), args.levels)
                aligned[f] = (r[:N_TRAIN], r[N_TRAIN:])
    denoiser = functools.cache(DenoisingError)  # built on first use, then shared (its memo too)
    results: dict = {"levels": args.levels, "families": families, "models": models}

    def fit(method: str, train_fams: list[str], seed: int):
        share_tr, share_va = N_TRAIN // len(train_fams), N_VAL // len(train_fams)
        fx = torch.cat([fake[f][0][:share_tr] for f in train_fams])
        fv = torch.cat([fake[f][1][:share_va] for f in train_fams])
        if method == "cnn+align":  # each re-making family re-makes its own share of the real digits
            makers = [f for f in train_fams if f in aligned]
            for j, f in enumerate(makers):
                a_tr, a_va = N_TRAIN // len(makers), N_VAL // len(makers)
                fx = torch.cat([fx, aligned[f][0][j * a_tr:(j + 1) * a_tr]])
                fv = torch.cat([fv, aligned[f][1][j * a_va:(j + 1) * a_va]])
        x = torch.cat([real_tr, fx])
        y = torch.cat([torch.zeros(len(real_tr), dtype=torch.long), torch.ones(len(fx), dtype=torch.long)])
        if method == "grid":
            score = train_grid(x, y, seed=seed)
        elif method == "frozen+knn":
            score = train_knn(x, y, seed=seed, net=net, ref=real_tr, evidence=net.features)
        elif method == "denoise+knn":
            score = train_knn(x, y, seed=seed, net=net, ref=real_tr, evidence=denoiser())
        elif method == "cnn+denoise":
            parts = [train_cnn(x, y, fft=False, aug=False, seed=seed, epochs=args.epochs),
                     train_knn(x, y, seed=seed, net=net, ref=real_tr, evidence=denoiser())]
            score = fused(parts, real_va)
        elif method.startswith("frozen"):
            score = train_probe(x, y, fft="fft" in method, seed=seed, net=net)
        elif method == "cnn+ens":
            members = [train_cnn(x, y, fft=False, aug=False, seed=100 * seed + k, epochs=args.epochs)
                       for k in range(args.ensemble)]

            def score(images: torch.Tensor) -> np.ndarray:
                return np.mean([m(images) for m in members], axis=0)
        else:
            score = train_cnn(x, y, fft=method.startswith("fft"), aug=method.endswith("aug"), seed=seed,
                              epochs=args.epochs)
        return score, calibrated_threshold(score(real_va), score(fv))

    def evaluate(score, thr: float, f: str) -> tuple[float, float]:
        rs, fs = score(real_te), score(fake[f][2])
        ap_ = average_precision_score([0] * len(rs) + [1] * len(fs), np.concatenate([rs, fs]))
        acc = 0.5 * ((rs < thr).mean() + (fs >= thr).mean())
        return float(ap_), float(acc)

    for method in args.methods.split(","):
        seeds = [0] if method.startswith(("frozen", "grid", "denoise")) else list(range(args.seeds))  # the probe is deterministic
        t0 = time.perf_counter()
        if "one" in args.protocols:
            table = {}
            for tf in families:
                runs = []
                for seed in seeds:
                    score, thr = fit(method, [tf], seed)
                    runs.append([evaluate(score, thr, f) for f in families])
                table[tf] = np.mean(runs, axis=0).tolist()  # [family][ap, acc]
            results.setdefault("one", {})[method] = table
        if "lofo" in args.protocols:
            table = {}
            for left in families:
                runs = []
                for seed in seeds:
                    score, thr = fit(method, [f for f in families if f != left], seed)
                    runs.append(evaluate(score, thr, left))
                table[left] = np.mean(runs, axis=0).tolist()
            results.setdefault("lofo", {})[method] = table
        print(f"{method}: {time.perf_counter() - t0:.0f} s", flush=True)
        print_tables(results, method, families)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print_summary(results, families)


def print_tables(results: dict, method: str, families: list[str]) -> None:
    if method in results.get("one", {}):
        t = results["one"][method]
        print(f"\n{method}, trained on one family (rows), AP / accuracy at the calibrated threshold on each (columns):")
        print("| trained on | " + " | ".join(families) + " | mean AP on the other five |")
        print("|---" * (len(families) + 2) + "|")
        for tf in families:
            cells = [f"{ap:.3f} / {acc:.2f}" for ap, acc in t[tf]]
            others = np.mean([t[tf][j][0] for j, f in enumerate(families) if f != tf])
            print(f"| {tf} | " + " | ".join(cells) + f" | {others:.3f} |")
    if method in results.get("lofo", {}):
        t = results["lofo"][method]
        print(f"\n{method}, leave one family out (trained on the other five): AP / accuracy")
        print("| " + " | ".join(families) + " | mean |")
        print("|---" * (len(families) + 1) + "|")
        print("| " + " | ".join(f"{t[f][0]:.3f} / {t[f][1]:.2f}" for f in families)
              + f" | {np.mean([t[f][0] for f in families]):.3f} / {np.mean([t[f][1] for f in families]):.2f} |",
              flush=True)


def print_summary(results: dict, families: list[str]) -> None:
    print(f"\nSummary (levels {results['levels']}): mean AP / accuracy on families not trained on")
    print("| method | one family -> the other five | leave one family out |")
    print("|---|---|---|")
    methods = list(results.get("one", results.get("lofo", {})))
    for m in methods:
        cells = []
        if m in results.get("one", {}):
            t = results["one"][m]
            pairs = [t[tf][j] for tf in families for j, f in enumerate(families) if f != tf]
            cells.append(f"{np.mean([p[0] for p in pairs]):.3f} / {np.mean([p[1] for p in pairs]):.2f}")
        else:
            cells.append("-")
        if m in results.get("lofo", {}):
            t = results["lofo"][m]
            cells.append(f"{np.mean([t[f][0] for f in families]):.3f} / {np.mean([t[f][1] for f in families]):.2f}")
        else:
            cells.append("-")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
