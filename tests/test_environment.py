"""The environment as lineage: the lock file's hash, drift from it, the shaping packages, and
`exigo compare` telling two revisions' environments apart (a real DVC-tracked record)."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata

from conftest import dvc, make_env, sh

from exigo.compare.report import WORKSPACE, environment_diff
from exigo.core import environment


def lock_text(pins: dict[str, str]) -> str:
    """A uv.lock in uv's own format, pinning the given packages."""
    packages = "".join(
        f'\n[[package]]\nname = "{name}"\nversion = "{version}"\n'
        f'source = {{ registry = "https://pypi.org/simple" }}\n'
        for name, version in pins.items()
    )
    return 'version = 1\nrevision = 3\nrequires-python = ">=3.10"\n' + packages


def test_installed_packages_that_match_the_lock_are_locked(tmp_path):
    pins = {"numpy": metadata.version("numpy"), "torch": metadata.version("torch")}
    (tmp_path / "uv.lock").write_text(lock_text(pins))
    record = environment.describe(tmp_path)
    assert record["locked"] is True and record["drift"] == []
    assert record["lock"] == hashlib.sha256((tmp_path / "uv.lock").read_bytes()).hexdigest()
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["packages"]["opentsne"] == metadata.version("openTSNE")  # names normalised
    tags = environment.tags(record)
    assert tags["exigo.env.locked"] == "true" and "exigo.env.drift" not in tags
    assert tags["exigo.env.lock"] == record["lock"]
    assert tags["exigo.env.scikit-learn"] == metadata.version("scikit-learn")


def test_a_package_at_another_version_than_the_lock_is_drift(tmp_path):
    numpy = metadata.version("numpy")
    (tmp_path / "uv.lock").write_text(lock_text({"NumPy": "0.0.1", "torch": "9.9"}))
    record = environment.describe(tmp_path)
    assert record["locked"] is False
    assert f"numpy {numpy} (lock: 0.0.1)" in record["drift"]
    tags = environment.tags(record)
    assert tags["exigo.env.locked"] == "false"
    assert f"numpy {numpy} (lock: 0.0.1)" in tags["exigo.env.drift"]
    assert "torch" in tags["exigo.env.drift"]


def test_without_a_lock_file_the_run_says_so(tmp_path):
    tags = environment.tags(environment.describe(tmp_path))
    assert tags["exigo.env.locked"] == "no-lock-file" and tags["exigo.env.lock"] == "none"
    assert tags["exigo.env.torch"] == metadata.version("torch")


def test_compare_names_what_differs_between_two_revisions_environments(tmp_path):
    """A record committed through DVC at HEAD, another in the workspace: the diff names the
    packages and the lock that changed, and says nothing when they agree."""
    env = make_env(tmp_path)
    project = tmp_path / "proj"
    project.mkdir()
    sh(["git", "init", "-q", "-b", "main"], project, env)
    sh(["git", "config", "user.email", "t@example.com"], project, env)
    sh(["git", "config", "user.name", "t"], project, env)
    dvc("init", "-q", cwd=project, env=env)
    record = environment.describe(tmp_path)  # no lock here: lock none, locked None
    path = project / environment.RECORD
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    dvc("add", "-q", str(environment.RECORD), cwd=project, env=env)
    sh(["git", "add", "-A"], project, env)
    sh(["git", "commit", "-qm", "baseline"], project, env)
    assert environment_diff("HEAD", WORKSPACE, project) == {}

    newer = {**record, "lock": "ab" * 32, "locked": False}
    newer["packages"] = {**record["packages"], "torch": "99.0"}
    path.write_text(json.dumps(newer))
    diff = environment_diff("HEAD", WORKSPACE, project)[str(environment.RECORD)]
    assert diff["torch"] == {"old": record["packages"]["torch"], "new": "99.0"}
    assert diff["lock"] == {"old": "none", "new": "ab" * 6}
    assert diff["locked"] == {"old": "None", "new": "False"}
    assert set(diff) == {"torch", "lock", "locked"}
