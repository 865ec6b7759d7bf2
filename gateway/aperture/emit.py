"""Write the converted routes.yaml as text, with comments an operator can follow.

PyYAML cannot write comments, and the TODO markers and the per-route origin
(`# from services[2] of aperture.yaml`) are the point of a reviewed migration,
so this small emitter writes the fixed shape of our schema itself. Strings are
single-quoted when printable (regexes stay readable) and JSON-quoted otherwise
(a JSON string is a valid YAML double-quoted scalar).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from gateway.aperture.convert import RoutesDocument


def render(doc: RoutesDocument, *, source: str, version: str) -> str:
    out = [
        f"# Converted from {_comment(source)} by `l402-gateway convert-aperture` "
        f"(l402-gateway {version}).",
        "# Every key is documented in docs/configuration.md; review the notes the command",
        "# printed, then check with: l402-gateway check-config <this file>",
    ]
    out += [f"# {_comment(line)}" for line in doc.header]
    out.append("listen:")
    out.append(f"  public: {scalar(doc.listen_public)}")
    out.append(f"  admin: {scalar(doc.listen_admin)}   # /metrics, /healthz, /readyz")
    out.append("lnd:")
    out.append(f"  host: {scalar(doc.lnd_host)}")
    out.append(f"  tls_cert: {scalar(doc.lnd_tls_cert)}")
    out.append(f"  macaroon: {scalar(doc.lnd_macaroon)}")
    payment = doc.payment
    if payment is not None and payment.refund_macaroon is not None:
        out.append(
            f"  refund_macaroon: {scalar(payment.refund_macaroon)}   # pays session refunds: TODO"
        )
    out.append("store:")
    out.append(f"  url: {scalar(doc.store_url)}")
    out.append("challenge_rate_limit: {per_minute: 60, burst: 20}   # per client; 0 = off")
    if payment is not None:
        out.append("payment:   # the Payment scheme (MPP): Aperture's authenticator.enablempp")
        if payment.realm is not None:
            out.append(f"  realm: {scalar(payment.realm)}")
        out.append("  sessions:")
        out.append(f"    enabled: {scalar(payment.sessions)}")
        if payment.sessions:
            out.append("    deposit_multiplier: 20   # what Aperture v0.5.0 used (see the notes)")
            out.append(
                "    idle_timeout_seconds: 300   # enforced here; Aperture only advertised it"
            )
    out.append("routes:")
    for route in doc.routes:
        out.append("")
        out.append(f"  # from {_comment(route.source)}")
        out += [f"  # {_comment(line)}" for line in route.comments]
        first = True
        for key, value in route.fields.items():
            lead = "  - " if first else "    "
            first = False
            out += _entry(lead, key, value, "      ")
    return "\n".join(out) + "\n"


def _entry(lead: str, key: str, value: object, indent: str) -> list[str]:
    if isinstance(value, Mapping):
        if not value:
            return [f"{lead}{key}: {{}}"]
        lines = [f"{lead}{key}:"]
        lines += [f"{indent}{scalar(str(k))}: {scalar(v)}" for k, v in value.items()]
        return lines
    return [f"{lead}{key}: {scalar(value)}"]


def scalar(value: object) -> str:
    """One YAML flow scalar (or a flow list of scalars)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if value.isprintable():
            return "'" + value.replace("'", "''") + "'"
        return json.dumps(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _comment(text: str) -> str:
    """Comment text on one line, whatever the input held."""
    return "".join(c if c.isprintable() else "?" for c in text)
