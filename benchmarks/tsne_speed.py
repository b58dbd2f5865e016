"""Projection speed: exigo's t-SNE (openTSNE, FFT gradients, after PCA) against scikit-learn's
Barnes-Hut TSNE on the same points, in the same run.

    python benchmarks/tsne_speed.py                    # 10,000 synthetic 128-d points, 10 clusters
    python benchmarks/tsne_speed.py --features f.npy   # your own (N, D) features, e.g. from embed

Prints seconds for each and the ratio; also trustworthiness and 2-D k-NN accuracy of both maps, so
a faster map that is worse shows up. Target: <= 30 s for 10,000 points on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA

from exigo.core.outputs import write_json
from exigo.embed.projection import knn_accuracy, project


def clustered(n: int, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    centers = rng.normal(0, 3, size=(10, dims))
    return (centers[labels] + rng.normal(0, 1, size=(n, dims))).astype(np.float32), labels


def sklearn_tsne(x: np.ndarray, seed: int, perplexity: float, pca_dims: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(pca_dims, x.shape[1]), random_state=seed).fit_transform(x)
    return TSNE(perplexity=perplexity, init="pca", random_state=seed, n_jobs=1).fit_transform(
        reduced
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--dims", type=int, default=128)
    ap.add_argument("--features", help="an .npy file of (N, D) features instead of synthetic ones")
    ap.add_argument("--labels", help="an .npy file of (N,) labels for --features")
    ap.add_argument("--skip-sklearn", action="store_true", help="time exigo's projection only")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    if args.features:
        x = np.load(args.features).astype(np.float32)
        labels = np.load(args.labels) if args.labels else np.zeros(len(x), dtype=int)
    else:
        x, labels = clustered(args.points, args.dims, seed=0)
    print(f"{len(x):,} points x {x.shape[1]} dims")
    results: dict = {"points": len(x), "dims": x.shape[1]}
    runs = [("exigo (openTSNE)", lambda: project(x, "tsne", seed=0))]
    if not args.skip_sklearn:
        runs.append(("scikit-learn TSNE", lambda: sklearn_tsne(x, 0, 30.0, 50)))
    for name, fn in runs:
        start = time.perf_counter()
        low = fn()
        seconds = time.perf_counter() - start
        from sklearn.manifold import trustworthiness

        sub = np.random.default_rng(0).choice(len(x), min(len(x), 3000), replace=False)
        trust = trustworthiness(x[sub], low[sub], n_neighbors=10)
        knn = knn_accuracy(low, labels, 10, 5, 0) if len(set(labels)) > 1 else float("nan")
        results[name] = {"seconds": seconds, "trustworthiness_3k": trust, "knn_acc_2d": knn}
        print(f"{name:<20} {seconds:7.1f} s   trustworthiness {trust:.3f}   k-NN acc 2-D {knn:.3f}")
    if not args.skip_sklearn:
        ratio = results["scikit-learn TSNE"]["seconds"] / results["exigo (openTSNE)"]["seconds"]
        results["speedup"] = ratio
        print(f"exigo is {ratio:.1f}x faster than scikit-learn on these points")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
