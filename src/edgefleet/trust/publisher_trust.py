"""What the publisher trusts before it signs: the targets it builds on must be the release key's own.

``edgefleet publish`` copies every entry of the server's current ``N.targets.json`` into version N+1 and
signs them all with the offline release key. A compromised control plane could otherwise serve a
targets document with its own entries and have the release key sign them. So before building on it:

* it must carry valid signatures of a threshold of distinct keys of the ``targets`` role of the root the
  publisher trusts (the ``root.json`` beside the release key, or ``--trusted-root``; without one, the
  publisher's own release key alone);
* after a release-key rotation the current targets are still signed by the *previous* key, listed by an
  older root of the publisher's local root chain (``N.root.json`` files beside the trusted root, each
  verified against the next). Such a document is accepted only when it is byte-identical to the copy this
  publisher kept when it last published (it signed it itself). Otherwise the retired key may be the very
  reason of the rotation: ``targets_signed_by_retired_key``, and the operator decides (``--from-targets``);
* it must not be older than the last targets this publisher signed (``targets_rollback``), nor a different
  document with the same version (``targets_fork``).

The pure check is :func:`check_base_targets`; :func:`load_publisher_trust` reads the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from securesystemslib.signer import Key
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization import DeserializationError

from edgefleet.durable import atomic_write_bytes
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.trust.errors import UntrustedTargetsError
from edgefleet.trust.repository import MAX_METADATA_BYTES, signed_by_distinct_threshold

__all__ = [
    "LAST_TARGETS_NAME",
    "PublisherTrust",
    "check_base_targets",
    "load_publisher_trust",
    "record_published",
]

LAST_TARGETS_NAME = "published-targets.json"
"""Default name of the publisher's copy of the last targets it signed (beside the release key)."""

_RECOVERY = (
    "if you trust another copy (e.g. the one you kept: {last}), "
    "re-run with --from-targets FILE to build on it"
)


@dataclass(frozen=True)
class PublisherTrust:
    root: Root
    """Whose ``targets`` role signs valid targets now."""
    retired: tuple[Root, ...] = ()
    """Older roots of the local chain, newest first: their targets keys are retired."""
    last_published: bytes | None = None
    """The exact targets bytes this publisher signed (and the repository accepted) last."""
    last_published_path: str = ""

    @classmethod
    def of_release_key(
        cls, public_key: Key, *, last_published: bytes | None = None, last_published_path: str = ""
    ) -> PublisherTrust:
        """No root at hand: trust only documents signed by the release key this publisher holds."""
        root = Root(expires=datetime.max.replace(tzinfo=timezone.utc))
        root.add_key(public_key, Targets.type)
        return cls(root, (), last_published, last_published_path)


def _parse_targets(raw: bytes, where: str) -> Metadata[Targets]:
    try:
        if len(raw) > MAX_METADATA_BYTES:
            raise ValueError(f"larger than {MAX_METADATA_BYTES} bytes")
        md = Metadata.from_bytes(raw)
    except (DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise UntrustedTargetsError(
            f"{where} is not valid TUF targets metadata; nothing was signed",
            code="targets_not_signed_by_release_key",
            expected="targets.json signed by the release key",
            got=str(exc),
        ) from exc
    if not isinstance(md.signed, Targets):
        raise UntrustedTargetsError(
            f"{where} is not targets metadata; nothing was signed",
            code="targets_not_signed_by_release_key",
            expected="targets",
            got=md.signed.type,
        )
    return md


def check_base_targets(raw: bytes | None, trust: PublisherTrust, *, where: str) -> Metadata[Targets] | None:
    """Pure: the targets to build on, or an ``UntrustedTargetsError`` (then sign nothing).

    ``raw`` is the current ``N.targets.json`` (``None``: the repository has none yet); ``where`` names its
    source for messages."""
    recovery = _RECOVERY.format(last=trust.last_published_path or "none kept")
    last = _parse_targets(trust.last_published, "the kept copy") if trust.last_published else None
    if raw is None:
        if last is not None:
            raise UntrustedTargetsError(
                f"{where} has no targets, but this publisher signed version {last.signed.version}: "
                f"refusing to start over; {recovery}",
                code="targets_rollback",
                expected=f">= {last.signed.version}",
                got=0,
            )
        return None
    md = _parse_targets(raw, where)
    if not signed_by_distinct_threshold(trust.root, Targets.type, md):
        retired_by = next(
            (r.version for r in trust.retired if signed_by_distinct_threshold(r, Targets.type, md)), None
        )
        if retired_by is None:
            raise UntrustedTargetsError(
                f"{where} serves targets version {md.signed.version} that the release key did not sign "
                f"(tampered, or signed by another key); nothing was signed. If the release key was "
                f"rotated elsewhere, use the newest root as --trusted-root; {recovery}",
                code="targets_not_signed_by_release_key",
                expected=f"{trust.root.roles[Targets.type].threshold} of "
                f"{sorted(trust.root.roles[Targets.type].keyids)} (root v{trust.root.version})",
                got=sorted(md.signatures),
            )
        if trust.last_published != raw:
            raise UntrustedTargetsError(
                f"{where} serves targets version {md.signed.version} signed by a release key retired "
                f"after root v{retired_by}, and it is not the copy this publisher signed; nothing was "
                f"signed. If that rotation was routine, check the document and {recovery}",
                code="targets_signed_by_retired_key",
                expected=f"the targets keys of root v{trust.root.version}",
                got=sorted(md.signatures),
            )
    if last is not None:
        if md.signed.version < last.signed.version:
            raise UntrustedTargetsError(
                f"{where} serves targets version {md.signed.version}, older than version "
                f"{last.signed.version} this publisher signed (a rollback would drop later releases and "
                f"floors); nothing was signed; {recovery}",
                code="targets_rollback",
                expected=f">= {last.signed.version}",
                got=md.signed.version,
            )
        if md.signed.version == last.signed.version and raw != trust.last_published:
            raise UntrustedTargetsError(
                f"{where} serves a targets version {md.signed.version} that differs from the one this "
                f"publisher signed; nothing was signed; {recovery}",
                code="targets_fork",
                expected="the kept copy",
                got="another document with the same version",
            )
    return md


def _local_root_chain(trusted_root: Path) -> tuple[Root, tuple[Root, ...]]:
    """The trusted root and, newest first, the older ``N.root.json`` beside it that chain up to it."""
    try:
        md = Metadata[Root].from_bytes(trusted_root.read_bytes())
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except (OSError, DeserializationError, ValueError, TypeError, KeyError, UnsignedMetadataError) as exc:
        raise InvalidDocumentError(
            f"{trusted_root} is not a root signed by its own root keys",
            code="invalid_trusted_root",
            expected="the root.json written by `edgefleet keys`",
            got=str(exc),
        ) from exc
    root = md.signed
    retired: list[Root] = []
    newer = md
    for version in range(root.version - 1, 0, -1):
        path = trusted_root.parent / f"{version}.root.json"
        if not path.is_file():
            break
        try:
            older = Metadata[Root].from_bytes(path.read_bytes())
        except (OSError, DeserializationError, ValueError, TypeError, KeyError):
            break  # an unreadable old root ends the chain
        if older.signed.version != version:
            break
        try:
            link = newer.signed.get_root_verification_result(
                older.signed, newer.signed_bytes, newer.signatures
            )
        except ValueError:
            break
        if not link.verified:
            break
        retired.append(older.signed)
        newer = older
    return root, tuple(retired)


def load_publisher_trust(
    *, trusted_root: Path | None, release_public_key: Key, last_published: Path
) -> PublisherTrust:
    """Read the publisher's trust: its root (and local chain) if it has one, and its kept copy."""
    kept = last_published.read_bytes() if last_published.is_file() else None
    if trusted_root is None:
        return PublisherTrust.of_release_key(
            release_public_key, last_published=kept, last_published_path=str(last_published)
        )
    root, retired = _local_root_chain(trusted_root)
    return PublisherTrust(root, retired, kept, str(last_published))


def record_published(last_published: Path, targets_bytes: bytes) -> None:
    """Keep the targets just published (durably): the next publish checks the server against it."""
    atomic_write_bytes(last_published, targets_bytes, mode=0o644)
