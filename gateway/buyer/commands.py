"""What `l402-buyer` runs (gateway.buyer.cli parses the command line and calls in here).

Kept out of the parser's module so that `l402-buyer --version` and `--help`
load neither aiohttp nor the buyer's client, payers and invoice decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gateway.buyer import console
from gateway.buyer.cache import CredentialCache
from gateway.buyer.cachefile import ensure_private_dir
from gateway.buyer.client import ApprovalRequest, FetchResult, L402Client
from gateway.buyer.ep212 import run_ep212
from gateway.buyer.errors import BuyerError, CacheError, SettingsError
from gateway.buyer.offers import parse_preference
from gateway.buyer.payers import LndPayer, Payer, WalletExecutorPayer
from gateway.buyer.policy import SpendPolicy
from gateway.buyer.report import ep212_summary, failure, fetch_report, fetch_summary
from gateway.buyer.settings import (
    ENV_LND_MACAROON,
    ENV_LND_TLS_CERT,
    Ep212Settings,
    PayerSettings,
    default_cache_path,
)

_METHOD = re.compile(r"[A-Za-z]{1,20}")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _read_setting_file(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(
            "invalid_setting", f"{variable}: cannot read {path}: {reason}"
        ) from None


@asynccontextmanager
async def open_payer(
    settings: PayerSettings, session: aiohttp.ClientSession
) -> AsyncIterator[Payer]:
    """The configured payer; an LND connection is closed on exit."""
    if settings.executor is not None:
        ex = settings.executor
        yield WalletExecutorPayer(ex.base_url, ex.auth_token, ex.timeout_ms, session)
        return
    assert settings.lnd is not None
    from gateway.lightning.lnd.node import LndClient

    lnd = settings.lnd
    cert = _read_setting_file(lnd.tls_cert, ENV_LND_TLS_CERT)
    macaroon = _read_setting_file(lnd.macaroon, ENV_LND_MACAROON)
    client = LndClient.connect(lnd.host, tls_cert=cert, macaroon=macaroon)
    try:
        yield LndPayer(client, lnd.fee_limit_msat, lnd.timeout_seconds, node=f"LND at {lnd.host}")
    finally:
        await client.close()


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120, connect=15))


async def _ep212(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    payer_settings = PayerSettings.from_env(env)
    settings = Ep212Settings.from_env(
        env,
        mode=args.mode,
        artifact_dir=Path(args.artifact_dir) if args.artifact_dir else None,
        wallet_backend=payer_settings.backend,
    )
    async with _session() as session, open_payer(payer_settings, session) as payer:
        return await run_ep212(settings, session, payer)


async def _ask(request: ApprovalRequest) -> bool:
    text = request.description
    description = f" for {text[:120]!r}" if text else ""  # repr: no terminal escapes
    return await console.confirm(
        f"Pay {request.amount_msats} msat to {request.host} (cap {request.cap_msats} msat)"
        f"{description}? [y/N] "
    )


def _parse_headers(values: Sequence[str]) -> dict[str, str] | None:
    """`Name: value` options as a dict; None if any is not of that form."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            return None
        headers[name.strip()] = text.strip()
    return headers


def _url_problem(url: str) -> str | None:
    """Why `url` cannot be fetched, without echoing it (it may carry a token)."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return "URL is malformed (bad port or brackets)"
    if parts.scheme.lower() not in ("http", "https"):
        return "URL must start with http:// or https://"
    if not parts.hostname:
        return "URL has no host"
    return None


def _cache(args: argparse.Namespace, env: Mapping[str, str]) -> CredentialCache:
    """The credential cache the flags ask for; the default one lives in a 0700 directory."""
    if args.no_cache:
        return CredentialCache()
    if args.cache:
        return CredentialCache(Path(args.cache))
    path = default_cache_path(env)
    try:
        ensure_private_dir(path.parent)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CacheError("cache_unusable", f"cannot create {path.parent}: {reason}") from None
    return CredentialCache(path)


async def _fetch(
    args: argparse.Namespace, env: Mapping[str, str], headers: Mapping[str, str]
) -> FetchResult:
    payer_settings = PayerSettings.from_env(env)
    policy = SpendPolicy(
        max_spend_msats=args.max_msats,
        allowed_hosts=args.allow_host or None,
        blocked_hosts=args.block_host or (),
        expected_network=args.network,
    )
    cache = _cache(args, env)
    async with _session() as session, open_payer(payer_settings, session) as payer:
        client = L402Client(
            session, payer, policy, cache, approval=_ask if args.confirm else None,
            preference=parse_preference(args.prefer),
        )  # fmt: skip
        return await client.fetch(
            args.method, args.url, data=args.data, headers=headers, force_refresh=args.refresh
        )


def _fail(as_json: bool, command: str, code: str, message: str) -> int:
    report = failure(code, message)
    if as_json:
        console.out(json.dumps(report) + "\n")
    else:
        console.err(f"l402-buyer: {command} failed: {report['error']}")
    return EXIT_FAILED


def ep212_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        summary = asyncio.run(_ep212(args, env))
    except BuyerError as exc:
        return _fail(args.json, "ep212", exc.code, exc.message)
    except Exception as exc:  # any failure must still produce the {"ok": false} contract
        return _fail(args.json, "ep212", "internal_error", f"{type(exc).__name__}: {exc}")
    console.out((json.dumps(summary, indent=2) if args.json else ep212_summary(summary)) + "\n")
    return EXIT_OK


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.max_msats < 0:
        return "--max-msats must not be negative"
    try:
        parse_preference(args.prefer)
    except ValueError as exc:
        return f"--prefer: {exc}"
    if not _METHOD.fullmatch(args.method):
        return "--method must be an HTTP method name such as GET or POST"
    return _url_problem(args.url)


def fetch_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    problem = _usage_problem(args)
    headers = _parse_headers(args.header or [])
    if problem is None and headers is None:
        problem = "--header must be 'Name: value'"
    if problem is not None or headers is None:
        console.err(f"l402-buyer fetch: error: {problem}")
        return EXIT_USAGE
    try:
        result = asyncio.run(_fetch(args, env, headers))
    except BuyerError as exc:
        return _fail(args.json, "fetch", exc.code, exc.message)
    except OSError as exc:
        return _fail(args.json, "fetch", "os_error", str(exc))
    except Exception as exc:  # a bug: one line, never a traceback that might carry secrets
        return _fail(args.json, "fetch", "internal_error", f"{type(exc).__name__}: {exc}")
    report = fetch_report(result, (urlsplit(args.url).hostname or "").lower())
    if args.json:
        console.out(json.dumps(report, indent=2) + "\n")
    else:
        if not report["bodyWithheld"]:
            console.out(result.body)
            if result.body and not result.body.endswith(b"\n"):
                console.err("")  # the summary starts on its own line on a terminal
        for line in fetch_summary(report):
            console.err(line)
    return EXIT_OK if result.ok else EXIT_FAILED


async def _session_run(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    from gateway.buyer import session_cli

    async with _session() as http, open_payer(PayerSettings.from_env(env), http) as payer:
        return await session_cli.run_session(args, env, http, payer)


def session_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from gateway.buyer import session_cli

    problem = _url_problem(args.url)
    if problem is None and (args.max_msats < 0 or args.max_deposit_msats < 0):
        problem = "--max-msats and --max-deposit-msats must not be negative"
    if problem is None and not _METHOD.fullmatch(args.method):
        problem = "--method must be an HTTP method name such as GET or POST"
    if problem is not None:
        console.err(f"l402-buyer session: error: {problem}")
        return EXIT_USAGE
    try:
        summary = asyncio.run(_session_run(args, env))
    except BuyerError as exc:
        return _fail(args.json, "session", exc.code, exc.message)
    except Exception as exc:  # one line, never a traceback that might carry secrets
        return _fail(args.json, "session", "internal_error", f"{type(exc).__name__}: {exc}")
    session_cli.print_summary(summary, args.json)
    return EXIT_OK if summary["ok"] else EXIT_FAILED
