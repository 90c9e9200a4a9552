"""What the global options decide, shared by every subcommand through click's context object."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from edgefleet.protocol.errors import AuthenticationError

if TYPE_CHECKING:
    import httpx
    from click._termui_impl import ProgressBar  # what click.progressbar returns; click exports no name for it

    from edgefleet.client import EdgefleetClient

__all__ = ["DEFAULT_SERVER", "CliState", "notes_json", "pass_state", "transfer_progress"]

DEFAULT_SERVER = "http://127.0.0.1:8700"
R = TypeVar("R")


@dataclasses.dataclass
class CliState:
    server: str = DEFAULT_SERVER
    token: str | None = None
    timeout_s: float = 30.0
    transport: httpx.BaseTransport | None = None
    """Tests may inject a transport; the command line never sets it."""
    json_output: bool = False
    """The running command was given ``--json``: its error is printed as JSON on stdout too (``pass_state``
    sets it from the command's own ``as_json`` option)."""

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


def _noting_json() -> tuple[click.Context, CliState]:
    ctx = click.get_current_context()
    state = ctx.ensure_object(CliState)
    state.json_output = bool(ctx.params.get("as_json", False))
    return ctx, state


def pass_state(f: Callable[..., R]) -> Callable[..., R]:
    """``click.make_pass_decorator(CliState, ensure=True)``, which also notes whether the command was given
    ``--json`` (its ``as_json`` parameter), so a failure can be printed the way its success would be."""

    def new_func(*args: Any, **kwargs: Any) -> R:
        ctx, state = _noting_json()
        return ctx.invoke(f, state, *args, **kwargs)

    wrapped = functools.update_wrapper(new_func, f)
    wrapped.notes_json = True  # type: ignore[attr-defined]
    return wrapped


def notes_json(f: Callable[..., R]) -> Callable[..., R]:
    """For a command taking ``--json`` without the state (offline commands): what ``pass_state`` notes."""

    def new_func(*args: Any, **kwargs: Any) -> R:
        ctx, _ = _noting_json()
        return ctx.invoke(f, *args, **kwargs)

    wrapped = functools.update_wrapper(new_func, f)
    wrapped.notes_json = True  # type: ignore[attr-defined]
    return wrapped


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
