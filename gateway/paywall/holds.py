"""What an admitted request holds on what it paid for, until its answer settles it.

A `Sale` (gateway.paywall.sale) does the bookkeeping every request shares;
what a payment buys differs, and each kind is a `Hold`:

- a single-use token's lease (`LeaseHold`, here): consumed when the buyer was
  served, given back otherwise;
- a metered balance's reservation (bundles, sessions): debited by what the
  answer used, which is known only once its body has gone by (`watch`, then
  `finished`).

Call order (the Sale guarantees it): at most one `answered`, then at most one
`finished` (only after `answered`, and only for a hold with a `watch`: the
transports skip it otherwise, it costs a task on the hot path), or `release`
instead of both when no answer was delivered. A hold may add headers to the answer (a balance, a
receipt) and may watch the answer's body on its way to the client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the proxy imports BodyWatch: keep the store and metrics out of it
    from gateway.paywall.leases import Lease, LeaseKeeper

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling a hold at the answer's headers gave: headers for the answer, and a
    secret-free note for the access line when something went wrong on our side."""

    headers: Headers = ()
    note: str | None = None


NOTHING = Settled()


Send = Callable[[bytes], Awaitable[None]]


class BodyWatch(Protocol):
    """Sees the answer's body on its way to the client (metering, session debits).

    The watch sends the bytes itself (`send` writes to the client), so it can
    hold some back, add its own (an SSE event), or pause the stream between
    two of its events; it sets `ended` to stop the relay."""

    async def feed(self, chunk: bytes, send: Send) -> None:
        """One body chunk from the upstream (or the app)."""
        ...

    async def drain(self, send: Send) -> None:
        """The body ended: send whatever is still held back."""
        ...

    @property
    def ended(self) -> bool: ...


class Hold(Protocol):
    @property
    def watch(self) -> BodyWatch | None:
        """The answer's body watcher, or None when the hold needs no body."""
        ...

    async def answered(self, status: int, served: bool, content_type: str = "") -> Settled:
        """The answer's status (and content type) is known and not sent yet; `served` says
        whether the buyer got what it paid for. May raise LeaseLost (answer 409 instead)."""
        ...

    async def finished(self, complete: bool) -> str | None:
        """The answer's body has gone by (`complete`: to its end); a note, or None."""
        ...

    async def release(self) -> None:
        """No answer was delivered: give back whatever was held."""
        ...


class LeaseHold:
    """A single-use token: consumed once the buyer is served (gateway.paywall.leases)."""

    __slots__ = ("_keeper", "lease")

    watch: BodyWatch | None = None

    def __init__(self, keeper: LeaseKeeper, lease: Lease) -> None:
        self._keeper = keeper
        self.lease = lease

    async def answered(self, status: int, served: bool, content_type: str = "") -> Settled:
        if not served:
            await self._keeper.release(self.lease)
            return NOTHING
        note = await self._keeper.commit(self.lease)
        return NOTHING if note is None else Settled(note=note)

    async def finished(self, complete: bool) -> str | None:
        return None

    async def release(self) -> None:
        await self._keeper.release(self.lease)
