"""What is wrong between the gateway and its LND node, in words an operator can act on.

Each check keeps LND's (or gRPC's) own message and names the likely cause:

- the wallet: `GetState` (any macaroon, or none) says locked or still starting;
- the macaroon's permission to mint: an `AddInvoice` that LND must refuse
  (a negative amount) tells the two apart without creating anything: LND
  checks the macaroon first ("permission denied": a readonly or other
  macaroon without `invoices:write`), then the amount ("amount cannot be
  negative": the macaroon may mint);
- the node's sync: `GetInfo` when the macaroon may read it (an admin or
  readonly macaroon; invoice.macaroon may not, which is fine);
- a macaroon baked by another node, or taken from another network's macaroon
  directory ("verification failed: signature mismatch", "cannot get
  macaroon: root key ... doesn't exist"), told apart from a missing permission;
- the connection: TLS (a certificate that is not this node's, a host name
  the certificate does not cover) and reachability, from gRPC's own words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.lightning.backend import Health
from gateway.lightning.errors import BackendError, BackendUnavailable, PermissionDenied
from gateway.lightning.types import NodeInfo, WalletState

if TYPE_CHECKING:  # grpcio: only the refund check names it (the seller's client has none)
    from gateway.lightning.lnd.node import LndClient

_READY_STATES = (WalletState.RPC_ACTIVE, WalletState.SERVER_ACTIVE)


class DiagnosedNode(Protocol):
    """The calls the checks make (both LND clients have them)."""

    async def get_state(self, *, timeout: float | None = None) -> WalletState: ...

    async def get_info(self, *, timeout: float | None = None) -> NodeInfo: ...

    async def probe_invoice_permission(self, *, timeout: float | None = None) -> None:
        """An AddInvoice that must be refused: PermissionDenied if the macaroon may not mint."""
        ...


@dataclass(frozen=True)
class Finding:
    check: str  # connection, wallet, macaroon, sync
    ok: bool
    detail: str


def connection_cause(error: BackendError) -> str:
    """The likely cause of a failed connection, from gRPC's own message."""
    text = error.message
    lowered = text.lower()
    if "peer name" in lowered or "hostname" in lowered or "does not match" in lowered:
        cause = (
            "the TLS certificate does not cover the configured host: connect by a name or "
            "address in the certificate, or add one (lnd --tlsextradomain / --tlsextraip)"
        )
    elif "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        cause = "lightning.tls_cert is not this node's certificate (copy its tls.cert)"
    elif "connection refused" in lowered or "failed to connect" in lowered:
        cause = "nothing answers at the configured host and port: is LND running there?"
    elif "deadline" in lowered or error.code == "DEADLINE_EXCEEDED":
        cause = "no answer in time: a firewall, a wrong port, or an overloaded node"
    else:
        cause = "the node could not be reached"
    return f"{cause} ({error.code}: {text[:300]})"


_FOREIGN_MACAROON = ("signature mismatch", "root key with id", "cannot get macaroon")


def macaroon_cause(error: BackendError) -> str:
    """Why LND refused the macaroon: baked by another node (or for another network:
    each network's macaroons live under their own data/chain/bitcoin/<network>/ and
    have their own root key), or baked without the permission to mint."""
    lowered = error.message.lower()
    if any(words in lowered for words in _FOREIGN_MACAROON):
        cause = (
            "the macaroon was not baked by this node: another node's, or another network's "
            "(use invoice.macaroon from this node's data/chain/bitcoin/<network>/ for the "
            "network it runs)"
        )
    else:
        cause = (
            "the macaroon may not create invoices (it needs invoices:write): "
            "use LND's invoice.macaroon"
        )
    return f"{cause} ({error.code}: {error.message[:300]})"


async def diagnose(client: DiagnosedNode, timeout: float) -> list[Finding]:
    """Every check, in order; stops at the first that makes the rest meaningless."""
    findings: list[Finding] = []
    try:
        state = await client.get_state(timeout=timeout)
    except BackendError as exc:
        return [Finding("connection", False, connection_cause(exc))]
    findings.append(Finding("connection", True, "reached"))
    if state not in _READY_STATES:
        hint = "unlock it (lncli unlock)" if state is WalletState.LOCKED else "wait for it"
        findings.append(Finding("wallet", False, f"the wallet is {state.name}: {hint}"))
        return findings
    findings.append(Finding("wallet", True, state.name))
    findings.append(await _mint_permission(client, timeout))
    findings.extend(await _sync(client, timeout))
    return findings


async def _mint_permission(client: DiagnosedNode, timeout: float) -> Finding:
    try:
        await client.probe_invoice_permission(timeout=timeout)
    except PermissionDenied as exc:
        return Finding("macaroon", False, macaroon_cause(exc))
    except BackendUnavailable as exc:
        return Finding("macaroon", False, connection_cause(exc))
    except BackendError as exc:
        if "negative" in exc.message.lower():
            return Finding("macaroon", True, "may create invoices")
        return Finding("macaroon", False, f"unexpected answer to the probe: {exc.explain()}")
    return Finding("macaroon", False, "LND created an invoice of a negative amount?")


async def _sync(client: DiagnosedNode, timeout: float) -> list[Finding]:
    try:
        info = await client.get_info(timeout=timeout)
    except PermissionDenied:
        return []  # invoice.macaroon may not read GetInfo: nothing to say
    except BackendError as exc:
        return [Finding("sync", False, exc.explain())]
    if not info.synced_to_chain:
        return [Finding("sync", False, f"the node is not synced to the chain (height "
                                        f"{info.block_height}); invoices may fail")]  # fmt: skip
    return [Finding("sync", True, f"synced at height {info.block_height}")]


async def refund_permission(client: LndClient, timeout: float) -> Finding:
    """Whether the refund macaroon may pay: a payment LND must refuse (no valid invoice)
    is refused for the permission first ("permission denied"), else for the invoice."""
    try:
        await client.pay_invoice("lnbcrt1invalid", fee_limit_msat=0, timeout_seconds=int(timeout))
    except PermissionDenied as exc:
        return Finding(
            "refund macaroon",
            False,
            "the refund macaroon may not pay (it needs offchain:write): bake one with "
            f"`lncli bakemacaroon offchain:read offchain:write` ({exc.code}: {exc.message})",
        )
    except BackendUnavailable as exc:
        return Finding("refund macaroon", False, connection_cause(exc))
    except BackendError:
        return Finding("refund macaroon", True, "may pay refunds")
    return Finding("refund macaroon", False, "LND paid an invalid invoice?")


async def node_health(client: DiagnosedNode, timeout: float, *, may_mint: bool) -> Health:
    """Ready once the wallet is unlocked and the macaroon may mint invoices; otherwise why
    not, in LND's words with the likely cause. Until the permission probe has passed once
    (`may_mint`: the caller remembers a Health that is ready) every check runs; then only
    GetState is asked."""
    if may_mint:
        try:
            state = await client.get_state(timeout=timeout)
        except BackendError as exc:
            return Health(False, f"unreachable: {connection_cause(exc)}")
        if state in _READY_STATES:
            return Health(True, "ok")
        return Health(False, f"not ready: the wallet is {state.name}")
    findings = await diagnose(client, timeout)
    failed = [f for f in findings if not f.ok and f.check != "sync"]
    if failed:
        return Health(False, f"not ready: {failed[0].check}: {failed[0].detail}")
    return Health(True, "ok")
