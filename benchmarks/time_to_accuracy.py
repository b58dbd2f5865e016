"""Time to 99 % MNIST test accuracy: exigo's recipe against the classic pytorch/examples one.

Both train on the real MNIST training set (60,000 images) and are scored on its test set
(10,000) after every epoch, on the same device, in the same run. The clock counts training only
(not the scoring); the result is the training time and img/s up to the first epoch at or above
the target.

    exigo      exigo.models.training.fit: the default `cnn`, AdamW with one-cycle, batch 128, 5 epochs,
               uint8 tensors resident on the device, train.precision (auto: bf16 where native)
    examples   pytorch/examples mnist/main.py: its Net, Adadelta lr 1.0 with StepLR(0.7),
               batch 64, a torchvision DataLoader doing ToTensor + Normalize per image, 14 epochs

    python benchmarks/time_to_accuracy.py --data ../shared/data/mnist            # auto device
    python benchmarks/time_to_accuracy.py --data DIR --device cuda --batch-size 512 --lr 0.006
    python benchmarks/time_to_accuracy.py --data DIR --only exigo               # skip the baseline

`--data` is a folder with the four MNIST IDX files (.gz or not). Prints one line per epoch and
the ratio of the two times; writes .bench/time_to_accuracy.json.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from exigo.core.outputs import write_json
from exigo.core.params import ModelParams, TrainParams
from exigo.core.runtime import resolve_device, resolve_precision, set_seed
from exigo.data.idx import SPLIT_FILES, IdxFile, parse_idx
from exigo.data.splits import Split, to_input
from exigo.models.checkpoint import build_model
from exigo.models.training import fit, predict

MEAN, STD = 0.1307, 0.3081


def load_mnist(folder: Path) -> tuple[Split, Split]:
    """(train, test) from a folder of the four IDX files, gzipped or not."""
    arrays = {}
    for (split, kind), name in SPLIT_FILES.items():
        path = folder / name
        raw = (
            path.read_bytes() if path.exists() else (folder / name.removesuffix(".gz")).read_bytes()
        )
        payload = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        arrays[split, kind] = parse_idx(payload, IdxFile(name, split, kind), 10)
    return tuple(
        Split(
            torch.from_numpy(np.array(arrays[s, "images"])),
            torch.from_numpy(arrays[s, "labels"].astype(np.int64)),
        )
        for s in ("train", "test")
    )


def accuracy(model: nn.Module, test: Split, device: torch.device) -> float:
    logits = predict(model, test, 2000, device)
    return (logits.argmax(1) == test.labels).float().mean().item()


def run_exigo(train: Split, test: Split, device: torch.device, args) -> list[dict]:
    set_seed(0)
    model = build_model("cnn", ModelParams().settings, 10, MEAN, STD)
    cfg = TrainParams(
        epochs=args.epochs or 5,
        batch_size=args.batch_size or 128,
        lr=args.lr or TrainParams().lr,
        precision=args.precision,
        device=device.type,
    )
    rows: list[dict] = []

    def on_epoch(stats) -> None:
        rows.append({"epoch": stats.epoch, "seconds": stats.train_seconds,
                     "test_acc": accuracy(model, test, device)})  # fmt: skip
        print(
            f"  exigo epoch {stats.epoch}: {rows[-1]['seconds']:.2f} s, test acc {rows[-1]['test_acc']:.4f}"
        )

    # The validation split is not what is measured here: a small slice keeps fit() honest.
    fit(
        model,
        train,
        Split(test.images[:1000], test.labels[:1000]),
        cfg,
        0,
        device,
        on_epoch=on_epoch,
    )
    return rows


class ExamplesNet(nn.Module):
    """pytorch/examples mnist/main.py's Net, as published."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def run_examples(train: Split, test: Split, device: torch.device, args) -> list[dict]:
    """The examples' loop: DataLoader over a per-image PIL dataset (torchvision's MNIST path)."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class Digits(Dataset):
        def __init__(self, split: Split) -> None:
            self.split = split
            self.tf = transforms.Compose(
                [transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))]
            )

        def __len__(self) -> int:
            return len(self.split)

        def __getitem__(self, i: int):
            return self.tf(Image.fromarray(self.split.images[i].numpy(), mode="L")), int(
                self.split.labels[i]
            )

    torch.manual_seed(1)  # the examples' default seed
    model = ExamplesNet().to(device)
    loader = DataLoader(Digits(train), batch_size=64, shuffle=True,
                        num_workers=1 if device.type == "cuda" else 0,
                        pin_memory=device.type == "cuda")  # fmt: skip
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    test_in = Split(test.images, test.labels)
    rows, seconds = [], 0.0
    for epoch in range(1, 15):
        model.train()
        start = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        sched.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model((to_input(test_in.images[i : i + 2000]).to(device) - MEAN) / STD).argmax(1).cpu()
                 == test_in.labels[i : i + 2000]).sum().item()
                for i in range(0, len(test_in), 2000)
            )  # fmt: skip
        rows.append({"epoch": epoch, "seconds": seconds, "test_acc": correct / len(test_in)})
        print(f"  examples epoch {epoch}: {seconds:.2f} s, test acc {rows[-1]['test_acc']:.4f}")
        if rows[-1]["test_acc"] >= args.target:
            break
    return rows


def reached(rows: list[dict], target: float, n_train: int) -> dict:
    hit = next((r for r in rows if r["test_acc"] >= target), None)
    if hit is None:
        return {"reached": False, "best_test_acc": max(r["test_acc"] for r in rows)}
    return {"reached": True, "epoch": hit["epoch"], "seconds": hit["seconds"],
            "img_per_s": hit["epoch"] * n_train / hit["seconds"], "test_acc": hit["test_acc"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", required=True, type=Path, help="folder with the four MNIST IDX files"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--only", choices=("exigo", "examples"))
    parser.add_argument("--epochs", type=int, help="exigo: train.epochs (default 5)")
    parser.add_argument("--batch-size", type=int, help="exigo: train.batch_size (default 128)")
    parser.add_argument("--lr", type=float, help="exigo: train.lr (default 0.003)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--out", default=".bench/time_to_accuracy.json")
    args = parser.parse_args()

    device = resolve_device(args.device)
    train, test = load_mnist(args.data)
    dtype = resolve_precision(args.precision, device)
    print(f"{len(train):,} train / {len(test):,} test images on {device} "
          f"({'bf16' if dtype else 'fp32'} for exigo); target {args.target:.2%}")  # fmt: skip
    result = {
        "device": str(device),
        "target": args.target,
        "precision": "bf16" if dtype else "fp32",
    }
    for name, fn in (("exigo", run_exigo), ("examples", run_examples)):
        if args.only and args.only != name:
            continue
        rows = fn(train, test, device, args)
        result[name] = {"epochs": rows, **reached(rows, args.target, len(train))}
    write_json(args.out, result)
    for name in ("exigo", "examples"):
        r = result.get(name)
        if r:
            print(f"{name:>8}: " + (f"{r['seconds']:.1f} s to {r['test_acc']:.2%} (epoch {r['epoch']}), "
                                    f"{r['img_per_s']:,.0f} img/s" if r["reached"]
                                    else f"did not reach the target (best {r['best_test_acc']:.2%})"))  # fmt: skip
    if result.get("exigo", {}).get("reached") and result.get("examples", {}).get("reached"):
        print(
            f"exigo reaches {args.target:.0%} {result['examples']['seconds'] / result['exigo']['seconds']:.1f}x sooner"
        )


if __name__ == "__main__":
    main()
