"""`exigo sweep sweep.yaml`: an Optuna search whose every trial is one real DVC experiment.

Each trial is `dvc exp run -n <study>-<trial> -S key=value ...` in a worker's own clone of the
project (see workspace.py); its objective is read back from the metrics DVC tracks; its
per-epoch validation values are reported to Optuna while it trains, so a pruner can stop it;
it is told to the study, and its experiment is pushed to the project and its git remote. Workers
on one machine (`--workers N`) and on many (each running exigo sweep in its own clone of the
repo, with one `--storage`) feed one study: N trials in total, none run twice.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from exigo.core.errors import ExigoError
from exigo.core.params import PARAMS_FILE, flatten
from exigo.sweep import study as studies
from exigo.sweep.config import SweepConfig, load_sweep, override
from exigo.sweep.trial import EPOCH_VALUES_DIR, EpochReader, Outcome, run_watched
from exigo.sweep.workspace import (
    Project,
    find_metric,
    metrics,
    push,
    reset,
    trial_env,
    worker_clone,
)
from exigo.track.runs import tracking_uri

EPOCHS_PARAM = "train.epochs"  # the last step DVCLive reports: never pruned (nothing to save)
TEST_STAGE = "evaluate"  # its metrics are measured on the test split


@dataclass(frozen=True)
class Summary:
    study: str
    storage: str
    counts: dict[TrialState, int]
    best: optuna.trial.FrozenTrial | None


class Sweep:
    """The workers of one `exigo sweep` process, each in its own thread and its own clone."""

    def __init__(self, project: Project, cfg: SweepConfig, url: str, say: Callable[[str], None]):
        self.project, self.cfg, self.url = project, cfg, url
        self._say, self._print_lock = say, threading.Lock()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def say(self, line: str) -> None:
        with self._print_lock:
            self._say(line)

    def run(self, workers: int) -> None:
        done = [threading.Event() for _ in range(workers)]
        for i in range(workers):
            thread = threading.Thread(
                target=self._worker, args=(i, done[i]), name=f"sweep-worker-{i}", daemon=True
            )
            thread.start()
        try:
            _wait(done)
        except KeyboardInterrupt:
            self.say("stopping: the running trials are stopped and marked failed (interrupted)")
            self.stop.set()
            while True:  # a second Ctrl-C must not leave trials running without their worker
                try:
                    _wait(done)
                    break
                except KeyboardInterrupt:
                    self.say("still stopping the running trials (a minute at most)")
            raise
        if self.errors:
            raise self.errors[0]

    def _worker(self, index: int, done: threading.Event) -> None:
        try:
            study = optuna.load_study(
                study_name=self.cfg.study,
                storage=studies.make_storage(self.url),
                pruner=studies.build(self.cfg.pruner, studies.PRUNERS, optuna.pruners),
            )
            with worker_clone(self.project, index) as clone:
                while not self.stop.is_set():
                    trial = studies.claim(study, self.url, self.cfg)
                    if trial is None:
                        break
                    with studies.heartbeat(study, trial):
                        self._trial(study, trial, clone)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors.append(exc)
            self.stop.set()
        finally:
            done.set()

    def _trial(self, study: optuna.Study, trial: optuna.Trial, clone: Path) -> None:
        name = f"{self.cfg.study}-{trial.number}"
        log = self.project.log_path(name)
        outcome = Outcome(TrialState.FAIL, "stopped by an error in exigo sweep")
        told = False
        try:
            params = {key: dist.suggest(trial, key) for key, dist in self.cfg.space.items()}
            trial.set_user_attr("exigo.experiment", name)
            trial.set_user_attr("exigo.log", str(log))
            trial.set_user_attr("exigo.host", socket.gethostname())
            trial.set_user_attr("exigo.baseline", self.project.head)
            shown = " ".join(f"{k}={_short(v)}" for k, v in params.items())
            self.say(f"trial {trial.number} ({name}): {shown}")
            reset(clone)
            metric_key = self.cfg.objective.metric.rpartition(":")[2]
            live = clone / EPOCH_VALUES_DIR / f"{metric_key}.tsv"
            live.unlink(missing_ok=True)  # only this trial's epochs
            result = run_watched(
                ["dvc", "exp", "run", "-n", name, *_set_params(params)],
                cwd=clone,
                env=trial_env(self.project, self.cfg.study, trial.number),
                log_path=log,
                trial=trial,
                reader=EpochReader(live),
                last_step=_epochs(params, clone),
                stop=self.stop,
            )
            if result.state == TrialState.COMPLETE:
                self._finish(study, trial, clone, name)
                told = True
            else:
                outcome = result
        except ExigoError as exc:
            outcome = Outcome(TrialState.FAIL, str(exc))
        finally:
            if not told:
                self._tell_unfinished(study, trial, name, outcome, log)
            reset(clone)

    def _finish(self, study, trial, clone: Path, name: str) -> None:
        problem = push(self.project, clone, name)
        if problem:
            trial.set_user_attr("exigo.push", problem)
            self.say(f"trial {trial.number} ({name}): warning: {problem}")
        _, value = find_metric(metrics(clone), self.cfg.objective.metric)
        with studies.storage_lock(self.url):
            study.tell(trial, value)
        best = studies.best(study)
        lead = f"best so far: trial {best.number}, {best.value:.6g}" if best else ""
        self.say(
            f"trial {trial.number} ({name}): {self.cfg.objective.metric} {value:.6g}  ({lead})"
        )

    def _tell_unfinished(self, study, trial, name: str, outcome: Outcome, log: Path) -> None:
        where = f"log: {log.relative_to(self.project.root)}"
        if outcome.state == TrialState.PRUNED:
            trial.set_user_attr("exigo.pruned", outcome.reason)
            with studies.storage_lock(self.url):
                study.tell(trial, state=TrialState.PRUNED)
            self.say(f"trial {trial.number} ({name}): {outcome.reason}  ({where})")
            return
        trial.set_user_attr(studies.ERROR_ATTR, outcome.reason)
        with studies.storage_lock(self.url):
            study.tell(trial, state=TrialState.FAIL)
            replaced = studies.replace_slot(study, trial.number)
        again = "" if replaced else "; no trial replaces it (max_failed reached)"
        self.say(f"trial {trial.number} ({name}): failed: {outcome.reason}  ({where}){again}")


def _wait(done: list[threading.Event]) -> None:
    """Until every worker is done. Not Thread.join: a Ctrl-C that interrupts join() can leave
    the thread marked as stopped while it still runs (CPython 3.11), and the sweep would exit
    with its trials still running."""
    for event in done:
        while not event.wait(0.5):  # in slices: Ctrl-C reaches the main thread
            pass


def _set_params(params: dict) -> list[str]:
    return [arg for key, value in params.items() for arg in ("-S", override(key, value))]


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _epochs(params: dict, clone: Path) -> int | None:
    """The trial's number of epochs: its own value if it sweeps it, else params.yaml's."""
    if EPOCHS_PARAM in params:
        return params[EPOCHS_PARAM]
    value = flatten(yaml.safe_load((clone / PARAMS_FILE).read_text()) or {}).get(EPOCHS_PARAM)
    return value if isinstance(value, int) else None


def _check_objective(project: Project, cfg: SweepConfig, say: Callable[[str], None]) -> None:
    """Fail early on an objective the project's metrics do not have; warn on the test split."""
    files = metrics(project.root)
    if not files:
        return  # no metrics yet (nothing committed or run): the first trial will tell
    path, _ = find_metric(files, cfg.objective.metric)
    stages = (yaml.safe_load((project.root / "dvc.yaml").read_text()) or {}).get("stages", {})
    test_files = {
        next(iter(m)) if isinstance(m, dict) else m
        for m in (stages.get(TEST_STAGE) or {}).get("metrics") or []
    }
    if path in test_files:
        say(
            f"warning: objective {cfg.objective.metric} is measured on the test split "
            f"({path}); choosing hyperparameters on it leaks the test set into the choice. "
            "The validation metric (val_acc) is the one to search on."
        )


@contextlib.contextmanager
def _interrupt_signals() -> Iterator[None]:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM) both stop the sweep cleanly, even when it was started
    with SIGINT ignored (a background job): its trials, which inherit the setting, must stop on
    the SIGINT the worker sends them."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
            signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt),
        }
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_sweep(
    path: Path | str,
    workers: int = 1,
    storage: str | None = None,
    say: Callable[[str], None] = print,
) -> Summary:
    """Feed the study of sweep.yaml with this machine's workers until it has all its trials."""
    if workers < 1:
        raise ExigoError(f"--workers: at least 1 (got {workers})")
    project = Project.here(sweep_file=Path(path))
    cfg = load_sweep(path, project.root / PARAMS_FILE)
    tracking_uri(project.root)  # the trials' MLflow store: a bad one stops here, before any trial
    url = storage or studies.default_storage(project.root)
    _check_objective(project, cfg, say)
    study = studies.open_study(cfg, url)
    say(
        f"study {cfg.study}: {cfg.trials} trials, {cfg.objective.direction} "
        f"{cfg.objective.metric}; {workers} worker(s) here; storage {studies.safe_url(url)}"
    )
    with _interrupt_signals():
        Sweep(project, cfg, url, say).run(workers)
    summary = Summary(cfg.study, url, studies.counts(study), studies.best(study))
    for line in describe(summary, cfg):
        say(line)
    done = summary.counts[TrialState.COMPLETE] + summary.counts[TrialState.PRUNED]
    open_ = summary.counts[TrialState.RUNNING] + summary.counts[TrialState.WAITING]
    if done < cfg.trials and not open_:
        raise ExigoError(
            f"study {cfg.study} stopped after {studies.failures(study)} failed trials "
            f"(max_failed: {cfg.failure_limit}); their reasons: optuna trials or the logs in "
            f"{project.sweep_dir.relative_to(project.root)}/logs"
        )
    return summary


def describe(summary: Summary, cfg: SweepConfig) -> list[str]:
    """The closing lines: the study's counts and its best trial with its experiment name."""
    c = summary.counts
    lines = [
        f"study {summary.study}: {c[TrialState.COMPLETE]} complete, {c[TrialState.PRUNED]} pruned, "
        f"{c[TrialState.FAIL]} failed"
        + (f", {c[TrialState.RUNNING]} still running elsewhere" if c[TrialState.RUNNING] else "")
    ]
    best = summary.best
    if best is None:
        lines.append("no complete trial yet")
        return lines
    exp = best.user_attrs.get("exigo.experiment", "?")
    shown = " ".join(f"{k}={_short(v)}" for k, v in best.params.items())
    lines += [
        f"best: trial {best.number}, experiment {exp}: {cfg.objective.metric} {best.value:.6g}",
        f"  {shown}",
        f"  dvc exp show  # all trials side by side;  dvc exp apply {exp}  # its results here",
    ]
    return lines
