"""The generated reference pages match the code, and the docs site builds strictly (~1 s)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest

from server.config import REPO_ROOT

_spec = importlib.util.spec_from_file_location("docs_generate", REPO_ROOT / "docs" / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


@pytest.mark.parametrize("name", sorted(generate.PAGES))
def test_committed_generated_page_is_what_the_code_gives_now(name):
    path = REPO_ROOT / "docs" / name
    want = generate.PAGES[name]()
    assert path.read_text() == want, f"docs/{name} is stale: run python docs/generate.py"


def _defined_codes() -> set[str]:
    """Every stable code in the source, found by its text (independent of the generator)."""
    codes = set()
    for folder in ("server", "adapters_store", "kernels"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            codes |= set(re.findall(r'\bcode = "([a-z_]+)"', path.read_text()))
    errors = (REPO_ROOT / "server" / "api" / "errors.py").read_text()
    fallback = re.search(r'HTTP_CODES\.get\(status, "(\w+)" if status < 500 else "(\w+)"\)', errors)
    codes |= set(fallback.groups())
    return codes


def test_every_error_code_in_the_code_base_is_in_the_error_page():
    codes = _defined_codes()
    assert {"unknown_task", "method_not_allowed", "validation_error", "store_error"} <= codes
    page = (REPO_ROOT / "docs" / "errors.md").read_text()
    missing = sorted(c for c in codes if f"| `{c}` |" not in page)
    assert not missing, f"error codes missing from docs/errors.md: {missing}"


def test_the_error_page_has_one_row_per_taxonomy_code_in_its_order():
    from server.errors import taxonomy

    page = generate.errors_page()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [k.code for k in taxonomy()]
    assert "| `unknown_task` | 404 | 1008 |" in page


def test_every_setting_is_in_the_configuration_page():
    from server.config import Settings

    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    rows = generate.settings_rows(Settings)
    assert len(rows) > 80
    assert all(f"| {row[0]} |" in page for row in rows)
    assert "`HRA_WHISPER__TEMPERATURE_FALLBACK`" in page


def test_docs_site_builds_strictly(tmp_path):
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
