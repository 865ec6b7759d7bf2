"""The README's commands, checked against the code so the README cannot drift again.

- Every `l402-gateway` / `l402-buyer` line of every fenced `sh` block is
  parsed by the real argument parser, in every form its `[optional]` and
  `a|b` parts allow: a command or flag the README names must exist.
- The offline block of "Installing it" is run line by line, as written, from
  a scratch copy of what it reads (no network, no LND, no gateway).
- The prune wording is the parser's, and the FastAPI example serves its
  metrics where its comment says.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.buyer.cli import _parser as buyer_parser
from gateway.cli import build_parser
from gateway.commands.prune import PRUNE_HELP
from tests.ops.support import REPO

README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent
OFFLINE_MARK = "runs this block as\nwritten"


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)


def command_lines(block: str) -> list[str]:
    """One entry per command: `\\` continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [re.split(r"\s#\s|\s#$", line, maxsplit=1)[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def forms(line: str) -> Iterator[list[str]]:
    """Every argv a synopsis line stands for: each `[...]` left out or taken, each `a|b` split."""
    groups = re.findall(r"\[([^\]]*)\]", line)
    skeleton = re.sub(r"\[[^\]]*\]", "\0", line)
    choices = [["", *(alt.strip() for alt in group.split(" | "))] for group in groups]
    for picked in itertools.product(*choices):
        text = skeleton
        for part in picked:
            text = text.replace("\0", part, 1)
        words = [w.replace("N", "1") if w == "N" else w for w in text.split()]
        alternatives = [w.split("|") if "|" in w and not w.startswith("|") else [w] for w in words]
        for argv in itertools.product(*alternatives):
            yield list(argv)


def parse_error(parser_argv: list[str], program: str) -> str | None:
    parser = build_parser() if program == "l402-gateway" else buyer_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(parser_argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return err.getvalue().strip().splitlines()[-1]
    return None


def cli_lines() -> list[str]:
    lines = [line for block in fenced("sh") for line in command_lines(block)]
    return [line for line in lines if line.split()[0] in ("l402-gateway", "l402-buyer")]


def test_every_cli_line_of_the_readme_parses_in_every_form() -> None:
    lines = cli_lines()
    assert len(lines) >= 20  # the check reaches the operator and buyer sections
    problems = []
    for line in lines:
        program, *rest = line.split()
        if rest == ["..."]:
            continue
        for argv in forms(" ".join(rest)):
            error = parse_error(argv, program)
            if error is not None:
                problems.append(f"{line!r} as {argv}: {error}")
    assert problems == []


def test_the_check_catches_a_flag_the_code_does_not_have() -> None:
    assert parse_error(["prune", "--newer-than-days", "3"], "l402-gateway") is not None
    assert parse_error(["report", "--weeks", "3"], "l402-gateway") is not None
    assert parse_error(["fetch", "URL", "--max-sats", "1"], "l402-buyer") is not None


def offline_block() -> list[str]:
    """The first `sh` block after the sentence that promises this test runs it."""
    after = README.split(OFFLINE_MARK, 1)[1]
    match = re.search(r"^```sh\n(.*?)^```$", after, flags=re.MULTILINE | re.DOTALL)
    assert match is not None
    return command_lines(match.group(1))


def test_the_offline_block_runs_as_written(tmp_path: Path) -> None:
    """From a scratch directory holding only what the block reads (outputs stay there)."""
    lines = offline_block()
    assert lines[0] == "l402-gateway --version"
    for name in ("config", "tests/aperture/fixtures"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(REPO / name, tmp_path / name)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in lines:
        ran = subprocess.run(
            shlex.split(line), cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, f"{line}\n{ran.stdout}{ran.stderr}"
    assert (tmp_path / "admin.token").stat().st_mode & 0o077 == 0
    assert "OK, 2 route(s)" in subprocess.run(
        [str(BIN / "l402-gateway"), "check-config", "converted.yaml", "--skip-file-checks"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


def test_prune_is_described_in_the_parsers_words() -> None:
    (line,) = [line for line in README.splitlines() if line.startswith("l402-gateway prune ")]
    assert line.split("  # ", 1)[1] == PRUNE_HELP
    help_text = subprocess.run(
        [str(BIN / "l402-gateway"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert PRUNE_HELP[:40] in " ".join(help_text.split())


def test_check_config_defaults_to_the_installed_file_as_the_readme_says(tmp_path: Path) -> None:
    assert (
        "defaults to `/etc/l402-gateway/routes.yaml` for every command,\n`check-config` included"
        in README
    )
    ran = subprocess.run(
        [str(BIN / "l402-gateway"), "check-config"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    if Path("/etc/l402-gateway/routes.yaml").exists():
        pytest.skip("this machine has an installed routes.yaml")
    assert ran.returncode == 2
    assert ran.stderr.startswith("/etc/l402-gateway/routes.yaml:0: cannot read")


def test_the_fastapi_example_serves_metrics_where_it_says(tmp_path: Path) -> None:
    """The README's FastAPI block, as written, in a scratch directory (no LND is dialled)."""
    from starlette.testclient import TestClient

    (block,) = [b for b in fenced("python") if "L402Middleware" in b]
    assert "scrape /metrics/" in block
    for name in ("tls.cert", "invoice.macaroon"):  # must exist; never read without a lifespan
        (tmp_path / name).write_text("placeholder\n")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        namespace: dict[str, object] = {}
        exec(compile(block, "README.md (FastAPI example)", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
    client = TestClient(namespace["app"])  # type: ignore[arg-type]
    assert client.get("/metrics", follow_redirects=False).status_code == 307
    scraped = client.get("/metrics/", follow_redirects=False)
    assert scraped.status_code == 200
    assert "l402_challenges_issued_total" in scraped.text
