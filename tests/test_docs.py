"""The documentation site: it builds with --strict, its generated reference covers the code, its
Python examples run, and (slow) it reads from disk in Chromium with the network blocked."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = ROOT / "docs"
# A ```python block runs; a ```py block (needs a trained model or a server) is shown, not run.
PYTHON_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_site(out: Path) -> Path:
    """`mkdocs build --strict` into `out`; a warning (a broken link, a docstring) fails it."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml")]
        + ["-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return build_site(tmp_path_factory.mktemp("docs") / "site")


def test_site_builds_strict_with_the_generated_reference(site):
    from exigo.core.params import Params
    from exigo.core.registry import REGISTRIES

    params = (site / "reference" / "params.html").read_text()
    for section, field in Params.model_fields.items():
        for key, sub in field.annotation.model_fields.items():
            assert f"{section}.{key}" in params, f"{section}.{key} missing from the params page"
            for inner in getattr(sub.annotation, "model_fields", {}):  # an entry's own settings
                assert f"{section}.{key}.{inner}" in params, f"{section}.{key}.{inner} missing"
    from exigo.sweep.config import SweepConfig

    sweeps = (site / "sweeps.html").read_text()
    for key in SweepConfig.model_fields:
        assert f"<code>{key}" in sweeps, f"{key} missing from the sweeps page"
    names = (site / "reference" / "names.html").read_text()
    for entry in (e for registry in REGISTRIES for e in registry):
        assert f"<code>{entry.name}</code>" in names, entry.name
    for page in site.rglob("*.html"):
        html = page.read_text()
        assert "<!-- generated:" not in html, page  # every marker was replaced
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", html), page
    assert (site / "api" / "compare.html").read_text().count('id="exigo.compare.report.build"') == 1
    assert (site / "search" / "search_index.js").exists()  # the offline plugin: search from disk


def test_params_reference_follows_the_models_and_the_comments():
    hooks = _hooks()
    text = hooks.params_reference()
    assert "| `train.optimizer` | one of | `adamw` | `adamw`, `adam`, `sgd` |" in text
    assert "| `train.lr` | number | `0.003` | > 0, ≤ 10 | peak learning rate |" in text
    assert "`saliency.methods` | list of text |" in text and "at least 1" in text
    assert "needs source" in text  # a cross-key check, from the validator
    comments = hooks.yaml_comments(
        "train:\n  lr: 0.1   # peak\n  flag: false  # one line\n     # and the next\n"
        "  name: 'a # b'  # quoted\n"
    )
    assert comments == {
        "train.lr": "peak",
        "train.flag": "one line and the next",
        "train.name": "quoted",
    }
    with pytest.raises(Exception, match="unknown generated part 'nope'"):
        hooks.render("text\n<!-- generated: nope -->\n")


def _pages_with_python() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if PYTHON_BLOCK.search(p.read_text()))


@pytest.mark.parametrize("page", _pages_with_python(), ids=lambda p: str(p.relative_to(DOCS)))
def test_python_examples_run(page, monkeypatch):
    """Each page's ```python blocks, in order, in one namespace, from the repository root."""
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__docs__"}
    for match in PYTHON_BLOCK.finditer(page.read_text()):
        code = textwrap.dedent(match.group(2))
        exec(compile(code, f"{page.name}:{match.start()}", "exec"), namespace)


def test_every_page_is_in_the_nav_and_every_figure_is_committed():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    listed = set(pages(nav))
    written = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert listed == written, listed ^ written
    images = {
        m for p in DOCS.rglob("*.md") for m in re.findall(r"\]\((img/[^)]+)\)", p.read_text())
    }
    assert images == {f"img/{p.name}" for p in (DOCS / "img").glob("*.png")}  # none unused
    sizes = {image: (DOCS / image).stat().st_size for image in images}
    assert sum(sizes.values()) < 1_000_000, sizes  # small enough to commit (about 870 kB)


@pytest.mark.slow
def test_site_reads_offline_in_chromium(site):
    """The built site from disk (file://), every other request blocked: the home page, a page of
    figures with every image loaded, and the search finding the saliency page."""
    from test_compare import _shot, chromium_page

    requested: list[str] = []

    def offline(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            requested.append(route.request.url)
            route.abort()

    with chromium_page() as page:
        page.route("**/*", offline)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((site / "index.html").as_uri())
        assert "exigo" in page.title()
        assert page.locator("nav.md-nav").first.is_visible()
        _shot(page, "docs-home")

        for name in ("saliency", "embeddings"):
            page.goto((site / f"{name}.html").as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all(
                "article img", "els => els.map(e => [e.src, e.complete && e.naturalWidth])"
            )
            assert images and all(width for _, width in images), images
            _shot(page, f"docs-{name}")

        page.goto((site / "index.html").as_uri())
        search = page.locator("input.md-search__input")
        search.click()  # in the header at this width
        hits = page.locator(".md-search-result__item a")
        deadline = time.monotonic() + 60
        while not hits.count() and time.monotonic() < deadline:
            search.fill("")  # a query typed before the index is loaded is not run again
            search.type("Grad-CAM", delay=30)
            page.wait_for_timeout(1000)
        targets = hits.evaluate_all("els => els.map(e => e.getAttribute('href'))")
        _shot(page, "docs-search")
        assert any("saliency.html" in t for t in targets), targets
    assert not requested, requested  # nothing left the disk
    assert not errors, errors


def test_the_readme_is_a_short_front_door_into_the_site():
    """At most 150 lines; its two quick-start commands are the getting-started page's, the
    second is what CI runs; every page it links exists."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    install, tests = blocks[0].strip(), blocks[1].strip()
    assert install.endswith("dvc repro") and tests.endswith("pytest")
    page = (ROOT / "docs" / "getting-started.md").read_text()
    assert install in page and tests in page
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install uv && uv sync --locked --extra dev" in ci and "pytest" in ci
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
