"""The examples of README.md and of every page under docs/ run as written.

Which blocks run: every ```bash block with a `curl` command and every ```python block
that makes an `OpenAI(` client, in README.md and in every markdown file under docs/,
unless the line just before its fence is `<!-- readme-test: skip (why) -->` (e.g. an
example that needs another model dir). The README must hold at least one of each.

The one substitution: `localhost:8000` (the address `make run` serves) becomes the live
test server's `127.0.0.1:<free port>`. Nothing else in a block is changed. Blocks run with
the repository root as working directory (as the README says) and `HRA_FSDD_ROOT` set to
the FSDD recordings the fixtures found; the server is the committed model with its
shipped heads (a private copy), keyless like `make run`.

What is checked: the block exits 0. Expected output is written as comment lines after
the code: for bash, a `# {...}` line is the JSON the last command prints; every field
must come back with the value shown, except the numbers under `timings` (measured
times), whose keys must match. For python, the trailing `# ...` lines are stdout, line
for line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from server.config import REPO_ROOT
from tests.helpers import live_server, make_settings

README = (REPO_ROOT / "README.md").read_text()
# README.md and every docs page, by path relative to the repository root.
PAGES = {"README.md": README} | {
    str(path.relative_to(REPO_ROOT)): path.read_text()
    for path in sorted((REPO_ROOT / "docs").rglob("*.md"))
}
FENCE = re.compile(r"(?P<before>[^\n]*)\n```(?P<lang>\w*)\n(?P<body>.*?)\n```", re.S)
SKIP = "<!-- readme-test: skip"


def _blocks(lang: str, marker: str, pages: dict[str, str] = PAGES) -> list[str]:
    return [
        m["body"]
        for text in pages.values()
        for m in FENCE.finditer(text)
        if m["lang"] == lang and marker in m["body"] and not m["before"].startswith(SKIP)
    ]


CURL_BLOCKS = _blocks("bash", "curl ")
PYTHON_BLOCKS = _blocks("python", "OpenAI(")


def _trailing_comments(body: str) -> tuple[str, list[str]]:
    """(code, the comment lines after the last line of code, '# ' stripped)."""
    lines = body.splitlines()
    expected: list[str] = []
    while lines and lines[-1].startswith("#"):
        expected.insert(0, lines.pop()[2:])
    return "\n".join(lines), expected


def _run(argv: list[str], url: str, fsdd_root) -> subprocess.CompletedProcess:
    env = dict(os.environ, HRA_FSDD_ROOT=str(fsdd_root))
    argv = [a.replace("localhost:8000", url.removeprefix("http://")) for a in argv]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with live_server(make_settings(tmp_path_factory.mktemp("readme"))) as url:
        yield url


def test_readme_has_runnable_curl_and_python_examples():
    readme = {"README.md": README}
    assert len(_blocks("bash", "curl ", readme)) >= 1
    assert len(_blocks("python", "OpenAI(", readme)) >= 1


@pytest.mark.parametrize("block", CURL_BLOCKS, ids=lambda b: b.splitlines()[-1][:40])
def test_readme_curl_example_answers_what_it_promises(block, server_url, fsdd_root):
    code, expected = _trailing_comments(block)
    out = _run(["bash", "-euo", "pipefail", "-c", code], server_url, fsdd_root).stdout
    promised = [json.loads(line) for line in expected if line.startswith("{")]
    if not promised:
        return
    answer = json.loads(out)
    (want,) = promised
    assert answer.keys() == want.keys()
    for key, value in want.items():
        if key == "timings":
            assert answer[key].keys() == value.keys()
        else:
            assert answer[key] == value, key


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.splitlines()[0][:40])
def test_readme_python_example_prints_what_it_promises(block, server_url, fsdd_root):
    code, expected = _trailing_comments(block)
    out = _run([sys.executable, "-c", code], server_url, fsdd_root).stdout
    assert out.splitlines() == expected
