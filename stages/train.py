"""Train the classifier; keep the best epoch by validation metric.

python -m stages.train     # reads params.yaml (base, data, model, train), writes models/ and,
                           # through DVCLive, metrics/train/ (live per epoch while it trains)

With train.nproc > 1 it trains data-parallel in that many processes on this machine. Outside DVC,
torchrun runs it on several machines (each starts the same command; see docs/pipeline.md):
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m stages.train
"""

from __future__ import annotations

from pathlib import Path

import torch

from exigo.core.environment import RECORD, describe
from exigo.core.errors import run_stage
from exigo.core.outputs import restored_on_failure, write_json
from exigo.core.params import Params, load_params
from exigo.core.progress import progress_bar
from exigo.core.registry import MODELS
from exigo.core.runtime import resolve_device, set_seed, warn
from exigo.data.download import check_source
from exigo.data.formats import check_tree
from exigo.data.splits import load_dataset, to_input
from exigo.evaluate.metrics import at_chance, constant_features
from exigo.models.checkpoint import build_model, save_checkpoint, settings_record
from exigo.models.distributed import SINGLE, Group, check_launch, join, launch, launched, leave
from exigo.models.live import LIVE_DIR, live_logger, log_epoch, set_summary
from exigo.models.training import cpu_state, fit

MODELS_DIR = Path("models")
# What one run writes, as one set: DVCLive rewrites the metrics every epoch (so that `dvc exp
# show` follows the run), the checkpoints and the environment record come at the start and end.
OUTPUTS = (
    MODELS_DIR / "model.pt",
    MODELS_DIR / "init.pt",
    RECORD,
    LIVE_DIR / "metrics.json",
    LIVE_DIR / "plots",
)
PREVIOUS = Path(".exigo/train-previous")  # those of the run before, while this one runs


def main() -> None:
    params = load_params()
    if launched():  # one process of a torchrun group, on this machine or several
        run_process()
        return
    nproc, device = params.train.nproc, resolve_device(params.train.device)
    if nproc > 1:
        check_launch(nproc, device)  # before anything is copied aside or written
    # A failed or interrupted run puts the previous outputs back: never its own half-run metrics
    # beside the previous model.
    with restored_on_failure(OUTPUTS, PREVIOUS, on_stale=said_stale):
        if nproc > 1:  # train.nproc processes on this machine
            launch(nproc, device, run_process)
        else:
            train(params)


def said_stale() -> None:
    warn(
        "the last train run was killed before it finished; its partial model and metrics were "
        "replaced by the ones from before it"
    )


def run_process() -> None:
    """One process of a data-parallel group: join it, train its share, leave."""
    params = load_params()
    group = join(resolve_device(params.train.device))
    try:
        train(params, group)
    finally:
        leave()


def train(params: Params, group: Group = SINGLE) -> None:
    cfg = params.train
    device = resolve_device(cfg.device)
    data_dir = Path("data") / params.data.name
    data = load_dataset(data_dir)
    # DVC cannot watch a local data.source folder: stop if its files changed since download.
    if group.main:  # once, not in every process
        check_source(params.data.source, data.meta.get("files"), data_dir)
        check_tree(params.data.source, data.meta.get("tree"), data_dir)  # a folder of images
    norm, shape = data.meta["normalization"], data.meta["shape"]
    # the chosen model's own section (model.<name>), or a timm / user model's model.args
    settings = params.model.settings if params.model.name in MODELS else params.model.args
    set_seed(params.base.seed)
    model = build_model(
        params.model.name, settings, len(data.classes), norm["mean"], norm["std"], shape
    )
    if not group.main:  # the other processes train their share and write nothing
        fit(model, data.train, data.val, cfg, params.base.seed, device, group=group)
        return

    n_params = sum(p.numel() for p in model.parameters())
    on = f"{device} x {group.world} processes" if group.world > 1 else str(device)
    print(
        f"{params.model.name}: {n_params:,} parameters, {len(data.train):,} training images on {on}"
    )
    meta = {
        "model": {"name": params.model.name, "settings": settings_record(settings)},
        "classes": list(data.classes),
        "normalization": norm,
        "shape": shape,  # (C, H, W) the model takes
        "dataset": data.name,
        "seed": params.base.seed,
    }
    # The untrained weights of the same seed: the saliency stage compares against them.
    save_checkpoint(MODELS_DIR / "init.pt", cpu_state(model), epoch=0, score=None, **meta)
    warn_if_dead(model, data.val.images[:512], params)

    def on_epoch(stats):
        log_epoch(live, stats)  # dvc exp show, VS Code and Studio see it now
        bar.console.print(stats.line(cfg.epochs))

    with live_logger(monitor_system=cfg.monitor_system) as live, progress_bar() as bar:
        task = bar.add_task("train", total=cfg.epochs * len(data.train))
        result = fit(
            model, data.train, data.val, cfg, params.base.seed, device,
            on_batch=lambda n: bar.advance(task, n), on_epoch=on_epoch, group=group,
        )  # fmt: skip
        best = result.best
        score = {"metric": cfg.monitor, "value": getattr(best, cfg.monitor)}
        save_checkpoint(
            MODELS_DIR / "model.pt", result.best_state, epoch=best.epoch, score=score, **meta
        )
        write_json(RECORD, describe(Path(".")))  # the software it was trained with (lineage)
        summary = {"best_epoch": best.epoch, "n_parameters": n_params}  # the saved epoch's numbers
        summary |= {
            k: round(getattr(best, k), 6)
            for k in ("val_loss", "val_acc", "train_loss", "train_acc")
        }
        set_summary(live, summary, last_epoch=len(result.history))
    if at_chance(best.val_acc, len(data.classes)):
        warn(
            f"the model did not learn: best val accuracy {best.val_acc:.3f} is at chance level "
            f"for {len(data.classes)} classes; try another train.lr (now {cfg.lr:g})"
        )
    print(
        f"best epoch {best.epoch}: val acc {best.val_acc:.4f}, val loss {best.val_loss:.4f}; "
        f"{result.images_per_second:,.0f} img/s over {result.seconds:.1f} s of training"
    )


def warn_if_dead(model: torch.nn.Module, images: torch.Tensor, params: Params) -> None:
    """One line when the untrained model gives every image the same features (dead ReLUs)."""
    with torch.no_grad():
        start = model.eval().features(to_input(images))
    if constant_features(start.numpy()):
        warn(
            f"{params.model.name} (seed {params.base.seed}): every penultimate feature is the same "
            "for every image before training, so no gradient flows and it cannot learn; "
            "try another base.seed"
        )


if __name__ == "__main__":
    run_stage(main)
