"""Errors the serving layer raises; each maps to one HTTP status of the local endpoint."""

from __future__ import annotations

from edgefleet.protocol.errors import EdgefleetError

__all__ = [
    "BadTensorError",
    "BodyTooLargeError",
    "InferenceDeferredError",
    "InputFaultError",
    "NoModelError",
    "ServerBusyError",
    "ServingError",
    "UnsupportedBodyError",
]


class ServingError(EdgefleetError):
    """Root of the serving layer's errors."""

    code = "serving_error"
    http_status = 500


class BadTensorError(ServingError):
    """A request's tensors do not fit the model signature or the body is not a tensor (``tensor_*``,
    ``body_*``). The request is the problem: nothing about the model or the rung changes."""

    code = "tensor_invalid"
    http_status = 400


class InputFaultError(BadTensorError):
    """The tensors fit the signature but hold what no working sensor sends: NaN/infinity
    (``input_not_finite``) or values outside the range recorded from the calibration set
    (``input_out_of_range``). An input fault, not a model error."""

    code = "input_fault"
    http_status = 422


class UnsupportedBodyError(BadTensorError):
    code = "body_unsupported_type"
    http_status = 415


class BodyTooLargeError(BadTensorError):
    code = "body_too_large"
    http_status = 413


class ServerBusyError(ServingError):
    """The bounded queue is full (or the wait for a worker ran out): refused at once, retry later."""

    code = "server_busy"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: int, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s
        self.details.setdefault("retry_after_s", retry_after_s)


class InferenceDeferredError(ServingError):
    """The ladder is on its last rung and the configured rule is ``defer``: no answer now."""

    code = "inference_deferred"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: int, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s
        self.details.setdefault("retry_after_s", retry_after_s)


class NoModelError(ServingError):
    """Nothing is loaded (yet) and no rule is configured to answer instead."""

    code = "no_model_loaded"
    http_status = 503
