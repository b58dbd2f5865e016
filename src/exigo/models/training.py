"""The training loop: in-memory tensors, batched on the device, seeded, best epoch by validation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from exigo.core.params import TrainParams
from exigo.core.runtime import resolve_precision
from exigo.data.splits import Split, batches
from exigo.models.distributed import SINGLE, Group, all_sum, sync_buffers, wrap


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    train_seconds: float = 0.0  # training time so far (not logged: it differs run to run)

    def line(self, epochs: int) -> str:
        """`Epoch 1/2  train loss 0.211  train acc 0.934  val loss 0.071  val acc 0.978`"""
        return (
            f"Epoch {self.epoch}/{epochs}  train loss {self.train_loss:.3f}  "
            f"train acc {self.train_acc:.3f}  val loss {self.val_loss:.3f}  "
            f"val acc {self.val_acc:.3f}"
        )


@dataclass
class FitResult:
    history: list[EpochStats]
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    seconds: float = 0.0
    images_seen: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds else 0.0


def make_optimizer(
    model: nn.Module, cfg: TrainParams, device: torch.device | None = None
) -> torch.optim.Optimizer:
    """The optimizer of `train.optimizer`; on CUDA its fused kernels (one launch per step)."""
    fused = {"fused": True} if device is not None and device.type == "cuda" else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.momentum > 0,
            **fused,
        )
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainParams, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


@torch.no_grad()
def predict(
    model: nn.Module,
    split: Split,
    batch_size: int,
    device: torch.device,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Logits for a whole split, (N, num_classes) on the CPU, in batches on `device`."""
    model.eval()
    out = []
    for x, _ in batches(split, batch_size, device):
        out.append(model(x))
        if on_batch:
            on_batch(len(x))
    return torch.cat(out).float().cpu() if out else torch.empty(0)


def loss_and_correct(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and the number of right predictions, as float64 scalars: sums, so
    that shares of a split (one per process) add up exactly."""
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits, labels, reduction="sum").double()
    return loss, (logits.argmax(1) == labels).sum().double()


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (NaN for no images)."""
    loss, correct = loss_and_correct(logits, labels)
    return (loss / len(labels)).item(), (correct / len(labels)).item()


def validate(
    model: nn.Module, val: Split, device: torch.device, group: Group = SINGLE
) -> tuple[float, float]:
    """(loss, accuracy) on the whole validation split; in a group, each process scores its share
    and the sums are combined."""
    mine = Split(group.shard(val.images), group.shard(val.labels))
    loss, correct = loss_and_correct(predict(model, mine, 1024, device), mine.labels)
    loss, correct = all_sum(group, loss.to(device), correct.to(device))
    return loss.item() / len(val), correct.item() / len(val)


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    cfg: TrainParams,
    seed: int,
    device: torch.device,
    on_batch: Callable[[int], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    group: Group = SINGLE,
) -> FitResult:
    """Train `model` for cfg.epochs; keep the weights of the best epoch by cfg.monitor on `val`.

    In a process group (train.nproc > 1) each process trains on its slice of every batch under
    DistributedDataParallel, and the epoch's numbers are summed over all processes, so every
    process sees the same history and picks the same best epoch on the whole validation split."""
    model.to(device)
    if device.type in ("cpu", "cuda"):
        model.to(memory_format=torch.channels_last)  # faster convs on both, same results per device
    net = wrap(model, group, device)  # the model itself in a single process
    train = Split(train.images.to(device), train.labels.to(device))
    val = Split(val.images.to(device), val.labels.to(device))
    opt = make_optimizer(model, cfg, device)
    dtype = resolve_precision(cfg.precision, device)  # None: fp32
    steps = (len(train) + cfg.batch_size - 1) // cfg.batch_size
    sched = make_scheduler(opt, cfg, steps)
    gen = torch.Generator().manual_seed(seed)
    history: list[EpochStats] = []
    best_epoch, best_score, best_state = 0, None, {}
    images, seconds = 0, 0.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0  # the images this epoch trained on, over every process
        lr = opt.param_groups[0]["lr"]
        for x, y in batches(train, cfg.batch_size, device, gen):
            n = len(y)  # the whole batch, over every process
            if n < group.world:  # a last batch too small to give each process an image
                continue
            seen += n
            if cfg.augment != "none":  # the whole batch, the same in every process
                x = augment(x, cfg.augment, gen)
            x, y = group.shard(x), group.shard(y)  # this process's part
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                logits = net(x)
            summed = F.cross_entropy(
                logits.float(), y, reduction="sum", label_smoothing=cfg.label_smoothing
            )  # so train loss includes the smoothing; validation's never does
            # DDP averages the processes' gradients: scaled so, they are those of the whole
            # batch's mean loss, however unevenly the batch splits.
            loss = summed * (group.world / n)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += summed.detach()  # no .item(): keep the device busy
            correct += (logits.argmax(1) == y).sum()
            if on_batch:
                on_batch(n)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        images += seen
        loss_sum, correct = all_sum(group, loss_sum, correct)
        sync_buffers(model, group)
        val_loss, val_acc = validate(model, val, device, group)
        stats = EpochStats(
            epoch,
            loss_sum.item() / seen,
            correct.item() / seen,
            val_loss,
            val_acc,
            lr,
            train_seconds=seconds,
        )
        history.append(stats)
        score = -val_loss if cfg.monitor == "val_loss" else val_acc
        if best_score is None or score > best_score:
            best_epoch, best_score = epoch, score
            best_state = cpu_state(model)
        if on_epoch:
            on_epoch(stats)
    return FitResult(history, best_epoch, best_state, seconds, images)


def augment(x: torch.Tensor, how: str, gen: torch.Generator) -> torch.Tensor:
    """A batch (B, C, H, W) randomly shifted and mirrored, on its own device, by `how`:

    crop_flip          a random H x W crop of the image padded by `pad` pixels on every side
                       (reflected, so no black borders appear), then a horizontal flip of half
                       the images: the standard CIFAR augmentation. `pad` is 4 pixels, an eighth
                       of the side for images under 32 (1 at 8x8). Flips suit photographs, not
                       digits or text.
    crop_flip_cutout   the same, then a square a quarter of the side wide (8x8 at 32x32) set to
                       0, centred anywhere in the image (DeVries & Taylor 2017, "cutout"; in
                       Page's ResNet-9 recipe)

    Every draw comes from `gen` (on the CPU), so a seed gives the same batches on any device."""
    b, _, h, w = x.shape
    pad = min(4, max(1, min(h, w) // 8))
    shift = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen)  # (B, 2) crop corner
    flip = torch.rand(b, generator=gen) < 0.5  # (B,)
    rows = shift[:, :1] + torch.arange(h)  # (B, H) rows of the padded image
    cols = shift[:, 1:] + torch.arange(w)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip reads the columns backwards
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")  # (B, C, H + 2 pad, W + 2 pad)
    rows, cols = rows.to(x.device), cols.to(x.device)
    out = padded[torch.arange(b, device=x.device)[:, None, None, None],
                 torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]  # fmt: skip
    if how == "crop_flip_cutout":
        side = max(1, min(h, w) // 4)
        centre = torch.rand(b, 2, generator=gen)  # (B, 2) in [0, 1): anywhere in the image
        top = (centre[:, :1] * h).long() - side // 2
        left = (centre[:, 1:] * w).long() - side // 2
        inside_r = (torch.arange(h) >= top) & (torch.arange(h) < top + side)  # (B, H)
        inside_c = (torch.arange(w) >= left) & (torch.arange(w) < left + side)  # (B, W)
        hole = (inside_r[:, :, None] & inside_c[:, None, :]).to(x.device)  # (B, H, W)
        out = out.masked_fill(hole[:, None], 0.0)
    return out


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights (contiguous, so checkpoints do not depend on layout)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
