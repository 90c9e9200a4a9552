"""The lean reading of the wire documents: msgspec structs, no pydantic.

Each document has one definition: its pydantic model in ``edgefleet.protocol``, which the server validates
with and publishes the schema of. The resident ``agent run`` reads and writes the documents it handles
through the msgspec structs of this package instead (and ``trust.director`` verifies the desired state
into one): pydantic and the models built with it held ~17 MiB of
the agent's memory (``docs/decisions.md``, "A lean agent, fifth pass"). A struct mirrors its model field for
field and constraint for constraint; ``tests/agent/test_wire_conformance.py`` compares their JSON Schemas
and runs documents the model refuses through both, so a rule changed in one and not the other fails CI. The
rules a schema cannot carry (a safe relative path, an update window's syntax) are the same functions in both.
"""
