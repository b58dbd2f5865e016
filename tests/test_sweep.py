"""`exigo sweep`: sweep.yaml validation, the Optuna study's slots, the per-epoch reader and the
pruning stop, and (slow) real studies: two workers in two clones sharing one study and a bare
git remote, and Ctrl-C in the middle of a trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, dvc, init_repo, make_env, make_project, sh, tiny_params
from optuna.trial import TrialState

from exigo.core.errors import ExigoError
from exigo.sweep import study as studies
from exigo.sweep.config import SweepConfig, SweepError, load_sweep, override
from exigo.sweep.trial import EpochReader, report, run_watched
from exigo.sweep.workspace import Project, find_metric, last_error

SPACE = {"train.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}


def write_sweep(folder: Path, **fields) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump({"study": "s", "trials": 3, "space": SPACE, **fields}))
    return path


def test_the_example_sweep_yaml_fits_params_yaml():
    cfg = load_sweep(ROOT / "sweep.yaml", ROOT / "params.yaml")
    assert cfg.objective.metric == "val_acc" and cfg.objective.direction == "maximize"
    assert cfg.space["train.optimizer"].choices == ("adamw", "sgd")  # a list is categorical


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"trials": 0}, "sweep.yaml: trials: input should be greater than or equal to 1 (got 0)"),
        ({"study": "a b"}, "sweep.yaml: study: a study name is letters"),
        ({"space": {}}, "sweep.yaml: space: dictionary should have at least 1 item"),
        ({"space": {"train.lr": {"type": "float", "low": 0.1}}}, "space.train.lr: float needs low"),
        (
            {"space": {"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}},
            "space.train.lr: log needs low > 0 (got 0)",
        ),
        (
            {"space": {"train.lr": {"type": "uniform", "low": 0, "high": 1}}},
            "space.train.lr.type: input should be 'float', 'int' or 'categorical' (got 'uniform')",
        ),
        (
            {"space": {"train.lr": {"type": "float", "low": 0, "high": 1, "lg": True}}},
            "space.train.lr.lg: unknown key; section 'space.train.lr' allows: type, low, high",
        ),
        (
            {"space": {"train.epochs": {"type": "int", "low": 1, "high": 2.5}}},
            "space.train.epochs: int needs whole numbers (high = 2.5)",
        ),
        ({"objective": {"direction": "up"}}, "objective.direction: input should be 'maximize'"),
        ({"sampler": {"name": "bayes"}}, "sampler.name: input should be 'tpe', 'random'"),
        ({"pruners": {}}, "pruners: unknown key; sweep.yaml allows: study, trials, objective"),
        ({"enqueue": [{"train.epochs": 3}]}, "enqueue.0.train.epochs: not in space"),
        ({"enqueue": [{"train.lr": 5}]}, "enqueue.0.train.lr: 5 is outside its space"),
        ({"space": {"train.lrr": SPACE["train.lr"]}}, "space.train.lrr: no such param in"),
        ({"space": {"train": SPACE["train.lr"]}}, "space.train: a section, not one param in"),
    ],
)
def test_a_bad_sweep_yaml_names_the_key(tmp_path, fields, expected):
    with pytest.raises(SweepError) as err:
        load_sweep(write_sweep(tmp_path, **fields), ROOT / "params.yaml")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_a_bad_value_is_left_to_the_trial(tmp_path):
    """Params validation is the stage's: an invalid value in the space is one failed trial."""
    space = {"train.momentum": {"type": "float", "low": 0.0, "high": 1.0}}
    path = write_sweep(tmp_path, space=space, enqueue=[{"train.momentum": 1.0}])
    assert load_sweep(path, ROOT / "params.yaml").enqueue == ({"train.momentum": 1.0},)


def test_overrides_read_back_as_the_same_values(tmp_path):
    """`-S key=value` goes through DVC's own override parser and comes back unchanged."""
    from dvc.utils.hydra import apply_overrides

    values = {"f": 0.012345678901234, "g": -2.5, "i": 64, "s": "adamw", "t": "true", "n": None,
              "b": True, "q": "it's", "num": "1", "p": "/x/y-z.gz", "e": ""}  # fmt: skip
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"a": dict.fromkeys(values, 0)}))
    apply_overrides(str(path), [override(f"a.{k}", v) for k, v in values.items()])
    back = yaml.safe_load(path.read_text())["a"]
    assert {k: (type(v), v) for k, v in back.items()} == {
        k: (type(v), v) for k, v in values.items()
    }
    assert override("a.lr", 1e-05) == "a.lr=1.0e-05"  # `1e-05` would be a string to DVC


def test_the_metric_is_found_by_its_key_in_whichever_file_holds_it():
    files = {
        "metrics/train/metrics.json": {"val_acc": 0.9, "val_loss": 0.3},
        "metrics/evaluate.json": {"accuracy": 0.8, "macro.f1": 0.7, "name": "x"},
    }
    assert find_metric(files, "val_acc") == ("metrics/train/metrics.json", 0.9)
    assert find_metric(files, "macro.f1") == ("metrics/evaluate.json", 0.7)
    assert find_metric(files, "metrics/evaluate.json:accuracy")[1] == 0.8
    files["metrics/other.json"] = {"val_acc": 0.5}
    with pytest.raises(ExigoError, match="is in metrics/train/metrics.json and metrics/other"):
        find_metric(files, "val_acc")
    assert find_metric(files, "metrics/other.json:val_acc")[1] == 0.5
    with pytest.raises(ExigoError, match="no key 'val_f1' in any metrics file"):
        find_metric(files, "val_f1")
    with pytest.raises(ExigoError, match="not a number"):
        find_metric(files, "name")


def test_the_reason_is_the_line_that_says_why():
    log = "Running stage 'train':\nerror: params.yaml: train.lr: bad\nERROR: failed to reproduce\n"
    assert last_error(log) == "error: params.yaml: train.lr: bad"
    assert (
        last_error("x\nERROR: failed to reproduce 'train'\n\n")
        == "ERROR: failed to reproduce 'train'"
    )
    assert last_error("") == "failed (no output)"


def test_epoch_reader_returns_each_complete_row_once(tmp_path):
    path = tmp_path / "val_acc.tsv"
    reader = EpochReader(path)
    assert reader.new_rows() == []  # not written yet
    path.write_text("timestamp\tstep\tval_acc\n")
    assert reader.new_rows() == []
    path.write_text("timestamp\tstep\tval_acc\n1700000000\t1\t0.5\n1700000001\t2\t0.6")
    assert reader.new_rows() == [(1, 0.5)]  # row 2 is still being written
    with path.open("a") as fh:
        fh.write("5\n1700000002\t3\t0.7\n")
    assert reader.new_rows() == [(2, 0.65), (3, 0.7)]
    assert reader.new_rows() == []


def in_memory_study(pruner) -> optuna.Study:
    return optuna.create_study(direction="maximize", pruner=pruner)


def test_a_hopeless_trial_is_pruned_but_never_at_its_last_epoch():
    study = in_memory_study(optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    assert report(trial, [(1, 0.9), (2, 0.8)], last_step=3, running=True) is None
    assert report(trial, [(3, 0.1)], last_step=3, running=True) is None  # training is over
    trial = study.ask()
    assert report(trial, [(1, 0.2), (2, 0.1)], last_step=3, running=True) == 1
    assert report(study.ask(), [(1, 0.2)], last_step=3, running=False) is None  # exited already


FAKE_TRAINING = """
import os, subprocess, sys, time
from pathlib import Path
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
Path("child.pid").write_text(str(child.pid))
out = Path("metrics/train/plots/metrics/val_acc.tsv")
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("timestamp\\tstep\\tval_acc\\n")
for step, value in enumerate([float(v) for v in sys.argv[1:]], 1):
    time.sleep(0.3)
    with out.open("a") as fh:
        fh.write(f"0\\t{step}\\t{value}\\n")
if "fail" in os.environ.get("FAKE", ""):
    print("error: params.yaml: train.lr: input should be greater than 0", file=sys.stderr)
    sys.exit(2)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def watch(tmp_path, values, pruner, stop=None, env=None):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINING)
    study = in_memory_study(pruner)
    trial = study.ask()
    outcome = run_watched(
        [sys.executable, str(script), *map(str, values)],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        log_path=tmp_path / "logs" / "t.log",
        trial=trial,
        reader=EpochReader(tmp_path / "metrics/train/plots/metrics/val_acc.tsv"),
        last_step=len(values),
        stop=stop or threading.Event(),
    )
    return study, trial, outcome


def test_a_pruned_trial_stops_its_whole_process_group(tmp_path):
    values = [0.9, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    study, trial, outcome = watch(tmp_path, values, optuna.pruners.ThresholdPruner(lower=0.5))
    assert outcome.state == TrialState.PRUNED and outcome.reason == "pruned at step 2"
    assert not _alive(int((tmp_path / "child.pid").read_text()))  # the stage's children too
    study.tell(trial, state=TrialState.PRUNED)
    (frozen,) = study.trials
    assert frozen.state == TrialState.PRUNED
    assert frozen.intermediate_values == {1: 0.9, 2: 0.2}  # kept, and no epoch after the stop


def test_a_trial_runs_to_its_end_and_reports_every_epoch(tmp_path):
    study, trial, outcome = watch(tmp_path, [0.3, 0.6, 0.8], optuna.pruners.NopPruner())
    assert outcome.state == TrialState.COMPLETE
    assert study.trials[0].intermediate_values == {1: 0.3, 2: 0.6, 3: 0.8}


def test_a_failed_trial_gives_its_reason_and_keeps_its_log(tmp_path):
    _, _, outcome = watch(tmp_path, [0.3], optuna.pruners.NopPruner(), env={"FAKE": "fail"})
    assert outcome.state == TrialState.FAIL
    assert outcome.reason == "error: params.yaml: train.lr: input should be greater than 0"
    assert "error: params.yaml" in (tmp_path / "logs" / "t.log").read_text()


def test_an_interrupt_stops_the_trial(tmp_path):
    stop = threading.Event()
    threading.Timer(0.8, stop.set).start()
    _, _, outcome = watch(tmp_path, [0.5] * 20, optuna.pruners.NopPruner(), stop=stop)
    assert outcome.state == TrialState.FAIL and outcome.reason == "interrupted"
    assert not _alive(int((tmp_path / "child.pid").read_text()))


def config(**fields) -> SweepConfig:
    return SweepConfig.model_validate({"study": "s", "trials": 4, "space": SPACE, **fields})


def test_a_study_holds_exactly_its_trials_as_slots(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = config(enqueue=[{"train.lr": 0.01}], sampler={"name": "random", "seed": 3})
    study = studies.open_study(cfg, url)
    assert [t.state for t in study.trials] == [TrialState.WAITING] * 4
    first = studies.claim(study, url, cfg)
    assert first.number == 0 and cfg.space["train.lr"].suggest(first, "train.lr") == 0.01
    again = studies.open_study(cfg, url)  # a second worker loads the same study
    others = [studies.claim(again, url, cfg) for _ in range(4)]
    assert [t.number for t in others[:3]] == [1, 2, 3] and others[3] is None
    # Seeded per trial: trial k draws the same value in any worker, and trials differ.
    lrs = [cfg.space["train.lr"].suggest(t, "train.lr") for t in others[:3]]
    assert len(set(lrs)) == 3
    again.tell(others[0], state=TrialState.FAIL)
    assert studies.replace_slot(again, others[0].number)
    assert studies.claim(again, url, cfg).number == 4
    changed = {**cfg.model_dump(), "trials": 5, "space": {**SPACE, "train.epochs": [1, 2]}}
    with pytest.raises(SweepError, match="started with a different space, trials; give"):
        studies.open_study(SweepConfig.model_validate(changed), url)


def test_failed_trials_are_replaced_until_max_failed(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = config(trials=2, max_failed=2)
    study = studies.open_study(cfg, url)
    replaced = []
    while (trial := studies.claim(study, url, cfg)) is not None:
        trial.set_user_attr(studies.ERROR_ATTR, "boom")
        study.tell(trial, state=TrialState.FAIL)
        replaced.append(studies.replace_slot(study, trial.number))
    assert replaced == [True, False, False]  # 2 failures reach the limit: the last slot runs
    trial = studies.claim(studies.open_study(cfg, url), url, cfg)
    assert trial is None
    # An interrupted trial is not a failure of the search: it is always replaced.
    cfg2 = config(study="t", trials=1, max_failed=1)
    study = studies.open_study(cfg2, url)
    trial = studies.claim(study, url, cfg2)
    trial.set_user_attr(studies.ERROR_ATTR, studies.INTERRUPTED)
    study.tell(trial, state=TrialState.FAIL)
    assert studies.replace_slot(study, trial.number)


def _claim_all(url: str, raw: dict) -> list[int]:
    cfg = SweepConfig.model_validate(raw)
    study = studies.open_study(cfg, url)
    numbers = []
    while (trial := studies.claim(study, url, cfg)) is not None:
        numbers.append(trial.number)
        time.sleep(0.05)
    return numbers


def test_workers_in_several_processes_never_claim_one_trial_twice(tmp_path):
    """Three processes open one new SQLite study at once and claim its 24 trials."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    raw = {"study": "race", "trials": 24, "space": SPACE}
    with ProcessPoolExecutor(3, mp_context=get_context("spawn")) as pool:
        claimed = list(pool.map(_claim_all, [url] * 3, [raw] * 3))
    numbers = sorted(n for worker in claimed for n in worker)
    assert numbers == list(range(24)), claimed
    assert sum(1 for worker in claimed if worker) >= 2  # they did share the work


def test_trials_start_from_committed_code(tmp_path):
    env = make_env(tmp_path)
    project = init_repo(make_project(tmp_path / "p", tiny_params()), env)
    (project / "dvc.lock").write_text("schema: '2.0'\n")  # results may differ from HEAD ...
    (project / "sweep.yaml").write_text("study: committed\n")
    sh(["git", "add", "dvc.lock", "sweep.yaml"], project, env)
    sh(["git", "commit", "-qm", "lock"], project, env)
    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (project / "sweep.yaml").write_text("study: edited\n")  # the sweep's own file may change too
    assert Project.here(project, sweep_file=project / "sweep.yaml").head
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + "\n")
    with pytest.raises(ExigoError, match=r"uncommitted changes in params.yaml: trials start"):
        Project.here(project, project / "sweep.yaml")  # ... but an edit of params would be lost


def test_the_command_gives_one_line_outside_a_project(tmp_path, stage_env):
    result = subprocess.run(
        [sys.executable, "-m", "exigo.cli", "sweep", "sweep.yaml"],
        cwd=tmp_path,
        env=stage_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}: not a DVC project root (run exigo sweep where dvc.yaml is)"
    ]


# ---------------------------------------------------------------------------------------------
# Real studies: every trial a real `dvc exp run` of the whole pipeline on the tiny dataset.

STUDY = "tiny"
TRIALS = 6
SWEEP = {
    "study": STUDY,
    "trials": TRIALS,
    "objective": {"metric": "val_acc", "direction": "maximize"},
    "space": {
        "train.lr": {"type": "float", "low": 0.003, "high": 0.05, "log": True},
        "train.momentum": {"type": "float", "low": 0.0, "high": 1.0},  # 1.0 is not a valid value
    },
    "enqueue": [{"train.momentum": 1.0}],  # the deliberately invalid trial: trial 0 fails
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "median", "n_startup_trials": 2},
}


def sweep_params(tiny_idx) -> dict:
    data = {
        "name": "idx",
        "source": str(tiny_idx.folder),
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    saliency = {"methods": ["gradient"], "n_eval": 20, "n_randomization": 4, "n_pairs": 1}
    train = {"epochs": 1, "batch_size": 32, "lr": 0.01, "device": "cpu"}
    return tiny_params(data=data, train=train, embed={"method": "pca"}, saliency=saliency)


def start_sweep(cwd: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "exigo.cli", "sweep", "sweep.yaml", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 1500) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"exigo sweep did not finish in {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


@pytest.mark.slow
def test_two_machines_feed_one_study_through_a_shared_storage(tmp_path, tiny_idx):
    """Two clones of one repo (two machines), each running `exigo sweep`, one SQLite study, one
    MLflow store, a bare git remote and a DVC remote: 6 trials in total, run once each."""
    env = make_env(tmp_path)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    remote, store = tmp_path / "remote.git", tmp_path / "dvc-store"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(remote)], tmp_path, env)
    seed = init_repo(make_project(tmp_path / "seed" / "exigo-sweep", sweep_params(tiny_idx)), env)
    (seed / "sweep.yaml").write_text(yaml.safe_dump(SWEEP, sort_keys=False))
    dvc("remote", "add", "-d", "store", str(store), cwd=seed, env=env)
    sh(["git", "add", "-A"], seed, env)
    sh(["git", "commit", "-qm", "sweep"], seed, env)
    sh(["git", "remote", "add", "origin", str(remote)], seed, env)
    sh(["git", "push", "-q", "-u", "origin", "main"], seed, env)
    clones = []
    for machine in ("m1", "m2", "m3"):
        clone = tmp_path / machine / "exigo-sweep"
        clone.parent.mkdir()
        sh(["git", "clone", "-q", str(remote), str(clone)], tmp_path, env)
        for key in ("user.name", "user.email"):
            sh(["git", "config", key, "test"], clone, env)
        clones.append(clone)

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    procs = [start_sweep(clone, env, "--storage", storage) for clone in clones[:2]]
    finished = []
    while len(finished) < 2:
        for proc in procs:
            if proc not in [p for p, _ in finished] and proc.poll() is not None:
                finished.append((proc, finish(proc)))
        time.sleep(1)
    for _, (code, out, err) in finished:
        assert code == 0, out + err

    study = optuna.load_study(study_name=STUDY, storage=storage)
    by_state = {s: [t for t in study.trials if t.state == s] for s in TrialState}
    done = by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED]
    assert len(done) == TRIALS
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]
    (failed,) = by_state[TrialState.FAIL]
    assert failed.params["train.momentum"] == 1.0
    assert failed.user_attrs["exigo.error"] == (
        "error: params.yaml: train.momentum: input should be less than 1 (got 1.0)"
    )
    log = Path(failed.user_attrs["exigo.log"])
    assert log.is_relative_to(clones[0]) or log.is_relative_to(clones[1])
    assert "input should be less than 1" in log.read_text()  # the failed trial's log is kept
    # Both machines ran trials, and no two trials drew the same params.
    ran_in = {Path(t.user_attrs["exigo.log"]).parents[3] for t in study.trials}
    assert ran_in == set(clones[:2])
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == len(study.trials)

    # The experiments went to the remote: a third clone pulls and lists them.
    names = {t.user_attrs["exigo.experiment"] for t in by_state[TrialState.COMPLETE]}
    assert names == {f"{STUDY}-{t.number}" for t in by_state[TrialState.COMPLETE]}
    viewer = clones[2]
    dvc("exp", "pull", "-A", "origin", cwd=viewer, env=env)
    shown = json.loads(dvc("exp", "show", "--json", cwd=viewer, env=env).stdout)
    listed = {e.get("name") for base in shown for e in (base.get("experiments") or [])}
    assert listed == names and len(listed) == len(by_state[TrialState.COMPLETE])
    # ... each with its metrics and its data: the best one applies in the third clone.
    best = study.best_trial
    dvc("exp", "apply", f"{STUDY}-{best.number}", cwd=viewer, env=env)
    train_metrics = json.loads(dvc("metrics", "show", "--json", cwd=viewer, env=env).stdout)
    values = [v["data"].get("val_acc") for v in train_metrics[""]["data"].values() if "data" in v]
    assert best.value in values
    assert (viewer / "models" / "model.pt").exists()

    # The best trial is reported with its experiment name by the worker that finished last.
    last_out = finished[-1][1][1]
    assert f"best: trial {best.number}, experiment {STUDY}-{best.number}: val_acc" in last_out

    # One MLflow run per finished trial, in the shared store, tagged with study and trial.
    client = mlflow_client(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == len(by_state[TrialState.COMPLETE])
    assert {r.data.tags["dvc.exp_name"] for r in runs} == names
    for run in runs:
        assert run.data.tags["optuna.study"] == STUDY
        assert run.data.tags["dvc.exp_name"] == f"{STUDY}-{run.data.tags['optuna.trial']}"


def mlflow_client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


@pytest.mark.slow
def test_ctrl_c_stops_a_worker_cleanly_and_the_study_goes_on(tmp_path, tiny_idx):
    env = make_env(tmp_path)
    project = init_repo(make_project(tmp_path / "exigo-ctrlc", sweep_params(tiny_idx)), env)
    sweep = {**SWEEP, "trials": 1, "enqueue": []}
    (project / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    proc = start_sweep(project, env)
    log = project / ".exigo" / "sweep" / "logs" / f"{STUDY}-0.log"
    deadline = time.monotonic() + 600
    while "Running stage 'train'" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, finish(proc, 10)
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C reaches the sweep (the trial has its own group)
    code, out, err = finish(proc, 180)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", out + err

    storage = f"sqlite:///{project / 'optuna.db'}"
    study = optuna.load_study(study_name=STUDY, storage=storage)
    (stopped, slot) = study.trials
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["exigo.error"] == "interrupted"
    assert slot.state == TrialState.WAITING  # its replacement: the study is still whole
    clone = project / ".exigo" / "sweep" / "workers" / "0"
    assert sh(["git", "status", "--porcelain"], clone, env).stdout == ""  # params.yaml restored
    assert sh(["git", "status", "--porcelain"], project, env).stdout == "?? sweep.yaml\n"
    assert not [p for p in _processes_in(clone)], "a trial process outlived the sweep"

    code, out, err = finish(start_sweep(project, env))
    assert code == 0, out + err
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert f"best: trial 1, experiment {STUDY}-1" in out


@pytest.mark.slow
def test_a_real_trial_is_pruned_from_dvclive_values_and_leaves_a_clean_clone(tmp_path, tiny_idx):
    """The pruner reads the epochs DVCLive writes while `dvc exp run` trains, stops the trial
    (its whole process group), records it as pruned with the epochs it reached, and the next
    trial starts from a clean clone."""
    env = make_env(tmp_path)
    params = sweep_params(tiny_idx)
    params["train"]["epochs"] = 60  # long enough for the pruner to see epochs while it trains
    project = init_repo(make_project(tmp_path / "exigo-prune", params), env)
    pruner = {"name": "threshold", "lower": 1.5}  # no accuracy reaches it: prune at once
    sweep = {**SWEEP, "trials": 1, "enqueue": [], "pruner": pruner}
    sweep["space"] = {"train.lr": SWEEP["space"]["train.lr"]}
    (project / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    code, out, err = finish(start_sweep(project, env), 900)
    assert code == 0, out + err

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{project / 'optuna.db'}")
    (pruned,) = study.trials
    assert pruned.state == TrialState.PRUNED, (pruned.state, pruned.user_attrs, out, err)
    steps = sorted(pruned.intermediate_values)
    assert steps and steps[0] == 1 and steps[-1] < 60  # its partial values are kept
    assert all(0.0 <= v <= 1.0 for v in pruned.intermediate_values.values())
    assert pruned.user_attrs["exigo.pruned"] == f"pruned at step {steps[-1]}"
    clone = project / ".exigo" / "sweep" / "workers" / "0"
    assert sh(["git", "status", "--porcelain"], clone, env).stdout == ""
    assert not _processes_in(clone), "a stage of the pruned trial outlived it"
    assert not (project / "mlflow.db").exists() or not _runs(project / "mlflow.db")


def _runs(db: Path) -> list:
    client = mlflow_client(f"sqlite:///{db}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _processes_in(folder: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if cwd and Path(cwd).is_relative_to(folder):
            found.append(proc.pid)
    return found


def test_tags_and_env_reach_the_trial(tmp_path):
    """The trial's environment names its study and number and the project's MLflow store."""
    from exigo.sweep.workspace import trial_env

    project = Project(tmp_path / "exigo-x", "0" * 40, None, str(tmp_path / "cache"))
    env = trial_env(project, "s", 7)
    assert env["EXIGO_SWEEP_STUDY"] == "s" and env["EXIGO_SWEEP_TRIAL"] == "7"
    if "MLFLOW_TRACKING_URI" not in os.environ:
        assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{project.root / 'mlflow.db'}"
    assert env["MLFLOW_EXPERIMENT_NAME"] == os.environ.get("MLFLOW_EXPERIMENT_NAME", "exigo-x")


def test_a_remote_given_as_a_relative_path_is_found_from_the_worker_clones():
    from exigo.sweep.workspace import _absolute

    root = Path("/srv/exigo")
    assert _absolute("../remote.git\n", root) == "/srv/remote.git"
    for url in ("/r.git", "git@example.com:team/exigo.git", "https://example.com/x.git"):
        assert _absolute(url, root) == url
