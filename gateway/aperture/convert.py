"""aperture.yaml -> the routes.yaml document of this gateway (pure: no I/O).

The top level maps Aperture's listener, authenticator (LND) and database
settings; `services` map route by route (gateway.aperture.services). Route
names are planned first for the whole file, because they must be unique and
valid here, and because a renamed service cannot verify the tokens Aperture
sold for it (the macaroon's `services=<name>:0` caveat names the service).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from gateway.aperture.notes import Note, Notes, Severity
from gateway.aperture.payment import PaymentOut, convert_payment
from gateway.aperture.services import (
    CATCH_ALL,
    ROUTE_NAME,
    Plan,
    RouteOut,
    convert_service,
)
from gateway.aperture.source import ApertureConfigError, BadValue, Block
from gateway.config.loader import parse_host_port

DEFAULT_PUBLIC = "127.0.0.1:8080"
DEFAULT_ADMIN = "127.0.0.1:9090"
DEFAULT_LND_HOST = "127.0.0.1:10009"
PLACEHOLDER_TLS = "/etc/l402-gateway/lnd/tls.cert"
PLACEHOLDER_MACAROON = "/etc/l402-gateway/lnd/invoice.macaroon"
DEFAULT_SQLITE_STORE = "sqlite:///var/lib/l402-gateway/tokens.db"
APERTURE_DEFAULT_SQLITE = "~/.aperture/aperture.db"
NEW_PG_DATABASE = "l402_gateway"

TOP_KEYS = frozenset(
    {
        "listenaddr", "servername", "autocert", "insecure", "staticroot", "servestatic",
        "dbbackend", "sqlite", "postgres", "etcd", "authenticator", "tor", "services",
        "hashmail", "prometheus", "admin", "debuglevel", "configfile", "basedir", "profile",
        "idletimeout", "readtimeout", "writetimeout", "invoicebatchsize", "strictverify",
        "logging", "wspinginterval", "wspongwait", "blocklist",
    }
)  # fmt: skip
AUTH_KEYS = frozenset(
    {
        "network", "disable", "lndhost", "tlspath", "macdir", "passphrase", "mailboxaddress",
        "devserver", "enablempp", "mpprealm", "enablesessions", "sessiondepositmultiplier",
        "sessionidletimeout",
    }
)  # fmt: skip
# Settings that only tune Aperture's own process: reported, nothing to carry over.
_PROCESS_ONLY = (
    "debuglevel", "logging", "configfile", "basedir", "idletimeout", "readtimeout",
    "writetimeout", "invoicebatchsize", "wspinginterval", "wspongwait", "staticroot",
)  # fmt: skip


@dataclass
class RoutesDocument:
    """Everything `emit.render` writes."""

    listen_public: str
    listen_admin: str
    lnd_host: str
    lnd_tls_cert: str
    lnd_macaroon: str
    store_url: str
    routes: list[RouteOut]
    header: list[str]
    payment: PaymentOut | None = None  # authenticator.enablempp (gateway.aperture.payment)


@dataclass(frozen=True)
class Conversion:
    document: RoutesDocument
    notes: tuple[Note, ...]

    @property
    def complete(self) -> bool:
        """Nothing was dropped: the output does everything the input did."""
        return not any(n.severity is Severity.DROPPED for n in self.notes)


def convert(data: object) -> Conversion:
    """Convert a parsed aperture.yaml; raises ApertureConfigError when it is unusable."""
    if not isinstance(data, Mapping):
        raise ApertureConfigError("not an Aperture configuration: expected a YAML mapping")
    notes = Notes()
    try:
        return _convert(Block(data, ""), notes)
    except BadValue as exc:
        raise ApertureConfigError(str(exc)) from None


def _convert(top: Block, notes: Notes) -> Conversion:
    top.report_unknown(TOP_KEYS, notes, {})
    header: list[str] = []
    public = _listen(top, notes)
    admin = _admin(top, public, notes)
    _tls_and_extras(top, notes)
    lnd_host, tls_cert, macaroon, auth_disabled = _lnd(top, notes, header)
    payment = _payment(top, macaroon, auth_disabled, notes, header)
    store_url = _store(top, notes, header)
    routes = _routes(top, notes, auth_disabled, payment is not None)
    notes.note(
        "(all services)",
        "this gateway limits challenges per client address (challenge_rate_limit: 60 a "
        "minute, burst 20) and request bodies (max_body_bytes: 1 MiB); Aperture had neither",
    )
    document = RoutesDocument(
        public, admin, lnd_host, tls_cert, macaroon, store_url, routes, header, payment
    )
    return Conversion(document, tuple(notes.items))


def _payment(
    top: Block, macaroon: str, auth_disabled: bool, notes: Notes, header: list[str]
) -> PaymentOut | None:
    """The Payment scheme (MPP), when Aperture sold it; the refund macaroon beside the
    invoice macaroon (same directory)."""
    auth = top.child("authenticator")
    if auth is None or auth_disabled:
        return None
    directory = str(PurePosixPath(macaroon).parent)
    return convert_payment(auth, top.text("listenaddr"), directory, notes, header)


def _listen(top: Block, notes: Notes) -> str:
    text = top.text("listenaddr")
    if not text:
        notes.note("listenaddr", f"not set (Aperture would not start); using {DEFAULT_PUBLIC}")
        return DEFAULT_PUBLIC
    if text.startswith(":"):
        text = "127.0.0.1" + text
        notes.dropped(
            "listenaddr",
            f"no host: Aperture listened on every interface; this gateway listens on {text} "
            "(loopback, behind its TLS front); write the address you want to expose",
        )
    try:
        parse_host_port(text)
    except ValueError as exc:
        raise BadValue("listenaddr", f"{text!r}: {exc}") from None
    return text


def _admin(top: Block, public: str, notes: Notes) -> str:
    prometheus = top.child("prometheus")
    admin = DEFAULT_ADMIN
    if prometheus is not None:
        prometheus.report_unknown(frozenset({"enabled", "listenaddr"}), notes, {})
        if prometheus.boolean("enabled") and prometheus.text("listenaddr"):
            candidate = prometheus.text("listenaddr")
            try:
                parse_host_port(candidate)
                admin = candidate
            except ValueError:
                notes.note("prometheus.listenaddr", f"{candidate!r} is not host:port; ignored")
            notes.note(
                "prometheus",
                f"metrics are served at http://{admin}/metrics (listen.admin) with "
                "this gateway's own metric names (l402_*), beside /healthz and /readyz",
            )
    if admin == public:
        _, port = parse_host_port(public)
        admin = f"127.0.0.1:{port + 1 if port < 65535 else port - 1}"
        notes.note("listen.admin", f"must differ from the public listener; using {admin}")
    return admin


def _tls_and_extras(top: Block, notes: Notes) -> None:
    if not top.boolean("insecure"):
        what = "Let's Encrypt (autocert)" if top.boolean("autocert") else "its own certificate"
        notes.dropped(
            "insecure",
            f"Aperture terminated TLS with {what}; this gateway speaks plain HTTP: put a TLS "
            "front (deploy/caddy/Caddyfile) before listen.public",
        )
    if top.boolean("servestatic"):
        notes.dropped("servestatic", "static files for unmatched requests are not served here")
    tor = top.child("tor")
    if tor is not None and (tor.boolean("v3") or tor.text("control")):
        notes.dropped("tor", "onion services are not supported")
    hashmail = top.child("hashmail")
    if hashmail is not None and hashmail.boolean("enabled"):
        notes.dropped("hashmail", "the LNC mailbox server is not part of this gateway")
    admin = top.child("admin")
    if admin is not None and admin.boolean("enabled"):
        notes.dropped(
            "admin",
            "no admin API or dashboard; use `l402-gateway report`/`revoke` and /metrics",
        )
    if top.strings("blocklist"):
        notes.dropped("blocklist", "IP blocklists belong in the front (Caddy) here")
    if top.boolean("strictverify"):
        notes.note(
            "strictverify",
            "this gateway never asks LND whether an invoice settled: the preimage proves it",
        )
    if top.has("profile"):
        notes.note("profile", "no pprof endpoint here")
    for key in _PROCESS_ONLY:
        if top.has(key):
            notes.note(top.spelled(key), "tunes Aperture's own process; nothing to carry over")


def _lnd(top: Block, notes: Notes, header: list[str]) -> tuple[str, str, str, bool]:
    auth = top.child("authenticator")
    if auth is None:
        raise BadValue("authenticator", "missing: Aperture needs its LND connection")
    auth.report_unknown(AUTH_KEYS, notes, {})
    disabled = auth.boolean("disable")
    if disabled:
        notes.note(
            "authenticator.disable",
            "Aperture charged nothing: every route is converted free (price_sats: 0)",
        )
    if auth.text("passphrase") and not auth.text("lndhost"):
        notes.dropped(
            "authenticator.passphrase",
            "Lightning Node Connect is not supported: connect to LND over gRPC (lnd: section)",
        )
        header.append("TODO(lnd): Aperture reached LND over LNC; set lnd.host/tls_cert/macaroon")
        return DEFAULT_LND_HOST, PLACEHOLDER_TLS, PLACEHOLDER_MACAROON, disabled
    host = auth.text("lndhost") or DEFAULT_LND_HOST
    try:
        parse_host_port(host)
    except ValueError as exc:
        raise BadValue("authenticator.lndhost", f"{host!r}: {exc}") from None
    tls = auth.text("tlspath")
    macdir = auth.text("macdir")
    if not tls or not macdir:
        missing = "tlspath" if not tls else "macdir"
        notes.note(f"authenticator.{missing}", "not set (Aperture would not start); placeholder")
        header.append(f"TODO(lnd): authenticator.{missing} was not set; fix the lnd: section")
    macaroon = str(PurePosixPath(macdir) / "invoice.macaroon") if macdir else PLACEHOLDER_MACAROON
    for key, value in (("tlspath", tls), ("macdir", macdir)):
        if value and not value.startswith(("/", "~")):
            notes.note(
                f"authenticator.{key}",
                f"{value!r} is relative: Aperture read it from its working directory, this "
                "gateway from the directory of routes.yaml; write an absolute path",
            )
    return host, tls or PLACEHOLDER_TLS, macaroon, disabled


def _store(top: Block, notes: Notes, header: list[str]) -> str:
    # Aperture's NewConfig() default is etcd, whatever its sample says.
    backend = top.text("dbbackend", "etcd").strip().lower()
    sqlite = top.child("sqlite")
    if sqlite is not None:
        sqlite.report_unknown(
            frozenset({"databasefilename", "skipmigrations"}),
            notes,
            {"dbfile": "its SQLite path key is databasefilename"},
        )
    if backend == "sqlite":
        path = APERTURE_DEFAULT_SQLITE
        if sqlite is not None:
            path = sqlite.text("databasefilename", path)
        notes.note(
            "dbbackend",
            f"tokens are kept in a new database ({DEFAULT_SQLITE_STORE}); Aperture's is only "
            f"read: l402-gateway import-aperture --from sqlite:{path} --config <routes.yaml>",
        )
        return DEFAULT_SQLITE_STORE
    if backend == "postgres":
        pg = top.child("postgres")
        if pg is None:
            raise BadValue("postgres", "missing while dbbackend is postgres")
        pg.report_unknown(
            frozenset(
                {"host", "port", "user", "password", "dbname", "maxconnections", "requiressl"}
                | {"skipmigrations"}
            ),
            notes,
            {},
        )
        host = pg.text("host", "localhost")
        port = pg.integer("port", 5432)
        user = quote(pg.text("user"), safe="")
        netloc = f"{user}@" if user else ""
        hostpart = f"[{host}]" if ":" in host else host
        query = "?sslmode=require" if pg.boolean("requiressl") else ""
        source = f"postgresql://{netloc}{hostpart}:{port}/{quote(pg.text('dbname'), safe='')}"
        notes.note(
            "postgres",
            f"tokens are kept in a new database {NEW_PG_DATABASE!r} on the same server (create "
            "it; give the password in the PGPASSWORD environment variable); Aperture's is only "
            f"read: l402-gateway import-aperture --from {source}{query} --config <routes.yaml>",
        )
        header.append(f"TODO(store): createdb {NEW_PG_DATABASE}; PGPASSWORD in the environment")
        return f"postgresql://{netloc}{hostpart}:{port}/{NEW_PG_DATABASE}{query}"
    if backend == "etcd":
        notes.dropped(
            "dbbackend",
            "etcd: import-aperture cannot read it, so tokens Aperture sold will not verify here; "
            f"a new SQLite store is used ({DEFAULT_SQLITE_STORE})",
        )
        return DEFAULT_SQLITE_STORE
    raise BadValue("dbbackend", f"{backend!r}: expected sqlite, postgres or etcd")


def _routes(top: Block, notes: Notes, auth_disabled: bool, mpp: bool) -> list[RouteOut]:
    raw = top.raw("services")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ApertureConfigError(
            "services: no services in this file (services added through Aperture's admin API "
            "live in its database: import-aperture lists them)"
        )
    blocks: list[Block] = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise BadValue(f"services[{index}]", "expected a mapping")
        blocks.append(Block(item, f"services[{index}]"))
    plans = _plan_names(blocks, notes, auth_disabled, mpp)
    routes: list[RouteOut] = []
    for block, plan in zip(blocks, plans, strict=True):
        try:
            converted = convert_service(block, plan, notes)
        except BadValue as exc:
            notes.dropped(exc.where, f"{exc.message}; service not converted")
            continue
        for route in converted:
            earlier = _shadowing(routes, route)
            if earlier is None:
                routes.append(route)
            else:
                notes.note(
                    route.source,
                    f"never matched (route {earlier!r} takes all its requests, in Aperture too); "
                    "left out",
                )
    if not routes:
        raise ApertureConfigError("no service could be converted (see the notes above)")
    return routes


def _plan_names(blocks: list[Block], notes: Notes, auth_disabled: bool, mpp: bool) -> list[Plan]:
    taken: set[str] = set()
    names: list[str] = []
    for index, block in enumerate(blocks):
        original = block.text("name")
        wanted = original if ROUTE_NAME.fullmatch(original) else _sanitize(original, index)
        name = wanted
        counter = 2
        while name in taken:
            name = f"{wanted}-{counter}"
            counter += 1
        taken.add(name)
        names.append(name)
        if name != original:
            why = (
                "is not a valid route name here ([a-z0-9][a-z0-9_-]*)"
                if wanted != original
                else "is used by an earlier service too"
            )
            notes.dropped(
                block.path("name"),
                f"{original!r} {why}: renamed to {name!r}. Tokens Aperture sold for it carry "
                f"services={original}:0 and will NOT verify on route {name!r} (ours mint "
                f"services={name}:0)",
            )
    plans = []
    for block, name in zip(blocks, names, strict=True):
        free: list[str] = []
        for _ in block.strings("authwhitelistpaths"):
            candidate, counter = f"{name}-free", 2
            while candidate in taken:
                candidate = f"{name}-free-{counter}"
                counter += 1
            taken.add(candidate)
            free.append(candidate)
        plans.append(Plan(name, tuple(free), auth_disabled, mpp))
    return plans


def _sanitize(name: str, index: int) -> str:
    text = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")
    return text or f"service-{index}"


def _shadowing(routes: list[RouteOut], route: RouteOut) -> str | None:
    """The earlier route that takes every request `route` could match (our loader's rule)."""
    host = route.fields.get("host")
    path = str(route.fields["path"])
    for earlier in routes:
        earlier_host = earlier.fields.get("host")
        if earlier_host is not None and earlier_host != host:
            continue
        earlier_path = str(earlier.fields["path"])
        if earlier_path in CATCH_ALL or earlier_path == path:
            return earlier.name
    return None
