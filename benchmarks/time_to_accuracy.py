"""Time to accuracy: exigo's recipe against a classic one, on MNIST (99 %) or CIFAR-10 (94 %).

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

CIFAR-10 (`--dataset cifar10`; 50,000 train / 10,000 test 32x32 RGB images, target 94 %):

    exigo        the `resnet` entry (David Page's ResNet-9, "How to train your ResNet") in
                 exigo.models.training.fit with his recipe: SGD Nesterov momentum 0.9, lr 0.4
                 one-cycle, weight decay 5e-4, batch 512, 24 epochs, label smoothing 0.2,
                 augment crop_flip_cutout (random crops, flips and his 8x8 cutout) done batched
                 on the device, train.precision
    torchvision  torchvision's resnet18 with the CIFAR stem (3x3 conv at stride 1, no max-pool),
                 kuangliu/pytorch-cifar's main.py: SGD lr 0.1 momentum 0.9 weight decay 5e-4,
                 batch 128, a DataLoader (2 workers on a GPU) doing RandomCrop(32, padding 4) +
                 RandomHorizontalFlip + ToTensor + Normalize per PIL image, fp32; its 200-epoch
                 cosine schedule shortened to --baseline-epochs (30)

    python benchmarks/time_to_accuracy.py --dataset cifar10 --data DIR     # or EXIGO_CIFAR10=DIR

`--data` is the folder of the python-version archive (cifar-10-batches-py, or the folder that
holds it). The run needs a GPU: on a CPU (or with --throughput) it trains each recipe for two
epochs on --cpu-images random 32x32 RGB images instead and prints the second epoch's img/s;
writes .bench/time_to_accuracy_cifar10.json.
"""

from __future__ import annotations

import argparse
import gzip
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from exigo.core.outputs import write_json
from exigo.core.params import ModelParams, TrainParams
from exigo.core.registry import MODELS
from exigo.core.runtime import resolve_device, resolve_precision, set_seed
from exigo.data.idx import SPLIT_FILES, IdxFile, parse_idx
from exigo.data.splits import Split, to_input
from exigo.models.checkpoint import build_model
from exigo.models.training import fit, predict

MEAN, STD = 0.1307, 0.3081
# kuangliu/pytorch-cifar's per-channel normalisation, for both CIFAR-10 recipes
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
TARGETS = {"mnist": 0.99, "cifar10": 0.94}


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
            torch.from_numpy(np.array(arrays[s, "images"])).unsqueeze(1),  # (N, 1, 28, 28)
            torch.from_numpy(arrays[s, "labels"].astype(np.int64)),
        )
        for s in ("train", "test")
    )


def load_cifar10(folder: Path) -> tuple[Split, Split]:
    """(train, test) from the python-version archive's folder: five data batches and the test
    batch, each a pickled dict of (10000, 3072) uint8 rows and their labels."""
    if not (folder / "data_batch_1").exists():
        folder = folder / "cifar-10-batches-py"

    def read(names: list[str]) -> Split:
        images, labels = [], []
        for name in names:
            with open(folder / name, "rb") as f:  # the archive's own format (a local copy)
                batch = pickle.load(f, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(batch[b"labels"])
        return Split(torch.from_numpy(np.concatenate(images)), torch.tensor(labels))

    return read([f"data_batch_{i}" for i in range(1, 6)]), read(["test_batch"])


def accuracy(model: nn.Module, test: Split, device: torch.device) -> float:
    logits = predict(model, test, 2000, device)
    return (logits.argmax(1) == test.labels).float().mean().item()


def exigo_recipe(dataset: str, device: torch.device, args) -> tuple[nn.Module, TrainParams]:
    """exigo's model and train params for `dataset`, with the command line's overrides."""
    set_seed(0)
    if dataset == "mnist":
        model = build_model("cnn", ModelParams().settings, 10, MEAN, STD)
        recipe = {"epochs": 5, "batch_size": 128, "lr": TrainParams().lr}
    else:  # Page's ResNet-9 recipe (see the resnet entry's docstring)
        resnet = MODELS.get("resnet")
        model = build_model("resnet", resnet.parse(), 10, CIFAR_MEAN, CIFAR_STD, (3, 32, 32))
        recipe = {"epochs": 24, "batch_size": 512, "lr": 0.4, "optimizer": "sgd"}
        recipe |= {"momentum": 0.9, "weight_decay": 5e-4, "label_smoothing": 0.2}
        recipe |= {"augment": "crop_flip_cutout", "schedule": "onecycle"}
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    recipe |= {k: v for k, v in given.items() if v}
    return model, TrainParams(**recipe, precision=args.precision, device=device.type)


def run_exigo(train: Split, test: Split, device: torch.device, args) -> list[dict]:
    model, cfg = exigo_recipe(args.dataset, device, args)
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
    from torchvision import transforms

    torch.manual_seed(1)  # the examples' default seed
    model = ExamplesNet().to(device)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    loader = pil_loader(train, tf, batch_size=64, workers=1 if device.type == "cuda" else 0,
                        device=device)  # fmt: skip
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    return train_loader_recipe("examples", model, loader, opt, sched, F.nll_loss, test, 14,
                               (MEAN, STD), device, args.target)  # fmt: skip


def cifar_resnet18() -> nn.Module:
    """torchvision's resnet18 with the CIFAR stem: a 3x3 conv at stride 1, no max-pool."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def torchvision_recipe(device: torch.device, epochs: int):
    """kuangliu/pytorch-cifar main.py's model, optimizer, schedule and per-image transforms."""
    from torchvision import transforms

    torch.manual_seed(0)
    model = cifar_resnet18().to(device)
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
    ])  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return model, tf, opt, sched


def run_torchvision(train: Split, test: Split, device: torch.device, args) -> list[dict]:
    model, tf, opt, sched = torchvision_recipe(device, args.baseline_epochs)
    loader = pil_loader(train, tf, 128, 2 if device.type == "cuda" else 0, device)
    return train_loader_recipe("torchvision", model, loader, opt, sched, F.cross_entropy, test,
                               args.baseline_epochs, (CIFAR_MEAN, CIFAR_STD), device,
                               args.target)  # fmt: skip


def pil_loader(split: Split, tf, batch_size: int, workers: int, device: torch.device):
    """A shuffled DataLoader over `split` that turns each image into a PIL image, then `tf`:
    torchvision's datasets' path (MNIST, CIFAR10)."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    class Images(Dataset):
        def __len__(self) -> int:
            return len(split)

        def __getitem__(self, i: int):
            img = split.images[i].permute(1, 2, 0).squeeze(2).numpy()  # (H, W) or (H, W, 3)
            return tf(Image.fromarray(img)), int(split.labels[i])

    return DataLoader(Images(), batch_size=batch_size, shuffle=True, num_workers=workers,
                      pin_memory=device.type == "cuda")  # fmt: skip


def train_epoch(model: nn.Module, loader, opt, loss_fn, device: torch.device) -> float:
    """One epoch of the classic loop; its training seconds."""
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def train_loader_recipe(
    label, model, loader, opt, sched, loss_fn, test, epochs, norm, device, target
) -> list[dict]:
    """A baseline's epochs, each scored on the whole test split, until it reaches `target`."""
    mean = torch.tensor(norm[0], device=device).reshape(-1, 1, 1)
    std = torch.tensor(norm[1], device=device).reshape(-1, 1, 1)
    rows, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        seconds += train_epoch(model, loader, opt, loss_fn, device)
        sched.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model((to_input(test.images[i : i + 2000]).to(device) - mean) / std).argmax(1).cpu()
                 == test.labels[i : i + 2000]).sum().item()
                for i in range(0, len(test), 2000)
            )  # fmt: skip
        rows.append({"epoch": epoch, "seconds": seconds, "test_acc": correct / len(test)})
        print(f"  {label} epoch {epoch}: {seconds:.2f} s, test acc {rows[-1]['test_acc']:.4f}")
        if rows[-1]["test_acc"] >= target:
            break
    return rows


def cifar_throughput(device: torch.device, args) -> dict:
    """img/s of both CIFAR-10 recipes' training on random 32x32 RGB images: the second of two
    epochs (the first builds the kernels)."""
    g = torch.Generator().manual_seed(0)
    n = args.cpu_images
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    split = Split(images, torch.randint(0, 10, (n,), generator=g))
    result = {}
    model, cfg = exigo_recipe("cifar10", device, args)
    cfg = cfg.model_copy(update={"epochs": 2})
    tiny_val = Split(split.images[:16], split.labels[:16])
    history = fit(model, split, tiny_val, cfg, 0, device).history
    seconds = history[1].train_seconds - history[0].train_seconds
    result["exigo"] = {"img_per_s": n / seconds, "batch_size": cfg.batch_size,
                       "precision": "bf16" if resolve_precision(cfg.precision, device) else "fp32"}  # fmt: skip
    model, tf, opt, _ = torchvision_recipe(device, 2)
    loader = pil_loader(split, tf, 128, 2 if device.type == "cuda" else 0, device)
    seconds = [train_epoch(model, loader, opt, F.cross_entropy, device) for _ in range(2)][1]
    result["torchvision"] = {"img_per_s": n / seconds, "batch_size": 128, "precision": "fp32"}
    return result


def reached(rows: list[dict], target: float, n_train: int) -> dict:
    hit = next((r for r in rows if r["test_acc"] >= target), None)
    if hit is None:
        return {"reached": False, "best_test_acc": max(r["test_acc"] for r in rows)}
    return {"reached": True, "epoch": hit["epoch"], "seconds": hit["seconds"],
            "img_per_s": hit["epoch"] * n_train / hit["seconds"], "test_acc": hit["test_acc"]}  # fmt: skip


BASELINES = {"mnist": ("examples", run_examples), "cifar10": ("torchvision", run_torchvision)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=tuple(TARGETS))
    parser.add_argument(
        "--data", type=Path, help="MNIST: the four IDX files; CIFAR-10: the python-version "
        "archive's folder (default: $EXIGO_CIFAR10)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--target", type=float, help="test accuracy (MNIST 0.99, CIFAR-10 0.94)")
    parser.add_argument("--only", choices=("exigo", "examples", "torchvision"))
    parser.add_argument("--epochs", type=int, help="exigo: train.epochs (MNIST 5, CIFAR-10 24)")
    parser.add_argument("--batch-size", type=int, help="exigo: train.batch_size (128; 512)")
    parser.add_argument("--lr", type=float, help="exigo: train.lr (0.003; 0.4)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--baseline-epochs", type=int, default=30, help="CIFAR-10 torchvision")
    parser.add_argument("--throughput", action="store_true", help="CIFAR-10: img/s only")
    parser.add_argument("--cpu-images", type=int, default=1024, help="for the img/s run")
    parser.add_argument("--out", help="default .bench/time_to_accuracy[_cifar10].json")
    args = parser.parse_args()
    args.target = args.target or TARGETS[args.dataset]
    suffix = "" if args.dataset == "mnist" else f"_{args.dataset}"
    out = args.out or f".bench/time_to_accuracy{suffix}.json"

    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    if args.dataset == "cifar10" and (device.type == "cpu" or args.throughput):
        print(f"CIFAR-10 to {args.target:.0%} needs a GPU; on {device}: img/s of 32x32 RGB "
              f"training, {args.cpu_images:,} random images, the second of two epochs")  # fmt: skip
        result = {"device": str(device), "images": args.cpu_images,
                  **cifar_throughput(device, args)}  # fmt: skip
        write_json(out, result)
        ex, tv = result["exigo"], result["torchvision"]
        print(f"        exigo: resnet (ResNet-9), batch {ex['batch_size']}, {ex['precision']}: "
              f"{ex['img_per_s']:,.1f} img/s")  # fmt: skip
        print(f"  torchvision: resnet18 (CIFAR stem), batch 128, per-image DataLoader, fp32: "
              f"{tv['img_per_s']:,.1f} img/s")  # fmt: skip
        print(f"exigo trains {ex['img_per_s'] / tv['img_per_s']:.1f}x the images per second")
        return

    folder = args.data or (Path(os.environ["EXIGO_CIFAR10"]) if args.dataset == "cifar10"
                           and os.environ.get("EXIGO_CIFAR10") else None)  # fmt: skip
    if folder is None:
        sys.exit(f"--data: give the folder of the {args.dataset} files")
    train, test = (load_mnist if args.dataset == "mnist" else load_cifar10)(folder)
    print(f"{len(train):,} train / {len(test):,} test images on {device} "
          f"({'bf16' if dtype else 'fp32'} for exigo); target {args.target:.2%}")  # fmt: skip
    result = {
        "dataset": args.dataset,
        "device": str(device),
        "target": args.target,
        "precision": "bf16" if dtype else "fp32",
    }
    baseline, run_baseline = BASELINES[args.dataset]
    for name, fn in (("exigo", run_exigo), (baseline, run_baseline)):
        if args.only and args.only != name:
            continue
        rows = fn(train, test, device, args)
        result[name] = {"epochs": rows, **reached(rows, args.target, len(train))}
    write_json(out, result)
    for name in ("exigo", baseline):
        r = result.get(name)
        if r:
            print(f"{name:>11}: " + (f"{r['seconds']:.1f} s to {r['test_acc']:.2%} (epoch {r['epoch']}), "
                                     f"{r['img_per_s']:,.0f} img/s" if r["reached"]
                                     else f"did not reach the target (best {r['best_test_acc']:.2%})"))  # fmt: skip
    if result.get("exigo", {}).get("reached") and result.get(baseline, {}).get("reached"):
        print(
            f"exigo reaches {args.target:.0%} {result[baseline]['seconds'] / result['exigo']['seconds']:.1f}x sooner"
        )


if __name__ == "__main__":
    main()
