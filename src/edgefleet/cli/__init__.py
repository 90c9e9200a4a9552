"""The ``edgefleet`` command line. Talks to the server only through ``edgefleet.client``."""

__all__: list[str] = []
