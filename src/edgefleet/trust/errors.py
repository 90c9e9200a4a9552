"""Errors of content trust and verified downloads, each with a stable ``code``.

Every one of these means "nothing new was installed": the caller keeps running what it runs now.
"""

from __future__ import annotations

from edgefleet.protocol.errors import EdgefleetError

__all__ = [
    "AssignmentRejectedError",
    "BelowReleaseFloorError",
    "DiskFullError",
    "DownloadFailedError",
    "DownloadTooLargeError",
    "DownloadTooSlowError",
    "HashMismatchError",
    "KeyFileError",
    "TargetNotInTufError",
    "TargetsRejectedError",
    "TrustAnchorError",
    "TrustError",
    "TufMetadataRejectedError",
    "UntrustedTargetsError",
    "WrongHardwareClassError",
]


class TrustError(EdgefleetError):
    """Root of content-trust errors."""

    code = "trust_error"
    http_status = 422


class TrustAnchorError(TrustError):
    """A TUF root provisioned out of band is unusable, or the server's trust anchors contradict it at
    enrollment. Specific codes: ``invalid_tuf_root``, ``tuf_root_names_no_director_key``,
    ``tuf_root_mismatch``. Nothing is enrolled."""

    code = "trust_anchor_rejected"


class TufMetadataRejectedError(TrustError):
    """Remote TUF metadata failed verification (signature, threshold, version, expiry, size, consistency)."""

    code = "tuf_metadata_rejected"


class TargetsRejectedError(TrustError):
    """The image repository refused an uploaded targets metadata (publisher side)."""

    code = "targets_rejected"


class UntrustedTargetsError(TrustError):
    """Publisher side: the targets it would build on (the server's current ones) are not what the release key
    signed last. Specific codes: ``targets_not_signed_by_release_key``, ``targets_signed_by_retired_key``,
    ``targets_rollback``, ``targets_fork``. Nothing is signed."""

    code = "untrusted_targets"


class AssignmentRejectedError(TrustError):
    """A director assignment does not match verified TUF metadata."""

    code = "assignment_rejected"


class TargetNotInTufError(AssignmentRejectedError):
    code = "target_not_in_tuf"


class WrongHardwareClassError(AssignmentRejectedError):
    code = "wrong_hardware_class"


class BelowReleaseFloorError(AssignmentRejectedError):
    code = "below_release_floor"


class HashMismatchError(TrustError):
    """Downloaded or assigned bytes differ from the signed sha256/length."""

    code = "hash_mismatch"


class DownloadFailedError(TrustError):
    """A transfer failed in a way that may succeed on retry (network, HTTP status)."""

    code = "download_failed"
    http_status = 502


class DownloadTooSlowError(DownloadFailedError):
    """Overall deadline passed or throughput fell under the minimum (trickling)."""

    code = "download_too_slow"


class DownloadTooLargeError(TrustError):
    """More bytes arrived than the signed length or the configured bound allows."""

    code = "download_too_large"
    http_status = 413


class DiskFullError(TrustError):
    code = "disk_full"
    http_status = 507


class KeyFileError(TrustError):
    """A key file is missing, unreadable, of the wrong type, or too permissive."""

    code = "key_file_invalid"
    http_status = 400
