"""wrk (Debian's `wrk` package) as the load generator, driven through a Lua script.

One wrk thread (`-t1`) keeps the client to at most one core. The script adds
the Authorization header, and for phases that expect something other than a
2xx it checks every response's status (and a required header) in Lua; for 2xx
phases wrk's own non-2xx/3xx counter is used, so no Lua runs per response.
`done()` prints one line of figures this module parses. wrk's CPU time comes
from wait4()'s rusage, since it has exited before we could read /proc.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.phase import BenchFailure, Load, LoadSample

MARK = "L402BENCH "
FIRST_BAD = "L402BENCH_FIRST_BAD "
REQUEST_TIMEOUT_SECONDS = 30

_DONE = r"""
threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local bad, first = 0, ""
  for _, t in ipairs(threads) do
    bad = bad + (t:get("bad") or 0)
    local f = t:get("first_bad")
    if first == "" and f then first = f end
  end
  local e = summary.errors
  local f = "L402BENCH" .. string.rep(" %.0f", 6) .. " %.3f" .. string.rep(" %.0f", 6) .. "\n"
  io.write(string.format(f,
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, bad,
    e.connect, e.read, e.write, e.timeout, e.status))
  if first ~= "" then io.write("L402BENCH_FIRST_BAD " .. first .. "\n") end
end
"""

_CHECK = r"""
function response(status, headers, body)
  local ok = status == EXPECTED
  if ok and NEED_HEADER ~= "" then
    ok = false
    for name, _ in pairs(headers) do
      if string.lower(name) == NEED_HEADER then ok = true end
    end
  end
  if not ok then
    bad = bad + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.gsub(string.sub(body or "", 1, 120), "%c", " ")
    end
  end
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _lua_text(value: str) -> str:
    if not value.isprintable() or "]==]" in value:
        raise ValueError("header value not representable in the wrk script")
    return f"[==[{value}]==]"


def lua_script(load: Load) -> str:
    lines = ['wrk.method = "GET"', 'wrk.headers["Accept"] = "application/json"']
    if load.authorization is not None:
        lines.append(f'wrk.headers["Authorization"] = {_lua_text(load.authorization)}')
    lines.append("bad = 0")
    lines.append('first_bad = ""')
    if not 200 <= load.expected < 300 or load.need_header is not None:
        lines.append(f"EXPECTED = {int(load.expected)}")
        lines.append(f"NEED_HEADER = {_lua_text((load.need_header or '').lower())}")
        lines.append(_CHECK)
    lines.append(_DONE)
    return "\n".join(lines)


def _run_blocking(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run wrk to completion (killed after `timeout`); (exit code, stdout, stderr)."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchFailure(f"wrk did not finish within {timeout:.0f} s") from None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def run_wrk(
    load: Load, concurrency: int, seconds: float, workdir: Path, label: str
) -> LoadSample:
    wrk = wrk_path()
    if wrk is None:
        raise BenchFailure("wrk is not installed (bench/ensure-wrk.sh installs it)")
    script = workdir / f"wrk-{os.getpid()}-{time.monotonic_ns()}.lua"
    # The script may hold a paid credential: private file, removed after the run.
    fd = os.open(script, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(lua_script(load))
    duration = max(1, round(seconds))
    argv = [
        wrk, "-t1", f"-c{concurrency}", f"-d{duration}s",
        "--timeout", f"{REQUEST_TIMEOUT_SECONDS}s", "-s", str(script),
        f"http://127.0.0.1:{load.port}{load.path}",
    ]  # fmt: skip
    before = os.times()
    try:
        code, out, err = await asyncio.to_thread(
            _run_blocking, argv, duration + REQUEST_TIMEOUT_SECONDS + 30
        )
    finally:
        script.unlink(missing_ok=True)
    after = os.times()
    # wrk is the only child reaped meanwhile (phases run one at a time; the servers live on).
    client_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return _parse(label, load, code, out, err, client_cpu)


def _parse(label: str, load: Load, code: int, out: str, err: str, client_cpu: float) -> LoadSample:
    line = next((ln for ln in out.splitlines() if ln.startswith(MARK)), None)
    if code != 0 or line is None:
        raise BenchFailure(f"{label}: wrk failed ({code}): {err.strip()[-400:] or out[-400:]}")
    values = [float(v) for v in line[len(MARK) :].split()]
    requests, duration_us, p50, p90, p99, mx, mean, bad = values[:8]
    connect, read, write, timeout, status = values[8:13]
    first = next((ln for ln in out.splitlines() if ln.startswith(FIRST_BAD)), "")
    if bad:
        raise BenchFailure(f"{label}: {bad:.0f} unexpected response(s); first: {first[20:]}")
    errors = {"connect": connect, "read": read, "write": write, "timeout": timeout}
    if any(errors.values()):
        raise BenchFailure(f"{label}: wrk socket errors {errors}")
    if status and 200 <= load.expected < 300:
        raise BenchFailure(f"{label}: {status:.0f} non-2xx/3xx responses")
    if requests <= 0:
        raise BenchFailure(f"{label}: no request completed")
    return LoadSample(
        requests=int(requests),
        seconds=duration_us / 1e6,
        p50_ms=round(p50 / 1000, 3),
        p90_ms=round(p90 / 1000, 3),
        p99_ms=round(p99 / 1000, 3),
        max_ms=round(mx / 1000, 3),
        mean_ms=round(mean / 1000, 3),
        client_cpu_seconds=round(client_cpu, 3),
    )
