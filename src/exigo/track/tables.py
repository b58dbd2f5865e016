"""The detail metrics files as tables: one row per class, per saliency method, per embedding
space. The `track` stage logs them to MLflow with `mlflow.log_table`, so the run shows them as
tables instead of a hundred single-point metric charts; DVC and MLflow metrics keep the headline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def per_class(detail: dict) -> pd.DataFrame:
    """metrics/detail/evaluate.json: precision, recall, F1 and support of each class, then the
    macro and weighted averages (as scikit-learn's classification report has them)."""
    import pandas as pd

    rows = [{"class": name, **scores} for name, scores in detail["per_class"].items()]
    total = sum(row["support"] for row in rows)
    rows += [
        {"class": f"{avg} avg", **detail[avg], "support": total} for avg in ("macro", "weighted")
    ]
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])


def per_method(detail: dict) -> pd.DataFrame:
    """metrics/detail/saliency.json: each method's deletion/insertion AUC, its randomisation
    check, and the rank correlation after re-initialising the blocks from the logits down to
    each block (`rho_<block>`; empty for the random order, which has no map)."""
    import pandas as pd

    rows = []
    for method in detail["deletion_auc"]:
        row = {"method": method}
        for key in ("deletion_auc", "insertion_auc", "randomization_spearman"):
            row[key] = detail[key].get(method)
        row["randomization_flagged"] = detail["randomization_flagged"].get(method)
        cascade = detail["randomization_cascade"].get(method, {})
        row |= {f"rho_{block}": rho for block, rho in cascade.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def per_space(detail: dict) -> pd.DataFrame:
    """metrics/detail/embed.json: the map's quality for the learned features and each baseline."""
    import pandas as pd

    return pd.DataFrame([{"space": space, **scores} for space, scores in detail.items()])


# Each detail file (the ones `exigo compare` diffs too) and the table it becomes in the run.
DETAIL_TABLES: dict[str, tuple[str, Callable[[dict], pd.DataFrame]]] = {
    "metrics/detail/evaluate.json": ("tables/evaluate_per_class.json", per_class),
    "metrics/detail/saliency.json": ("tables/saliency_per_method.json", per_method),
    "metrics/detail/embed.json": ("tables/embed_per_space.json", per_space),
}
