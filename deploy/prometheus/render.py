#!/usr/bin/env python3
"""Render deploy/prometheus for a deployment: absolute runbook links, the gateway's target.

The files in this directory link each alert to `docs/runbook.md#<alert>`, a
path relative to the repository: right for reading the rules here, useless
in an Alertmanager notification. This writes a copy whose `runbook_url`s
start with RUNBOOK_URL (where your runbook is published, e.g. the runbook
page of your repository host at the release tag) and whose scrape target is
the gateway's admin listener:

    make prometheus RUNBOOK_URL=https://docs.example.org/l402-gateway/runbook.md \
        [ADMIN_TARGET=127.0.0.1:8402]          # writes build/prometheus/

alerts_test.yml is rendered too, so `promtool test rules` runs on the copy.
Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
FILES = ("prometheus.yml", "alerts.yml", "alerts_test.yml")
RELATIVE = "docs/runbook.md#"
DEFAULT_TARGET = "127.0.0.1:8402"
_TARGET = re.compile(r"^(\s*- )127\.0\.0\.1:8402\s*$", re.M)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"RUNBOOK_URL must be an absolute http(s) URL, got {url!r}")
    if parts.fragment or "#" in url:
        raise ValueError("RUNBOOK_URL must not carry a #fragment (each alert adds its own)")
    return url


def check_target(target: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:]+\]:\d{1,5}", target):
        raise ValueError(f"ADMIN_TARGET must be host:port, got {target!r}")
    return target


def render(text: str, name: str, runbook_url: str, target: str) -> str:
    text = text.replace(f'"{RELATIVE}', f'"{runbook_url}#')
    if name == "prometheus.yml":
        text = _TARGET.sub(lambda m: m.group(1) + target, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runbook-url", required=True)
    parser.add_argument("--admin-target", default=DEFAULT_TARGET)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        url = check_url(args.runbook_url)
        target = check_target(args.admin_target)
    except ValueError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (args.out / name).write_text(render((HERE / name).read_text(), name, url, target))
    print(f"{args.out}: {', '.join(FILES)} (runbook links under {url}, scraping {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
