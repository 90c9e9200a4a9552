"""A TUF root provisioned out of band (in the device image, by the release team) as the device's trust anchor.

Without one, a device trusts the root and the director key the server hands out at enrollment: trust on first
use, so a control plane compromised at that moment owns the device. With one, the device pins the root from
the file, and takes the director key only from what that root names (``x-edgefleet-director-keys``, signed by
the root keys); a newer director key is learnt later through the verified root chain, as for any rotation.
Pure: bytes and documents in, decisions out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.trust.director import director_keys_in_root, load_public_key_pem, public_key_pem
from edgefleet.trust.errors import TrustAnchorError

__all__ = ["MAX_ROOT_BYTES", "ProvisionedRoot", "pin_provisioned_root"]

MAX_ROOT_BYTES = 512 * 1024


@dataclass(frozen=True)
class ProvisionedRoot:
    document: dict[str, Any]
    version: int
    director_keys_pem: tuple[str, ...]

    def director_key_for(self, server_pem: Any, server_root: Any) -> str:
        """The director key to pin: the server's if this root names it, else the first one this root names
        (the server's key is then newer, and the device learns it from the verified root chain at its first
        poll). Refuses a server root of the same version with other content: a forked root."""
        if isinstance(server_root, dict):
            signed = server_root.get("signed")
            version = signed.get("version") if isinstance(signed, dict) else None
            if version == self.version and canonical_json(server_root) != canonical_json(self.document):
                raise TrustAnchorError(
                    "the server's TUF root differs from the provisioned one at the same version",
                    code="tuf_root_mismatch",
                    expected=f"root version {self.version} as provisioned",
                    got=f"another root version {version}",
                )
        server_key = None
        if isinstance(server_pem, str):
            try:
                server_key = public_key_pem(load_public_key_pem(server_pem))
            except InvalidDocumentError:
                server_key = None
        if server_key is not None and server_key in self.director_keys_pem:
            return server_key
        return self.director_keys_pem[0]


def pin_provisioned_root(raw: bytes) -> ProvisionedRoot:
    """Parse and self-verify a provisioned ``root.json`` (bounded size, root type, a threshold of its own
    root keys), and read the director keys it names."""
    if len(raw) > MAX_ROOT_BYTES:
        raise TrustAnchorError(
            "provisioned TUF root is too large",
            code="invalid_tuf_root",
            expected=f"<= {MAX_ROOT_BYTES} bytes",
            got=len(raw),
        )
    try:
        md = Metadata[Root].from_bytes(raw)
    except Exception as exc:  # python-tuf raises several types for malformed documents
        raise TrustAnchorError(
            f"provisioned TUF root is not root metadata: {str(exc)[:200]}",
            code="invalid_tuf_root",
            expected="a TUF root.json",
            got=type(exc).__name__,
        ) from exc
    if not isinstance(md.signed, Root):
        raise TrustAnchorError(
            "provisioned TUF metadata is not a root",
            code="invalid_tuf_root",
            expected="root",
            got=str(md.signed.type),
        )
    try:
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise TrustAnchorError(
            "provisioned TUF root is not signed by a threshold of its own root keys",
            code="invalid_tuf_root",
            expected=f"{md.signed.roles[Root.type].threshold} valid root signatures",
            got=str(exc)[:200],
        ) from exc
    keys = tuple(public_key_pem(k) for k in director_keys_in_root(md.signed.unrecognized_fields))
    if not keys:
        raise TrustAnchorError(
            "provisioned TUF root names no director key",
            code="tuf_root_names_no_director_key",
            expected="x-edgefleet-director-keys in the root's signed part",
            got="none",
        )
    return ProvisionedRoot(document=md.to_dict(), version=md.signed.version, director_keys_pem=keys)
