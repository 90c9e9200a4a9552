"""Deleting a row exactly once: of concurrent deletes of one row, one removes it and the others learn that
nothing was there (the ORM's ``session.delete`` only warns when its DELETE matched no row)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, inspect
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

__all__ = ["delete_loaded_row"]


def delete_loaded_row(session: Session, row: Any) -> bool:
    """DELETE ``row`` (loaded in the caller's open transaction) by its primary key; ``True`` when this
    statement removed it, ``False`` when a concurrent transaction already had. On PostgreSQL the second
    DELETE waits for the first to commit and then matches nothing; on SQLite writers are serialized."""
    state = inspect(row)
    mapper = state.mapper
    identity = state.identity
    assert identity is not None, "the row must be loaded from the database"
    where = [column == value for column, value in zip(mapper.primary_key, identity, strict=True)]
    result = session.execute(delete(mapper.class_).where(*where))
    assert isinstance(result, CursorResult)
    return result.rowcount == 1
