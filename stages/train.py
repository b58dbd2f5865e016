"""Train the classifier; keep the best epoch by validation metric.

python -m stages.train     # reads params.yaml (base, data, model, train), writes models/,
                           # metrics/train.json and plots/train/history.csv
"""

from __future__ import annotations

from pathlib import Path

from exigo.data import load_dataset
from exigo.errors import run_stage
from exigo.io import write_csv, write_json
from exigo.models import build_model, model_settings, save_checkpoint
from exigo.params import load_params
from exigo.progress import epoch_line, progress_bar
from exigo.training import HISTORY_FIELDS, cpu_state, fit
from exigo.utils import resolve_device, set_seed

MODELS_DIR = Path("models")


def main() -> None:
    params = load_params()
    cfg = params.train
    device = resolve_device(cfg.device)
    data = load_dataset(Path("data") / params.data.name)
    norm = data.meta["normalization"]
    settings = model_settings(params.model)

    set_seed(params.base.seed)
    model = build_model(params.model.name, settings, len(data.classes), norm["mean"], norm["std"])
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{params.model.name}: {n_params:,} parameters, {len(data.train):,} training images on {device}"
    )
    meta = {
        "model": {"name": params.model.name, "settings": settings},
        "classes": list(data.classes),
        "normalization": norm,
        "dataset": data.name,
        "seed": params.base.seed,
    }
    # The untrained weights of the same seed: the saliency stage compares against them.
    save_checkpoint(MODELS_DIR / "init.pt", cpu_state(model), epoch=0, score=None, **meta)

    with progress_bar() as bar:
        task = bar.add_task("train", total=cfg.epochs * len(data.train))
        result = fit(
            model,
            data.train,
            data.val,
            cfg,
            params.base.seed,
            device,
            on_batch=lambda n: bar.advance(task, n),
            on_epoch=lambda s: bar.console.print(epoch_line(s, cfg.epochs)),
        )
    best = result.best
    score = {"metric": cfg.monitor, "value": getattr(best, cfg.monitor)}
    save_checkpoint(
        MODELS_DIR / "model.pt", result.best_state, epoch=best.epoch, score=score, **meta
    )

    write_csv(Path("plots/train/history.csv"), HISTORY_FIELDS, [s.row() for s in result.history])
    write_json(
        Path("metrics/train.json"),
        {
            "best_epoch": best.epoch,
            "val_loss": round(best.val_loss, 6),
            "val_acc": round(best.val_acc, 6),
            "train_loss": round(best.train_loss, 6),
            "train_acc": round(best.train_acc, 6),
            "n_parameters": n_params,
        },
    )
    print(
        f"best epoch {best.epoch}: val acc {best.val_acc:.4f}, val loss {best.val_loss:.4f}; "
        f"{result.images_per_second:,.0f} img/s over {result.seconds:.1f} s of training"
    )


if __name__ == "__main__":
    run_stage(main)
