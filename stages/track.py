"""Log this pipeline run to MLflow: every param, every stage's headline metrics, the per-epoch
curves, the detail as tables, the plot images and the model, registered as a new version of the
project's model (alias `best`: the highest validation accuracy). Runs last; reads only what the
other stages wrote.

    python -m stages.track      # MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from exigo.core.envvars import read_env
from exigo.core.errors import ExigoError, interrupts_always_stop, run_stage
from exigo.core.outputs import read_json
from exigo.core.params import flatten, is_import_path, load_params
from exigo.models.live import LIVE_DIR, read_history
from exigo.track.model_registry import SCORE
from exigo.track.runs import (
    RESTORED_TAG,
    RunContent,
    data_inputs,
    log_run,
    numeric_leaves,
    project_root,
)
from exigo.track.store import describe
from exigo.track.tables import DETAIL_TABLES

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
UI_MODE = "workflowType=machine_learning"  # `mlflow ui`'s "Model training" mode, in a link


def main() -> None:
    with interrupts_always_stop():
        track()


def track() -> None:
    read_env()  # a bad EXIGO_* variable stops here, before anything is read or logged
    checked = load_params()  # validated like every stage; the raw file is logged
    data_name = checked.data.name
    params = flatten(yaml.safe_load(Path("params.yaml").read_text()))
    needed = [*METRICS.values(), *map(Path, DETAIL_TABLES), Path("models/model.pt")]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ExigoError(
            f"nothing to log yet: {', '.join(missing)} missing; run the pipeline (dvc repro)"
        )
    metrics: dict[str, float] = {}
    for stage, path in METRICS.items():
        metrics.update(numeric_leaves(flatten(read_json(path, stage), f"{stage}.")))
    history = read_history()
    tables = {name: detail_table(path, table) for path, (name, table) in DETAIL_TABLES.items()}

    from exigo.models.checkpoint import load_checkpoint

    model, ckpt = load_checkpoint("models/model.pt")
    # the data's real input shape (C, H, W), in [0, 1]: the model normalises them itself
    example = np.zeros((2, *ckpt.get("shape", (1, 28, 28))), dtype=np.float32)
    # a model class of the user's own: its file goes with the logged model, which then loads
    # wherever MLflow's is loaded (mlflow.pytorch pickles the class by reference)
    code = [checked.model.code] if is_import_path(checked.model.name) else []
    content = RunContent(params, metrics, history, ARTIFACTS, model, example, tables, code)
    # meta.json is not a DVC dependency of track: it changes only when download runs again, and
    # then train and track do too. A workspace with the results but not the data logs no inputs.
    meta_path = Path("data") / data_name / "meta.json"
    meta = read_json(meta_path, "download") if meta_path.is_file() else {}
    content.datasets = data_inputs(data_name, meta, project_root() / meta_path.parent)
    logged = log_run(content, root=project_root(), data_name=data_name)
    store = describe(logged.uri)
    if logged.earlier:
        print(f"MLflow: this change is already logged as run {logged.run_id} in {store}")
        return
    # A link to the run, in the UI's model-training mode: MLflow 3.17 keeps that mode in the
    # browser (the experiment's kind tag is not read) and starts a new browser in GenAI mode,
    # where the experiment opens on an empty traces overview. The mode in the link carries on
    # to the pages it leads to (the experiment's runs).
    page = f"#/experiments/{logged.experiment_id}/runs/{logged.run_id}?{UI_MODE}"
    if logged.uri.startswith("sqlite:"):
        see = f"mlflow ui --backend-store-uri {logged.uri}, then http://127.0.0.1:5000/{page}"
    else:
        see = f"{store.rstrip('/')}/{page}"
    how = (
        " (model restored by DVC, not retrained)" if logged.tags.get(RESTORED_TAG) == "true" else ""
    )
    print(f"MLflow: logged run {logged.run_id}{how} to {store} (see it: {see})")
    if reg := logged.registered:
        best = "it is now @best" if reg.best == reg.version else f"@best stays version {reg.best}"
        print(
            f"MLflow: registered model '{reg.name}' version {reg.version} "
            f"(train.val_acc {metrics[SCORE]:.4f}); {best}"
        )


def detail_table(path: str, table):
    """One detail file as a table; a file in another shape is one line, not a traceback."""
    stage = Path(path).stem
    try:
        return table(read_json(path, stage))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ExigoError(
            f"{path}: not what the {stage} stage writes ({exc!r}); run dvc repro -f {stage}"
        ) from None


if __name__ == "__main__":
    run_stage(main)
