"""Medians over rounds, the comparison summary and the printed table."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from bench.phase import PhaseResult

REPO_ROOT = Path(__file__).resolve().parents[1]
GATEWAYS = ("ours", "aperture")


def pick_median(rounds: list[PhaseResult]) -> dict[str, Any]:
    """The round with the median throughput (its own latencies), plus the spread."""
    ordered = sorted(rounds, key=lambda r: r.throughput_rps)
    chosen = asdict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds"] = len(rounds)
    chosen["throughput_rps_min"] = ordered[0].throughput_rps
    chosen["throughput_rps_max"] = ordered[-1].throughput_rps
    chosen["p50_ms_rounds"] = [r.p50_ms for r in rounds]
    return chosen


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def target_summary(phases: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The figures of one target (ours, aperture, direct, ours_nocache), if it ran."""
    paid = phases.get(name)
    if paid is None:
        return None
    c1 = phases.get(f"{name}_c1", {})
    out: dict[str, Any] = {
        "paid_c32_rps": paid["throughput_rps"],
        "paid_c32_rps_min": paid["throughput_rps_min"],
        "paid_c32_rps_max": paid["throughput_rps_max"],
        "paid_c32_p50_ms": paid["p50_ms"],
        "paid_c32_p99_ms": paid["p99_ms"],
        "c1_p50_ms": c1.get("p50_ms"),
        "c1_p99_ms": c1.get("p99_ms"),
        "cpu_us_per_request": paid["cpu_us_per_request"].get("target")
        or paid["cpu_us_per_request"].get("upstream"),
    }
    for conc in (1, 8, 32):
        ch = phases.get(f"challenge_{name}_c{conc}")
        if ch is not None:
            out[f"challenge_c{conc}_rps"] = ch["throughput_rps"]
            out[f"challenge_c{conc}_p50_ms"] = ch["p50_ms"]
            out[f"challenge_c{conc}_p99_ms"] = ch["p99_ms"]
            out[f"challenge_c{conc}_cpu_us"] = ch["cpu_us_per_request"].get("target")
    return out


def compare(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """a/b for every figure both have (throughput > 1 = a faster; latency/CPU < 1 = a better)."""
    if a is None or b is None:
        return None
    return {k: ratio(a[k], b.get(k)) for k in a if not k.endswith(("_min", "_max"))}


def environment() -> dict[str, Any]:
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
        "commit": commit,
    }


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def render_table(report: dict[str, Any]) -> str:
    out: list[str] = []
    env = report["environment"]
    out.append(
        f"L402 gateway loopback benchmark  {env['time_utc']}  commit {env['commit'] or '?'}  "
        f"{env['cpus']} CPUs  Python {env['python']}  aiohttp {env['aiohttp']}  "
        f"load generator {report['settings']['generator']}"
    )
    load = env.get("loadavg_at_start", [0.0])[0], env.get("loadavg_at_end", [0.0])[0]
    out.append(f"1-min load average: {load[0]:.2f} at start, {load[1]:.2f} at end")
    s = report["summary"]
    if s["aperture_skipped"]:
        out.append(f"APERTURE NOT RUN: {s['aperture_skipped']} (our side only)")
    out.append("")
    head = (
        f"{'phase':<22} {'target':<32} {'conc':>4} {'reqs':>7} {'req/s':>8} "
        f"{'(rounds min-max)':>17} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  "
        "cpu% client/target/up/lnd/others"
    )
    out.append(head)
    out.append("-" * len(head))
    for p in report["phases"]:
        cpu = p["cpu_percent"]
        cpu_text = "/".join(
            f"{cpu.get(k, 0.0):.0f}" for k in ("client", "target", "upstream", "lnd_seller")
        )
        spread = (
            f"{p['throughput_rps_min']:.0f}-{p['throughput_rps_max']:.0f}"
            if p["rounds"] > 1
            else "-"
        )
        out.append(
            f"{p['name']:<22} {p['target']:<32} {p['concurrency']:>4} {p['requests']:>7} "
            f"{p['throughput_rps']:>8.1f} {spread:>17} {p['p50_ms']:>7.2f} "
            f"{p['p99_ms']:>7.2f} {p['max_ms']:>7.2f}  {cpu_text}/{p['others_cpu_percent']:.0f}"
        )
    out.append("")
    out += _comparison(s)
    if s["max_others_cpu_percent"] > 25:
        out.append(
            f"WARNING: processes outside this benchmark used up to "
            f"{s['max_others_cpu_percent']:.0f}% CPU during a reported phase (100 = one core); "
            "figures are contended"
        )
    return "\n".join(out)


_ROWS = (
    ("paid c32 req/s (median round)", "paid_c32_rps", ".0f"),
    ("paid c32 p50 ms", "paid_c32_p50_ms", ".2f"),
    ("paid c32 p99 ms", "paid_c32_p99_ms", ".2f"),
    ("paid c1 p50 ms", "c1_p50_ms", ".3f"),
    ("paid c1 p99 ms", "c1_p99_ms", ".3f"),
    ("CPU us/paid request (c32)", "cpu_us_per_request", ".0f"),
    ("challenge c1 p50 ms", "challenge_c1_p50_ms", ".2f"),
    ("challenge c1 p99 ms", "challenge_c1_p99_ms", ".2f"),
    ("challenge c8 req/s", "challenge_c8_rps", ".0f"),
    ("challenge c32 req/s", "challenge_c32_rps", ".0f"),
    ("CPU us/challenge (c32)", "challenge_c32_cpu_us", ".0f"),
    ("RSS after load MiB", "rss_mib_after_load", ".1f"),
)


def _comparison(s: dict[str, Any]) -> list[str]:
    t = s["targets"]
    cols = [("ours", t["ours"]), ("aperture", t["aperture"]), ("direct", t["direct"])]
    ratios = [("ours/aperture", s["ratios"]["ours_over_aperture"])]
    ratios.append(("ours/direct", s["ratios"]["ours_over_direct"]))
    head = f"{'figure':<32}" + "".join(f"{name:>11}" for name, _ in cols)
    head += "".join(f"{name:>15}" for name, _ in ratios)
    lines = [head, "-" * len(head)]
    for label, key, fmt in _ROWS:
        row = f"{label:<32}"
        for _, figures in cols:
            row += f"{_f(None if figures is None else figures.get(key), fmt):>11}"
        for _, figures in ratios:
            row += f"{_f(None if figures is None else figures.get(key), '.3f'):>15}"
        lines.append(row)
    lines.append(
        "ratios: throughput > 1 means ours is faster; latency, CPU and RSS < 1 mean ours "
        "costs less. direct = the upstream alone (no gateway)."
    )
    nocache = t.get("ours_nocache")
    if nocache is not None and t["ours"] is not None:
        lines.append(
            f"verification cache off (every request verified from scratch): "
            f"{_f(nocache['paid_c32_rps'], '.0f')} req/s, "
            f"{_f(nocache['cpu_us_per_request'], '.0f')} us CPU/request, "
            f"c1 p50 {_f(nocache['c1_p50_ms'], '.3f')} ms"
        )
    return lines
