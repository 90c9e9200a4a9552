"""``IN`` lists bounded below the database drivers' limits.

PostgreSQL takes at most 65,535 bound parameters in one statement (psycopg refuses more before sending), so a
query whose ``IN`` list grows with the fleet (a rollout's members, a selection's devices) fails at fleet scale
unless it is split. Callers iterate ``in_batches(values)`` and run one statement per batch, merging the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["MAX_IN_LIST", "in_batches"]

T = TypeVar("T")

MAX_IN_LIST = 5_000
"""Values per ``IN`` list: far below the 65,535-parameter limit, leaving room for the statement's other
parameters; a larger list costs one more round trip per 5,000 values."""


def in_batches(values: Iterable[T], size: int | None = None) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size`` (default ``MAX_IN_LIST``, read at call time), in order; nothing
    for no values."""
    limit = MAX_IN_LIST if size is None else size
    if limit < 1:
        raise ValueError(f"expected a batch size >= 1, got {limit}")
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == limit:
            yield batch
            batch = []
    if batch:
        yield batch
