"""What the global options decide, shared by every subcommand through click's context object."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from edgefleet.protocol.errors import AuthenticationError

if TYPE_CHECKING:
    import httpx
    from click._termui_impl import ProgressBar  # what click.progressbar returns; click exports no name for it

    from edgefleet.client import EdgefleetClient

__all__ = ["DEFAULT_SERVER", "CliState", "pass_state", "transfer_progress"]

DEFAULT_SERVER = "http://127.0.0.1:8700"


@dataclasses.dataclass
class CliState:
    server: str = DEFAULT_SERVER
    token: str | None = None
    timeout_s: float = 30.0
    transport: httpx.BaseTransport | None = None
    """Tests may inject a transport; the command line never sets it."""

    def client(self, *, need_token: bool = True) -> EdgefleetClient:
        from edgefleet.client import EdgefleetClient

        if need_token and not self.token:
            raise AuthenticationError(
                "no operator token: pass --token or set EDGEFLEET_TOKEN",
                code="token_missing",
                expected="an operator token (efop_...)",
                got="none",
            )
        return EdgefleetClient(self.server, self.token, transport=self.transport, timeout_s=self.timeout_s)


pass_state = click.make_pass_decorator(CliState, ensure=True)


@contextlib.contextmanager
def transfer_progress(total_bytes: int, label: str) -> Iterator[ProgressBar[int]]:
    """A byte progress bar on stderr (click draws nothing but the label when stderr is not a terminal)."""
    with click.progressbar(
        length=max(total_bytes, 1),
        label=label,
        file=sys.stderr,
        show_pos=False,
        show_percent=True,
        show_eta=True,
    ) as bar:
        yield bar
