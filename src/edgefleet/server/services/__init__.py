"""Use cases. Each function owns one explicit transaction and writes its audit row inside it."""

__all__: list[str] = []
