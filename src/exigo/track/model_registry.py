"""The MLflow model registry: every run's model is a new version of one registered model, and
the alias `best` names the version with the highest validation accuracy so far.

    mlflow.pytorch.load_model("models:/<name>@best")

The name is the MLflow experiment's (the project folder's), made safe for the registry, or
EXIGO_REGISTERED_MODEL. Versions are tagged with the DVC experiment, the git commit and the run's
`train.val_acc`; `best` is chosen on that validation accuracy only (never on the test split), and
a tie keeps the earlier version, so a run whose model DVC restored (the same weights) never takes
`best` from the run that trained it.

Exactly once (see exigo.track.runs): a version is created after the model is logged and before its
run is tagged complete. A run cut off after that is deleted before the change is logged again,
and so are its versions (deleting a version drops its aliases too), so no version points at a
deleted run; `best` is then chosen again over the versions that are left.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exigo.core.envvars import read_env

BEST = "best"
SCORE = "train.val_acc"  # the run's validation accuracy (a version tag too)
VERSION_TAGS = {  # run tag -> version tag
    "dvc.exp_name": "dvc.exp_name",
    "mlflow.source.git.commit": "git.commit",
    "exigo.restored": "exigo.restored",
}
_UNSAFE = re.compile(r"[^\w.-]")


def safe_name(name: str) -> str:
    """A name as a file or registry name: anything but letters, digits, '.', '_', '-' is '_'."""
    return _UNSAFE.sub("_", name)


def model_name(experiment: str) -> str:
    """EXIGO_REGISTERED_MODEL, else the experiment's name made safe for the registry."""
    return read_env().EXIGO_REGISTERED_MODEL or safe_name(experiment)


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    best: str | None  # the version `best` points at now


def register(client, name: str, model, run_tags: dict[str, str], score: float | None) -> Registered:
    """A new version of `name` from a logged model (`mlflow.models.ModelInfo`), tagged, and
    `best` moved to it if its score beats every earlier version's."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="exigo: one version per tracked run")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {tag: run_tags[key] for key, tag in VERSION_TAGS.items() if key in run_tags}
    if score is not None:
        tags[SCORE] = repr(float(score))
    # MLflow's own stores make a version READY at once: no "Waiting up to 300 seconds" line.
    version = client.create_model_version(
        name,
        model.model_uri,
        run_id=model.run_id,
        tags=tags,
        model_id=model.model_id,
        await_creation_for=0,
    )
    best = _best(client, name)
    if best is not None:
        client.set_registered_model_alias(name, BEST, best.version)
    return Registered(name, str(version.version), str(best.version) if best else None)


def _best(client, name: str):
    """The version with the highest score among all versions of `name` (the one just made
    included); ties keep the earlier version. All versions, not only the one holding `best`:
    a holder deleted by hand, or another machine registering at the same moment, are then no
    special case."""
    scored = [(s, v) for v in _versions(client, f"name = '{name}'") if (s := _score(v)) is not None]
    if not scored:
        return None
    return max(scored, key=lambda sv: (sv[0], -int(sv[1].version)))[1]


def _score(version) -> float | None:
    """A version's validation accuracy; None for one exigo did not register (no or bad tag)."""
    try:
        return float(version.tags[SCORE])
    except (KeyError, ValueError):
        return None


def _versions(client, filter_string: str):
    token = None
    while True:
        page = client.search_model_versions(filter_string, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def forget_run(client, run_id: str) -> None:
    """Delete the versions made from a run that is being deleted (a cut-off run)."""
    for version in list(_versions(client, f"run_id = '{run_id}'")):
        client.delete_model_version(version.name, version.version)
