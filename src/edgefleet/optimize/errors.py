"""Errors of the optimization pipeline: bad input is refused before anything is written."""

from __future__ import annotations

from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError

__all__ = ["BuildError", "BuildInputError"]


class BuildInputError(InvalidDocumentError):
    """A model, data set, classes file or option that the build cannot use.

    Codes: ``not_onnx``, ``model_too_large``, ``model_shape_mismatch``, ``unsupported_model``,
    ``data_unreadable``, ``data_missing_input``, ``data_dtype_mismatch``, ``data_shape_mismatch``,
    ``too_little_calibration_data``, ``labels_mismatch``, ``unknown_hardware_class``, ``output_exists``,
    ``student_signature_mismatch``.
    """

    code = "invalid_build_input"


class BuildError(EdgefleetError):
    """The build could not complete (a runtime failure that is not the input's fault)."""

    code = "build_failed"
