"""The Optuna study that every worker feeds: its storage, its trial slots, its summary.

A study of `trials: N` is created with N waiting trials ("slots", Optuna's enqueued trials). A
worker runs a trial only by claiming a slot, which Optuna's storage does atomically (a row lock
in PostgreSQL; a file lock beside an SQLite file), so N trials run in total however many workers
on however many machines feed the study, and no trial runs twice. A failed trial is replaced by
a new slot, up to `max_failed` failures; a pruned trial counts as done. A worker that dies
without telling its trial is found by Optuna's heartbeat: its trial is failed and replaced.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from exigo.sweep.config import Pruner, Sampler, SweepConfig, SweepError

CONFIG_ATTR = "exigo.sweep"  # the study's sweep.yaml, as JSON: set once the slots exist
ERROR_ATTR = "exigo.error"  # a failed trial's reason
INTERRUPTED = "interrupted"  # the reason of a trial stopped by Ctrl-C: not counted as a failure
HEARTBEAT_S = 30  # a running trial's worker says it is alive this often ...
GRACE_S = 300  # ... and a trial silent for this long is failed and its slot replaced
STUDY_WAIT_S = 120  # how long a worker waits for another worker to finish creating the study

optuna.logging.set_verbosity(optuna.logging.WARNING)  # exigo prints one line per trial itself
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

_THREAD_LOCK = threading.Lock()

SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "qmc": "QMCSampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
}
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
}


def default_storage(root: Path) -> str:
    """An SQLite file beside the project's mlflow.db (git-ignored)."""
    return f"sqlite:///{root.resolve() / 'optuna.db'}"


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


@contextlib.contextmanager
def storage_lock(url: str) -> Iterator[None]:
    """Serialise claims between this process's threads and, for SQLite, other processes.

    SQLite ignores SELECT ... FOR UPDATE, so two processes could both claim one waiting trial;
    a file lock beside the database makes the claim atomic. PostgreSQL/MySQL lock the row."""
    from filelock import FileLock

    path = sqlite_path(url)
    with _THREAD_LOCK:
        if path is None:
            yield
            return
        with FileLock(f"{path}.lock", timeout=600):
            yield


def with_driver(url: str) -> str:
    """A `postgresql://` URL that names no driver, with the one installed: SQLAlchemy 2.1 reads
    it as psycopg 3, and with only psycopg2 installed (the `server` extra) the README's own
    form failed with "pip install psycopg2-binary"."""
    if url.startswith("postgresql://") and not find_spec("psycopg") and find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with a heartbeat (a dead worker's trial is failed and replaced)."""
    url = with_driver(url)
    kwargs: dict[str, Any] = {}
    if path := sqlite_path(url):
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # wait, don't fail, on a lock
    tries = 1 if path else 3  # a server: another machine may be creating the tables right now
    for attempt in range(1, tries + 1):
        try:
            with storage_lock(url):  # two first workers here would both create the tables
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=_replace_stale,
                    **kwargs,
                )
        except ImportError as exc:  # e.g. postgresql:// without its driver
            raise SweepError(
                f"--storage {safe_url(url)}: {exc} (pip install psycopg2-binary)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's many connection errors
            if attempt == tries:
                raise SweepError(
                    f"--storage {safe_url(url)}: cannot open ({_first_line(exc)})"
                ) from None
            time.sleep(2)
    raise AssertionError("unreachable")


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all
        return url


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Tell the storage this trial's worker is alive, every HEARTBEAT_S, until the block ends."""
    storage, trial_id, done = study._storage, trial._trial_id, threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is retried; GRACE_S is long
                storage.record_heartbeat(trial_id)
            if done.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _replace_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna failed a trial whose worker went silent (killed, machine lost): replace it."""
    replace_slot(study, trial.number)


def build(spec: Sampler | Pruner, table: dict[str, str], module: Any, **extra: Any) -> Any:
    """An Optuna sampler or pruner from its sweep.yaml entry; bad arguments name the key."""
    options = {k: v for k, v in spec.model_dump().items() if k != "name"} | extra
    kind = "sampler" if module is optuna.samplers else "pruner"
    try:
        return getattr(module, table[spec.name])(**options)
    except ImportError as exc:
        raise SweepError(
            f"sweep.yaml: {kind}: {spec.name} needs {exc.name} (pip install it)"
        ) from None
    except (TypeError, ValueError) as exc:
        raise SweepError(f"sweep.yaml: {kind}: {spec.name}: {_first_line(exc)}") from None


def sampler_for(cfg: SweepConfig, trial_number: int) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial k: seeded with seed + k, so one worker repeats its draws
    run after run and parallel workers never draw the same values."""
    seed = None if cfg.sampler.seed is None else cfg.sampler.seed + trial_number
    return build(cfg.sampler, SAMPLERS, optuna.samplers, seed=seed)


def open_study(cfg: SweepConfig, url: str) -> optuna.Study:
    """Create the study with its slots, or load it if another worker did; same sweep.yaml only."""
    storage = make_storage(url)
    pruner = build(cfg.pruner, PRUNERS, optuna.pruners)
    with storage_lock(url):
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=cfg.study,
                direction=cfg.objective.direction,
                pruner=pruner,
                load_if_exists=False,
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = None
        if study is not None:
            for fixed in cfg.enqueue:
                study.enqueue_trial(dict(fixed))
            for _ in range(cfg.trials - len(cfg.enqueue)):
                study.enqueue_trial({})
            study.set_user_attr(CONFIG_ATTR, cfg.fingerprint())  # last: the study is ready
            return study
    study = optuna.load_study(study_name=cfg.study, storage=storage, pruner=pruner)
    deadline = time.monotonic() + STUDY_WAIT_S
    while (found := study.user_attrs.get(CONFIG_ATTR)) is None:
        if time.monotonic() > deadline:
            raise SweepError(
                f"study '{cfg.study}' in {safe_url(url)} was not made by exigo sweep (or its creation "
                "was cut short): give the study another name in sweep.yaml"
            )
        time.sleep(1)
    if found != cfg.fingerprint():
        old, new = json.loads(found), json.loads(cfg.fingerprint())
        keys = ", ".join(k for k in new if old.get(k) != new[k])
        raise SweepError(
            f"sweep.yaml: study '{cfg.study}' in {safe_url(url)} was started with a different {keys}; "
            "give the study a new name to search anew"
        )
    return study


def claim(study: optuna.Study, url: str, cfg: SweepConfig) -> optuna.Trial | None:
    """Take one waiting slot as a running trial; None when no slot is left."""
    with storage_lock(url):
        optuna.storages.fail_stale_trials(study)
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if not study._storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                    continue  # another worker took it
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            study.sampler = sampler_for(cfg, frozen.number)
            return optuna.Trial(study, frozen._trial_id)  # as Study.ask() does after its pop
    return None


def failures(study: optuna.Study) -> int:
    """Failed trials, not counting those stopped by Ctrl-C."""
    return sum(
        t.user_attrs.get(ERROR_ATTR) != INTERRUPTED
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    )


def replace_slot(study: optuna.Study, number: int) -> bool:
    """A new slot for a trial that failed, unless the study has failed too often already."""
    cfg = json.loads(study.user_attrs.get(CONFIG_ATTR) or "{}")
    limit = cfg.get("max_failed") or cfg.get("trials") or 0
    if failures(study) >= limit:
        return False
    study.enqueue_trial({}, user_attrs={"exigo.replaces": number})
    return True


def counts(study: optuna.Study) -> dict[TrialState, int]:
    out = dict.fromkeys(TrialState, 0)
    for t in study.get_trials(deepcopy=False):
        out[t.state] += 1
    return out


def best(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None
