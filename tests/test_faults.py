"""Damaged checkpoints and splits, metrics files missing keys, full disks: one clear line each.

The full-disk tests run a real stage with one output folder on a tiny tmpfs, mounted in a
private mount namespace (`unshare --mount --map-root-user`): a real ENOSPC from the kernel,
seen by nothing outside the process and gone when it exits.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_project, read_files, run_stage, tiny_params, write_tiny_idx

from exigo.core.errors import ExigoError
from exigo.data.splits import load_dataset
from exigo.models.checkpoint import load_checkpoint

CUT_STEP = 97  # bytes between cut points (a prime, so cuts fall at every offset within blocks)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """A project after the real download and train stages (run in this process, which saves two
    interpreter starts): a real checkpoint and real splits."""
    import os

    from conftest import make_env

    from stages import download, train

    tmp = tmp_path_factory.mktemp("faults")
    tiny = write_tiny_idx(tmp / "idx")
    data = {"name": "idx", "source": str(tiny.folder), "idx": {"sha256": tiny.payload_sha256}}
    project = make_project(tmp / "proj", tiny_params(data=data), code=False)
    env = make_env(tmp)
    cwd = Path.cwd()
    os.chdir(project)
    try:
        download.main()
        train.main()
    finally:
        os.chdir(cwd)
    return project, env


@pytest.fixture
def project(trained, tmp_path) -> Path:
    """A private copy of the trained project, free to damage."""
    copy = tmp_path / "proj"
    shutil.copytree(trained[0], copy)
    return copy


def cuts(size: int) -> list[int]:
    """Every CUT_STEP bytes, plus every one of the first and last 64 bytes."""
    return sorted(
        {*range(0, size, CUT_STEP), *range(min(64, size)), *range(max(0, size - 64), size)}
    )


def one_line(exc: ExigoError, path: Path, stage: str) -> bool:
    msg = str(exc)
    return "\n" not in msg and bool(
        re.fullmatch(
            rf"{re.escape(str(path))}: unreadable \(.+\); run dvc repro {stage} again", msg
        )
    )


def test_every_cut_of_a_checkpoint_is_one_line(project):
    path = project / "models/model.pt"
    whole = path.read_bytes()
    points = cuts(len(whole))
    outcomes = {"one line": 0, "other": []}
    for cut in points:
        path.write_bytes(whole[:cut])
        try:
            load_checkpoint(path)
            outcomes["other"].append((cut, "loaded"))
        except ExigoError as exc:
            if one_line(exc, path, "train"):
                outcomes["one line"] += 1
            else:
                outcomes["other"].append((cut, str(exc)))
        except Exception as exc:  # a traceback in a stage
            outcomes["other"].append((cut, repr(exc)))
    print(
        f"checkpoint of {len(whole):,} bytes: {len(points)} cut points, {outcomes['one line']} one-line errors"
    )
    assert outcomes["other"] == [] and len(points) > 300


def test_every_cut_of_a_split_file_is_one_line(project):
    path = project / "data/idx/test.pt"
    whole = path.read_bytes()
    points = sorted({*cuts(len(whole)), 50_000})  # the cut at 50 kB
    assert len(whole) > 50_000
    bad = []
    for cut in points:
        path.write_bytes(whole[:cut])
        try:
            load_dataset(project / "data/idx")
            bad.append((cut, "loaded"))
        except ExigoError as exc:
            if not one_line(exc, path, "download"):
                bad.append((cut, str(exc)))
        except Exception as exc:
            bad.append((cut, repr(exc)))
    print(f"split file of {len(whole):,} bytes: {len(points)} cut points")
    assert bad == [] and len(points) > 800


class _Mkdir:
    """Unpickling this calls os.mkdir(path): a stand-in for any code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


def _foreign(kind: str, path: Path, ran: Path) -> str:
    """Write a file exigo did not write at `path`; return what the error should say."""
    import os
    import pickle

    if kind == "random":
        path.write_bytes(os.urandom(4096))
        return "not a file exigo's {stage} stage wrote"
    if kind == "pickle":  # a bare pickle, torch's old format
        path.write_bytes(pickle.dumps({"weights": _Mkdir(ran)}))
        return "unsafe content refused: it would run code when loaded"
    torch.save({"weights": _Mkdir(ran)}, path)  # torch's zip archive, a global inside
    return "unsafe content refused: it would run posix.mkdir when loaded"


@pytest.mark.parametrize("kind", ["random", "pickle", "torch-zip"])
@pytest.mark.parametrize("name", ["models/model.pt", "data/idx/test.pt"])
def test_a_foreign_or_malicious_file_says_what_is_wrong(project, tmp_path, kind, name):
    """Never torch's advice to load with weights_only=False, and nothing in the file runs."""
    path, ran = project / name, tmp_path / "ran"
    stage = "train" if name.startswith("models") else "download"
    why = _foreign(kind, path, ran).format(stage=stage)
    with pytest.raises(ExigoError) as err:
        load_checkpoint(path) if stage == "train" else load_dataset(project / "data/idx")
    assert str(err.value) == f"{path}: unreadable ({why}); run dvc repro {stage} again"
    assert not ran.exists()


def test_a_malicious_checkpoint_through_a_stage(project, trained, tmp_path):
    """One line from the stage: no torch warning, no traceback, no weights_only advice."""
    _foreign("torch-zip", project / "models/model.pt", tmp_path / "ran")
    line = _stage_line(run_stage("evaluate", project, trained[1], check=False))
    assert line == (
        "error: models/model.pt: unreadable (unsafe content refused: it would run posix.mkdir "
        "when loaded); run dvc repro train again"
    )
    assert not (tmp_path / "ran").exists()


def _resave(path: Path, edit) -> None:
    blob = torch.load(path, weights_only=True)
    edit(blob)
    torch.save(blob, path)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda c: c["model"]["settings"].update(channels=[32, 64]),
            "weights do not fit its model",
        ),
        (lambda c: c["model"].update(name="basic_cnn"), "weights do not fit its model"),
        (lambda c: c.update(classes=["a", "b", "c"]), "weights do not fit its model"),
        (lambda c: c["state_dict"].pop("head.weight"), "weights do not fit its model"),
        (lambda c: c.update(state_dict=[1, 2]), "weights do not fit its model"),
        (lambda c: c.pop("classes"), "no 'classes'"),
        (lambda c: c["normalization"].pop("std"), "no 'normalization.std'"),
        (lambda c: c["model"].update(settings="wide"), "weights do not fit its model"),
    ],
    ids=[
        "channels",
        "model-name",
        "classes",
        "missing-weight",
        "weights-list",
        "no-classes",
        "no-std",
        "settings-str",
    ],
)
def test_checkpoint_whose_metadata_disagrees_with_its_weights(project, edit, expected):
    path = project / "models/model.pt"
    _resave(path, edit)
    with pytest.raises(ExigoError) as err:
        load_checkpoint(path)
    assert one_line(err.value, path, "train") and expected in str(err.value), str(err.value)


def _stage_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_damaged_checkpoint_through_a_stage(project, trained):
    """The same one line from a stage: exit 2, no traceback."""
    env = trained[1]
    (project / "models/model.pt").write_bytes(b"")
    line = _stage_line(run_stage("evaluate", project, env, check=False))
    assert line == "error: models/model.pt: unreadable (empty file); run dvc repro train again"


@pytest.mark.parametrize(
    "evaluation, key",
    [
        ({"accuracy": 0.5}, "no 'confused'"),
        ({"confused": {"top1": {"true": 1, "count": 3}}}, "no 'confused.top1.predicted'"),
        ({"confused": {"top1": {"true": 1, "predicted": 42, "count": 3}}}, "names no class"),
        ({"confused": ["1", "2"]}, "'confused' is not a mapping"),
    ],
)
def test_evaluation_missing_keys_is_one_line(evaluation, key, tmp_path):
    from stages.saliency import confused_pairs

    path = tmp_path / "evaluate.json"
    path.write_text(json.dumps(evaluation))
    with pytest.raises(ExigoError) as err:
        confused_pairs(path, 3, 10)
    assert one_line(err.value, path, "evaluate") and key in str(err.value), str(err.value)


@pytest.mark.slow  # a stage run; confused_pairs() itself is tested above
def test_saliency_stage_with_evaluation_missing_keys(project, trained):
    metrics = project / "metrics/detail/evaluate.json"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({"accuracy": 0.5}))
    line = _stage_line(run_stage("saliency", project, trained[1], check=False))
    assert line == (
        "error: metrics/detail/evaluate.json: unreadable (no 'confused'); "
        "run dvc repro evaluate again"
    )


def test_confused_pairs_reads_what_evaluate_writes(tmp_path):
    from stages.saliency import confused_pairs

    path = tmp_path / "evaluate.json"
    ranks = {
        "top1": {"true": 4, "predicted": 9, "count": 5},
        "top2": {"true": 3, "predicted": 5, "count": 2},
    }
    path.write_text(json.dumps({"confused": ranks}))
    assert confused_pairs(path, 3, 10) == [(4, 9), (3, 5)]
    assert confused_pairs(path, 1, 10) == [(4, 9)]


# --- Full disks ------------------------------------------------------------------------------


def on_full_disk(stage: str, project: Path, env: dict, folder: str, size: str):
    """Run a stage with `folder` (inside the project, or absolute) on a tmpfs of `size`; prints
    what is left in that folder afterwards as `left: ...`."""
    script = (
        f'mkdir -p "{folder}" && mount -t tmpfs -o size={size} tmpfs "{folder}" && '
        f'"{sys.executable}" -m stages.{stage}; rc=$?; echo "left: $(ls -A "{folder}")"; exit $rc'
    )
    return subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _left(result) -> str:
    return result.stdout.rsplit("left:", 1)[1].strip()


def test_full_disk_while_train_writes_its_checkpoint(project, trained):
    shutil.rmtree(project / "models")
    result = on_full_disk("train", project, trained[1], "models", "16k")
    line = _stage_line(result)
    size = len((trained[0] / "models/init.pt").read_bytes())
    assert re.fullmatch(
        r"error: models/init\.pt: no space left on device \(needed (\d+\.\d) kB, [\d.,]+ \w+ free"
        r" there\); free some space and run again",
        line,
    ), line
    assert f"needed {size / 1000:.1f} kB" in line
    assert _left(result) == ""  # nothing half-written, no temporary file


@pytest.mark.slow  # the same atomic write as the checkpoint's, for a file of unknown size
def test_full_disk_while_evaluate_writes_its_plots(project, trained):
    result = on_full_disk("evaluate", project, trained[1], "plots/evaluate", "4k")
    line = _stage_line(result)
    assert re.fullmatch(
        r"error: plots/evaluate/\S+: no space left on device \(size not known in advance, .*\);"
        r" free some space and run again",
        line,
    ), line
    assert ".tmp" not in _left(result)


@pytest.mark.slow  # the same atomic write as the checkpoint's
def test_full_disk_while_download_writes_the_splits(tmp_path, stage_env, tiny_idx):
    data = {
        "name": "idx",
        "source": str(tiny_idx.folder),
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    project = make_project(tmp_path / "proj", tiny_params(data=data), code=False)
    result = on_full_disk("download", project, stage_env, "data", "64k")
    line = _stage_line(result)
    assert re.match(r"error: data/idx/\w+\.pt: no space left on device \(needed [\d.]+ kB", line)
    assert ".tmp" not in _left(result)


def test_full_download_cache_is_a_warning_naming_the_cache(tmp_path, stage_env, tiny_idx, mirror):
    url = mirror.add("good", read_files(tiny_idx.folder))
    data = {"name": "idx", "source": url, "idx": {"sha256": tiny_idx.payload_sha256}}
    project = make_project(tmp_path / "proj", tiny_params(data=data), code=False)
    cache = stage_env["EXIGO_CACHE_DIR"]
    result = on_full_disk("download", project, stage_env, cache, "8k")
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stdout
    assert f"download cache {cache} (no space left on device" in warnings[0]
    assert "Traceback" not in result.stderr and "could not get" not in result.stdout
    assert (project / "data/idx/train.pt").exists()


def test_a_set_of_outputs_killed_midway_is_put_back_on_the_next_start(tmp_path, monkeypatch):
    """exigo.core.outputs.restored_on_failure, as train uses it: a real process killed with SIGKILL inside
    the block leaves its half-written set; the next entry puts the previous set back first (also
    after a put-back that was itself cut off). An exception inside the block puts it back at
    once, including files that did not exist."""
    from exigo.core.outputs import restored_on_failure

    (tmp_path / "models").mkdir()
    (tmp_path / "models/model.pt").write_text("old model")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots/loss.tsv").write_text("step\tloss\n1\t0.5\n")
    paths = ["models/model.pt", "models/init.pt", "plots"]
    code = (
        "import os, signal, sys; from pathlib import Path; from exigo.core.outputs import restored_on_failure\n"
        f"with restored_on_failure([Path(p) for p in {paths!r}], Path('.prev')):\n"
        "    Path('models/model.pt').write_text('half'); Path('models/init.pt').write_text('new')\n"
        "    Path('plots/loss.tsv').write_text('step\\tloss\\n1\\t9\\n')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == -9 and (tmp_path / "models/init.pt").read_text() == "new"
    # and a put-back cut off after it moved model.pt back: redone, model.pt left alone
    (tmp_path / ".prev/0").replace(tmp_path / "models/model.pt")

    told = []
    monkeypatch.chdir(tmp_path)
    entered = restored_on_failure([Path(p) for p in paths], Path(".prev"), lambda: told.append(1))
    with pytest.raises(KeyboardInterrupt), entered:
        assert (tmp_path / "models/model.pt").read_text() == "old model"
        assert not (tmp_path / "models/init.pt").exists()
        (tmp_path / "models/model.pt").write_text("another")
        raise KeyboardInterrupt
    assert told == [1]
    assert (tmp_path / "models/model.pt").read_text() == "old model"
    assert not (tmp_path / "models/init.pt").exists()
    assert (tmp_path / "plots/loss.tsv").read_text() == "step\tloss\n1\t0.5\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "plots"]
