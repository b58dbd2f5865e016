"""Training throughput: exigo's in-memory path against a torchvision DataLoader baseline.

Same model, same optimizer, same images, same process. The baseline is the classic torchvision
recipe the original tool used: a Dataset that turns each uint8 image into a PIL image, then
ToTensor + Normalize per item, batched by a DataLoader (batch 32). exigo keeps the split as one
uint8 tensor on the device and slices batches from it (exigo.models.training.fit).

    python benchmarks/train_throughput.py                 # CPU or GPU, whichever `auto` finds
    python benchmarks/train_throughput.py --device cpu --images 6000

Prints images/s for each path and the ratio; absolute numbers depend on the machine, the ratio is
the figure to compare (target: >= 10x on CPU).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from exigo.core.outputs import write_json
from exigo.core.params import ModelParams, TrainParams
from exigo.core.registry import MODELS
from exigo.core.runtime import resolve_device, set_seed
from exigo.data.sources.mnist_sample import load_mnist_sample
from exigo.data.splits import Split
from exigo.models.checkpoint import build_model
from exigo.models.training import fit, make_optimizer


class PILDigits(Dataset):
    """torchvision.datasets.MNIST's __getitem__: per item, uint8 -> PIL -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i].numpy(), mode="L")
        return self.transform(img), int(self.labels[i])


def new_model(name: str, device: torch.device):
    set_seed(0)
    return build_model(name, ModelParams(name=name).settings, 10, 0.0, 1.0).to(device)


def baseline(
    name: str, split: Split, n_images: int, batch_size: int, device: torch.device, workers: int
) -> float:
    """img/s of the DataLoader + PIL path (Normalize folded into the transform, model's own
    normalisation set to identity, so both paths feed the network the same numbers)."""
    model = new_model(name, device).train()
    opt = make_optimizer(model, TrainParams())
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.0,), (1.0,))])
    loader = DataLoader(
        PILDigits(split.images, split.labels, tf),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )
    seen, start = 0, None
    while seen < n_images:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if start is None:  # the first batch warms up kernels and allocators
                start, seen = time.perf_counter(), 0
                continue
            seen += len(y)
            if seen >= n_images:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def in_memory(
    name: str, split: Split, val: Split, batch_size: int, device: torch.device, epochs: int
) -> float:
    """img/s of exigo's training loop (fit), training time only."""
    model = new_model(name, device)
    cfg = TrainParams(epochs=epochs, batch_size=batch_size)
    result = fit(model, split, val, cfg, seed=0, device=device)
    return result.images_per_second


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=10_000, help="images per timed pass")
    ap.add_argument(
        "--batch-size", type=int, default=TrainParams().batch_size, help="exigo's batch"
    )
    ap.add_argument("--baseline-batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the baseline")
    ap.add_argument(
        "--models", nargs="+", default=list(MODELS.names()), choices=list(MODELS.names())
    )
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    device = resolve_device(args.device)
    images, labels = load_mnist_sample()  # 5,000 real MNIST digits, offline
    reps = max(1, -(-args.images // len(labels)))
    split = Split(
        torch.from_numpy(np.tile(images, (reps, 1, 1))), torch.from_numpy(np.tile(labels, reps))
    )
    val = Split(split.images[:256], split.labels[:256])
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    results: dict = {"device": str(device), "threads": torch.get_num_threads(), "models": {}}
    epochs = 3 if device.type == "cuda" else 1
    for name in args.models:
        base = baseline(name, split, args.images, args.baseline_batch_size, device, args.workers)
        same = in_memory(name, split, val, args.baseline_batch_size, device, epochs)
        ours = in_memory(name, split, val, args.batch_size, device, epochs)
        results["models"][name] = {
            "dataloader_pil": base,
            "in_memory_same_batch": same,
            "in_memory": ours,
            "ratio": ours / base,
            "ratio_same_batch": same / base,
        }
        print(f"model {name}:")
        for label, value in [
            (f"DataLoader + PIL per item, batch {args.baseline_batch_size}", base),
            (f"in-memory tensors, batch {args.baseline_batch_size}", same),
            (f"in-memory tensors, batch {args.batch_size} (default)", ours),
        ]:
            print(f"  {label:<46} {value:>10,.0f} img/s  {value / base:6.1f}x")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
