"""Log this pipeline run to MLflow: every param, every stage's metrics, the per-epoch curves, the
plot images and the model. Runs last; reads only what the other stages wrote.

    python -m stages.track      # MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from exigo.errors import ExigoError, interrupts_always_stop, run_stage
from exigo.io import read_json
from exigo.live import LIVE_DIR, read_history
from exigo.params import flatten, load_params
from exigo.store import describe
from exigo.tracking import RESTORED_TAG, RunContent, log_run, numeric_leaves, project_root

METRICS = {
    "train": LIVE_DIR / "metrics.json",
    "evaluate": Path("metrics/evaluate.json"),
    "embed": Path("metrics/embed.json"),
    "saliency": Path("metrics/saliency.json"),
}
ARTIFACTS = {
    "plots/evaluate": Path("plots/evaluate"),
    "plots/embed": Path("plots/embed"),
    "plots/saliency": Path("plots/saliency"),
    "metrics": Path("metrics"),
    "checkpoint": Path("models/model.pt"),
}


def main() -> None:
    with interrupts_always_stop():
        track()


def track() -> None:
    data_name = load_params().data.name  # validated like every stage; the raw file is logged
    params = flatten(yaml.safe_load(Path("params.yaml").read_text()))
    missing = [str(p) for p in [*METRICS.values(), Path("models/model.pt")] if not p.exists()]
    if missing:
        raise ExigoError(
            f"nothing to log yet: {', '.join(missing)} missing; run the pipeline (dvc repro)"
        )
    metrics: dict[str, float] = {}
    for stage, path in METRICS.items():
        metrics.update(numeric_leaves(flatten(read_json(path, stage), f"{stage}.")))
    history = read_history()

    from exigo.models import load_checkpoint

    model, _ = load_checkpoint("models/model.pt")
    example = np.zeros((2, 1, 28, 28), dtype=np.float32)  # inputs in [0, 1]: the model normalises
    content = RunContent(params, metrics, history, ARTIFACTS, model, example)
    logged = log_run(content, root=project_root(), data_name=data_name)
    store = describe(logged.uri)
    if logged.earlier:
        print(f"MLflow: this change is already logged as run {logged.run_id} in {store}")
        return
    local = logged.uri.startswith("sqlite:")
    see = f"mlflow ui --backend-store-uri {logged.uri}" if local else f"open {store}"
    how = (
        " (model restored by DVC, not retrained)" if logged.tags.get(RESTORED_TAG) == "true" else ""
    )
    print(f"MLflow: logged run {logged.run_id}{how} to {store} (see it: {see})")


if __name__ == "__main__":
    run_stage(main)
