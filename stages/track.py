"""Log this pipeline run to MLflow: every param, every stage's metrics, the per-epoch curves, the
plot images and the model. Runs last; reads only what the other stages wrote.

    python -m stages.track      # MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from exigo.errors import ExigoError, run_stage
from exigo.io import read_json
from exigo.live import LIVE_DIR, read_history
from exigo.params import flatten, load_params
from exigo.tracking import log_run, numeric_leaves, project_root, tracking_uri

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
    load_params()  # validated like every stage; the raw file is what gets logged
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
    root = project_root()
    example = np.zeros((2, 1, 28, 28), dtype=np.float32)  # inputs in [0, 1]: the model normalises
    run_id = log_run(
        params, metrics, history, ARTIFACTS, model=model, input_example=example, root=root
    )
    print(
        f"MLflow: logged run {run_id} to {tracking_uri(root)} (see it with: mlflow ui --backend-store-uri {tracking_uri(root)})"
    )


if __name__ == "__main__":
    run_stage(main)
