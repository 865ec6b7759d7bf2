"""Store operations as sans-I/O generators: each op yields SQL steps and receives results.

Every store operation is written once, as a generator that yields `Execute`,
`FetchOne` or `FetchAll` steps (SQL with `?` placeholders) and is sent each
step's result. A backend only drives the generator: the SQLite backend runs it
to completion on its own thread (one executor hop per operation), the
PostgreSQL backend awaits each step on a pooled connection. So the SQL and the
logic around it exist once, and a new backend is connection and transaction
code only.

Each op also says how it must be run (`Kind`): READ (never waits for writers),
WRITE (single statements, each atomic on its own) or TRANSACTION (several
statements that must commit together, holding the write lock from the start).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, NamedTuple, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

Row = tuple[Any, ...]


class Execute(NamedTuple):
    """Run a statement; the op is sent the number of rows it changed."""

    sql: str
    params: Sequence[object] = ()


class FetchOne(NamedTuple):
    """Run a query; the op is sent its first row (a tuple) or None."""

    sql: str
    params: Sequence[object] = ()


class FetchAll(NamedTuple):
    """Run a query; the op is sent all its rows (a list of tuples)."""

    sql: str
    params: Sequence[object] = ()


Step = Execute | FetchOne | FetchAll
Steps = Generator[Step, Any, T]


class Kind(Enum):
    READ = "read"  # SQLite: a reader connection, never queued behind writes
    WRITE = "write"  # each statement atomic on its own (autocommit)
    TRANSACTION = "transaction"  # all statements or none; write lock taken up front


@dataclass(frozen=True, slots=True)
class Op(Generic[T]):
    """One store operation, ready to be driven by a backend."""

    name: str
    kind: Kind
    steps: Steps[T]

    @property
    def writes(self) -> bool:
        return self.kind is not Kind.READ


def _op(kind: Kind) -> Callable[[Callable[P, Steps[T]]], Callable[P, Op[T]]]:
    def decorate(fn: Callable[P, Steps[T]]) -> Callable[P, Op[T]]:
        @functools.wraps(fn)
        def make(*args: P.args, **kwargs: P.kwargs) -> Op[T]:
            return Op(fn.__name__, kind, fn(*args, **kwargs))

        return make

    return decorate


reads = _op(Kind.READ)
writes = _op(Kind.WRITE)
transaction = _op(Kind.TRANSACTION)


def drive(op: Op[T], run_step: Callable[[Step], Any]) -> T:
    """Run `op` to completion with a synchronous step runner (the SQLite thread's)."""
    steps = op.steps
    try:
        step = next(steps)
        while True:
            step = steps.send(run_step(step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()


def placeholders(count: int) -> str:
    """`(?, ?, ...)` for an IN list of `count` values (count >= 1)."""
    if count < 1:
        raise ValueError("an IN list needs at least one value")
    return "(" + ", ".join("?" * count) + ")"


def chunks(values: Sequence[T], size: int) -> list[Sequence[T]]:
    """Split long IN lists: both databases cap the number of bound parameters."""
    return [values[i : i + size] for i in range(0, len(values), size)]
