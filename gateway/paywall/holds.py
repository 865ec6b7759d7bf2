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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.paywall.leases import Lease, LeaseKeeper

Headers = Sequence[tuple[str, str]]
AnswerHeaders = Iterable[tuple[str, str]]  # the upstream's (or the app's) answer headers


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling a hold at the answer's headers gave: headers for the answer, and a
    secret-free note for the access line when something went wrong on our side."""

    headers: Headers = ()
    note: str | None = None


NOTHING = Settled()


class BodyWatch(Protocol):
    """Sees the answer's body on its way to the client (metering, session debits)."""

    async def feed(self, chunk: bytes) -> bytes:
        """The bytes to send in place of `chunk` (usually `chunk` itself; an event may be
        added). Set `ended` to stop the relay after these bytes."""
        ...

    @property
    def ended(self) -> bool: ...

    @property
    def keeps_length(self) -> bool:
        """True when `feed` always returns the chunk it was given (metering only reads):
        the answer keeps its Content-Length and may go out in one write."""
        ...


class Hold(Protocol):
    @property
    def watch(self) -> BodyWatch | None:
        """The answer's body watcher, or None when the hold needs no body."""
        ...

    async def answered(self, status: int, served: bool, headers: AnswerHeaders = ()) -> Settled:
        """The answer's status is known and not sent yet; `served` says whether the buyer
        got what it paid for; `headers` are the answer's own (its Content-Type, a usage
        header a meter reads). May raise LeaseLost (answer 409 instead)."""
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

    async def answered(self, status: int, served: bool, headers: AnswerHeaders = ()) -> Settled:
        if not served:
            await self._keeper.release(self.lease)
            return NOTHING
        note = await self._keeper.commit(self.lease)
        return NOTHING if note is None else Settled(note=note)

    async def finished(self, complete: bool) -> str | None:
        return None

    async def release(self) -> None:
        await self._keeper.release(self.lease)
