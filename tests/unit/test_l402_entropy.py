"""The entropy pool hands out each kernel random byte once."""

from __future__ import annotations

from gateway.l402.entropy import EntropyPool


def test_takes_are_fresh_and_of_the_asked_length() -> None:
    pool = EntropyPool(block=100)
    taken = [pool.take(32) for _ in range(50)]  # crosses many refills
    assert all(len(t) == 32 for t in taken)
    assert len(set(taken)) == 50
    assert len(pool.take(500)) == 500  # larger than a block: straight from the kernel


def test_a_block_is_split_not_reused() -> None:
    pool = EntropyPool(block=64)
    first, second = pool.take(32), pool.take(32)
    assert first != second
    third = pool.take(32)  # a new block
    assert third not in (first, second)
