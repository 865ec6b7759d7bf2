"""The `payment:` section (the Payment scheme, MPP) and a route's `schemes:` list.

    payment:
      realm: api.example.com          # the challenges' realm; default: the public listener
      challenge_ttl_seconds: 900      # a Payment challenge's `expires` (Aperture: 15 min)
      sessions:                       # the prepaid `session` intent (off by default)
        enabled: true
        deposit_multiplier: 20        # deposit = route price x this (the draft's and Aperture's)
        idle_timeout_seconds: 300     # an idle session is closed and refunded
        return_invoice_min_validity_seconds: 600
        refund_fee_limit_sats: 100    # the most a refund may pay in routing fees
        refund_timeout_seconds: 30    # one attempt, waited for within the close request

    routes:
      - name: premium
        schemes: [l402, payment]      # default [l402]

A route selling `payment` offers the `charge` intent, and the `session` intent
too when sessions are enabled. Refunds need `lightning.refund_macaroon`
(a macaroon that may pay, and nothing else): sessions cannot be enabled
without it. docs/payment-scheme.md.
"""

from __future__ import annotations

from gateway.config.model import GatewayConfig, PaymentConfig, SessionPolicy
from gateway.config.nodes import Section

SCHEMES = ("l402", "payment")
_KEYS = frozenset({"realm", "challenge_ttl_seconds", "sessions"})
_SESSION_KEYS = frozenset(
    {
        "enabled",
        "deposit_multiplier",
        "idle_timeout_seconds",
        "return_invoice_min_validity_seconds",
        "refund_fee_limit_sats",
        "refund_timeout_seconds",
    }
)


def parse_payment(top: Section, default_realm: str) -> PaymentConfig:
    s = Section.of(top.reader, top.get("payment"), "payment", _KEYS)
    if s is None:
        return PaymentConfig(realm=default_realm)
    realm = s.string("realm", default_realm)
    if not realm or any(c in realm for c in '|"\\') or not realm.isprintable():
        s.reader.error(
            s.get("realm") or s.node, "payment.realm", 'must be printable, without | " or \\'
        )
    ttl = s.integer("challenge_ttl_seconds", PaymentConfig.challenge_ttl_seconds, minimum=60)
    return PaymentConfig(realm=realm, challenge_ttl_seconds=ttl, sessions=_sessions(s))


def _sessions(parent: Section) -> SessionPolicy:
    s = Section.of(parent.reader, parent.get("sessions"), "payment.sessions", _SESSION_KEYS)
    default = SessionPolicy()
    if s is None:
        return default
    return SessionPolicy(
        enabled=s.boolean("enabled", default.enabled),
        deposit_multiplier=s.integer("deposit_multiplier", default.deposit_multiplier, minimum=1),
        idle_timeout_seconds=s.integer(
            "idle_timeout_seconds", default.idle_timeout_seconds, minimum=10
        ),
        return_invoice_min_validity_seconds=s.integer(
            "return_invoice_min_validity_seconds",
            default.return_invoice_min_validity_seconds,
            minimum=0,
        ),
        refund_fee_limit_sats=s.integer(
            "refund_fee_limit_sats", default.refund_fee_limit_sats, minimum=0
        ),
        refund_timeout_seconds=s.integer(
            "refund_timeout_seconds", default.refund_timeout_seconds, minimum=1
        ),
    )


def parse_schemes(s: Section) -> tuple[str, ...]:
    """A route's `schemes:` (default `[l402]`), in the order given, without repeats."""
    items = s.string_list("schemes")
    if items is None:
        return ("l402",)
    schemes: list[str] = []
    for index, (scheme, node) in enumerate(items):
        if scheme not in SCHEMES:
            s.reader.error(
                node, f"{s.path('schemes')}[{index}]", f"must be one of: {', '.join(SCHEMES)}"
            )
        elif scheme not in schemes:
            schemes.append(scheme)
    if not items:
        s.reader.error(s.get("schemes") or s.node, s.path("schemes"), "empty list; omit for [l402]")
    return tuple(schemes) or ("l402",)


def check_payment(top: Section, config: GatewayConfig) -> None:
    """Sessions pay refunds: they need the refund macaroon (never the invoice one)."""
    if not config.payment.sessions.enabled or config.lightning.refund_macaroon is not None:
        return
    if not any(route.sells_payment for route in config.routes.routes):
        return
    node = top.get("payment") or top.node
    top.reader.error(
        node,
        "payment.sessions.enabled",
        "sessions refund unspent deposits: set lightning.refund_macaroon "
        "(a macaroon that may pay invoices, and nothing else)",
    )
