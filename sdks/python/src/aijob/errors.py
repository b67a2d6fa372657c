"""Errors of the aijob SDK: one class per gRPC status a call can end with, and the ones
a handler raises to say how its attempt failed."""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import grpc


class FieldViolation(NamedTuple):
    field: str
    description: str


class AijobError(Exception):
    """A call to aijob failed. `code` is the gRPC status; `field_violations` name the
    request fields at fault (INVALID_ARGUMENT); `retry_after` is the least wait in seconds
    the server asked for (RESOURCE_EXHAUSTED, UNAVAILABLE), when it said."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
                 field_violations: Tuple[FieldViolation, ...] = (), retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field_violations = field_violations
        self.retry_after = retry_after


class InvalidArgumentError(AijobError):
    """The request is malformed; `field_violations` say where."""


class UnauthenticatedError(AijobError):
    """No credential, or an unknown, expired or revoked one."""


class PermissionDeniedError(AijobError):
    """The credential lacks the scope the call needs."""


class NotFoundError(AijobError):
    """No such job (or it belongs to another workspace)."""


class FailedPreconditionError(AijobError):
    """The job is not in a state that allows the call (e.g. retrying a running job)."""


class ResourceExhaustedError(AijobError):
    """Rate limit or backpressure; `retry_after` says when to try again."""


class UnavailableError(AijobError):
    """The service or one of its dependencies is down; retry shortly."""


class DeadlineExceededError(AijobError):
    """The call's deadline passed."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(err: grpc.RpcError) -> AijobError:
    """The typed error for a failed call (sync or asyncio)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    details = (err.details() if hasattr(err, "details") else None) or str(code)  # type: ignore[attr-defined]
    trailers = ()
    try:
        trailers = err.trailing_metadata() or ()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - some errors carry no trailers
        pass
    violations: List[FieldViolation] = []
    retry_after: Optional[float] = None
    for key, value in trailers:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            violations = _field_violations(value)
        elif key == "retry-after-ms":
            try:
                retry_after = int(value) / 1000
            except (TypeError, ValueError):
                pass
    cls = _BY_CODE.get(code, AijobError)
    return cls(details, code, tuple(violations), retry_after)


# google.rpc.Status (details = 3: Any {type_url = 1, value = 2}) carrying google.rpc.BadRequest
# (field_violations = 1: {field = 1, description = 2}), read by hand so that the SDK needs no
# googleapis-common-protos.
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def _fields(data: bytes):
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            yield number, value
        elif wire == 2:
            size, i = _varint(data, i)
            yield number, data[i:i + size]
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            return


def _varint(data: bytes, i: int) -> Tuple[int, int]:
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _field_violations(status: bytes) -> List[FieldViolation]:
    out: List[FieldViolation] = []
    try:
        for number, value in _fields(status):
            if number != 3 or not isinstance(value, bytes):
                continue
            any_fields = dict(_fields(value))
            if any_fields.get(1) != _BAD_REQUEST.encode():
                continue
            for n, violation in _fields(any_fields.get(2, b"")):
                if n == 1 and isinstance(violation, bytes):
                    v = dict(_fields(violation))
                    out.append(FieldViolation(bytes(v.get(1, b"")).decode("utf-8", "replace"),
                                              bytes(v.get(2, b"")).decode("utf-8", "replace")))
    except (IndexError, ValueError):
        return out
    return out


class RetryableError(Exception):
    """Raised by a handler for a failure worth retrying, with a stable code and an
    optional least wait (seconds) before the next attempt."""

    def __init__(self, code: str, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class NonRetryableError(Exception):
    """Raised by a handler when retrying cannot help (bad input, refused by policy): the
    job ends FAILED at once with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
