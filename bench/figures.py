"""The issue-19 figures: ours beside Aperture, one line per figure, with its spread and load.

Each figure is computed per round from phases run side by side in that round
(ours and Aperture interleaved), so a ratio is a ratio of neighbours, then
reported as the median with the min-max over the rounds. Every line names
the 1-minute load average over the phases it comes from and the most CPU that
processes outside the run used during them (`others`, 100 = one core).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.phase import PhaseResult

Spread = dict[str, float | None]


def spread(values: list[float]) -> Spread:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def _cpu(p: PhaseResult) -> float:
    return p.cpu_us_per_request.get("target", 0.0)


def _lnd(p: PhaseResult) -> float:
    return p.cpu_us_per_request.get("lnd_seller", 0.0)


class Rounds:
    """Phase results by name, paired by round index."""

    def __init__(self, rounds: dict[str, list[PhaseResult]]) -> None:
        self.rounds = rounds

    def values(self, name: str, value: Callable[[PhaseResult], float]) -> list[float]:
        return [value(p) for p in self.rounds.get(name, [])]

    def diff(self, name: str, base: str) -> list[float]:
        """p50 of `name` minus p50 of `base`, round by round."""
        pairs = zip(self.rounds.get(name, []), self.rounds.get(base, []), strict=False)
        return [a.p50_ms - b.p50_ms for a, b in pairs]

    def load(self, *names: str) -> dict[str, float]:
        phases = [p for n in names for p in self.rounds.get(n, [])]
        if not phases:
            return {}
        loads = [p.loadavg for p in phases]
        return {
            "loadavg_min": min(loads),
            "loadavg_max": max(loads),
            "others_max_percent": max(p.others_cpu_percent for p in phases),
        }


def _ratios(ours: list[float], theirs: list[float]) -> list[float]:
    return [a / b for a, b in zip(ours, theirs, strict=False) if b]


def _row(
    figure: str,
    unit: str,
    ours: list[float],
    theirs: list[float],
    load: dict[str, float],
    *,
    ratio: list[float] | None = None,
    note: str = "",
) -> dict[str, Any]:
    return {
        "figure": figure,
        "unit": unit,
        "ours": spread(ours),
        "aperture": spread(theirs),
        "ratio": spread(ratio if ratio is not None else _ratios(ours, theirs)),
        "load": load,
        "note": note,
    }


def issue19_figures(rounds: dict[str, list[PhaseResult]], summary: dict[str, Any]) -> list[Any]:
    r = Rounds(rounds)
    rows = []
    for name, label in (("ours_w1", "--workers 1"), ("ours", "--workers 2 (default)")):
        rows.append(
            _row(
                f"paid HTTP/1.1 gateway CPU per request, c32, info logs, {label}",
                "us",
                r.values(name, _cpu),
                r.values("aperture", _cpu),
                r.load(name, "aperture"),
            )
        )
    for name, label in (("ours_w1", "--workers 1"), ("ours", "--workers 2")):
        rows.append(
            _row(
                f"latency added at c1 over the upstream alone (p50), {label}",
                "ms",
                r.diff(f"{name}_c1", "direct_c1"),
                r.diff("aperture_c1", "direct_c1"),
                r.load(f"{name}_c1", "aperture_c1", "direct_c1"),
            )
        )
    minimal = r.values("minimal", _cpu)
    rows.append(
        _row(
            "minimal aiohttp proxy (no L402), CPU per request, c32",
            "us",
            minimal,
            [],
            r.load("minimal"),
            ratio=_ratios(r.values("ours_w1", _cpu), minimal),
            note="ratio: ours --workers 1 / the minimal proxy",
        )
    )
    rows.append(
        _row(
            "the info access line: CPU per request over warning level",
            "%",
            [
                100 * (x - 1)
                for x in _ratios(r.values("ours_w1", _cpu), r.values("ours_w1_quiet", _cpu))
            ],
            [
                100 * (x - 1)
                for x in _ratios(r.values("aperture", _cpu), r.values("aperture_quiet", _cpu))
            ],
            r.load("ours_w1", "ours_w1_quiet", "aperture", "aperture_quiet"),
            ratio=[],
            note="ours --workers 1 info/warning; Aperture info/warn",
        )
    )
    for conc in (1, 8, 32):
        ours, theirs = f"challenge_ours_c{conc}", f"challenge_aperture_c{conc}"
        if ours not in rounds:
            continue
        rows.append(
            _row(
                f"gateway CPU per challenge, c{conc}",
                "us",
                r.values(ours, _cpu),
                r.values(theirs, _cpu),
                r.load(ours, theirs),
            )
        )
        rows.append(
            _row(
                f"seller LND CPU per challenge, c{conc}",
                "us",
                r.values(ours, _lnd),
                r.values(theirs, _lnd),
                r.load(ours, theirs),
            )
        )
    first = summary.get("first_402", {})
    ours_402 = first.get("ours", {})
    theirs_402 = first.get("aperture", {})
    rows.append(
        _row(
            "time from start to the first 402, --workers 2",
            "s",
            ours_402.get("runs", []),
            theirs_402.get("runs", []),
            _load_of(ours_402.get("loadavg", []) + theirs_402.get("loadavg", [])),
            ratio=_ratios(ours_402.get("runs", []), theirs_402.get("runs", [])),
        )
    )
    memory = summary.get("memory", {})
    ours_mem, theirs_mem = memory.get("ours", {}), memory.get("aperture", {})
    parts = " + ".join(f"{x:.0f}" for x in ours_mem.get("rss_parts_mib", []))
    rows.append(
        _row(
            "RSS after load, --workers 2",
            "MiB",
            [ours_mem["rss_mib"]] if ours_mem else [],
            [theirs_mem["rss_mib"]] if theirs_mem else [],
            {},
            note=f"supervisor + workers: {parts}; PSS ours {ours_mem.get('pss_mib')}, "
            f"Aperture {theirs_mem.get('pss_mib')}",
        )
    )
    for name, timing in summary.get("cli_start", {}).items():
        rows.append(_row(f"{name} wall time", "s", timing["runs"], [], _load_of(timing["loadavg"])))
    return rows


def _load_of(loads: list[float]) -> dict[str, float]:
    return {"loadavg_min": min(loads), "loadavg_max": max(loads)} if loads else {}


def _fmt(s: Spread, unit: str) -> str:
    if s["median"] is None:
        return "-"
    digits = {"us": 0, "ms": 3, "s": 3, "MiB": 1, "%": 1}.get(unit, 2)
    m, lo, hi = (f"{v:.{digits}f}" for v in (s["median"], s["min"], s["max"]))
    return m if lo == hi else f"{m} ({lo}-{hi})"


def render_issue19(report: dict[str, Any]) -> str:
    rows = report["summary"].get("issue19", [])
    head = f"{'figure':<70} {'ours':>24} {'Aperture':>24} {'ours/Aperture':>22}  load"
    out = [
        "Issue 19 figures: median over rounds (min-max); ratios paired round by round",
        head,
        "-" * len(head),
    ]
    for row in rows:
        unit = row["unit"]
        ratio = "-" if row["ratio"]["median"] is None else _fmt(row["ratio"], "x")
        load = row["load"]
        load_text = ""
        if load:
            load_text = f"load {load['loadavg_min']:.1f}-{load['loadavg_max']:.1f}"
            if "others_max_percent" in load:
                load_text += f", others <= {load['others_max_percent']:.0f}%"
        out.append(
            f"{row['figure'] + ' (' + unit + ')':<70} {_fmt(row['ours'], unit):>24} "
            f"{_fmt(row['aperture'], unit):>24} {ratio:>22}  {load_text}"
        )
        if row["note"]:
            out.append(f"{'':<6}{row['note']}")
    return "\n".join(out)
