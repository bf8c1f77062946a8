"""Errors in the OpenAI API's shape: ``{"error": {"message", "type", "param", "code"}}``.

The status says who is at fault. 4xx is the client's mistake and the official client does
not retry it; 429 and 5xx it retries with backoff, so a 5xx must mean the server really
failed (or is full), never a bad request.

>>> error = APIError.invalid("temperature must be in [0, 2]", param="temperature").body()
>>> sorted(error["error"].items())  # doctest: +NORMALIZE_WHITESPACE
[('code', None), ('message', 'temperature must be in [0, 2]'), ('param', 'temperature'),
 ('type', 'invalid_request_error')]
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An HTTP error with an OpenAI-shaped body."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    @classmethod
    def invalid(cls, message: str, param: str | None = None, code: str | None = None) -> APIError:
        """400: the request is malformed or a value is out of range."""
        return cls(400, message, param=param, code=code)

    @classmethod
    def unsupported(cls, names: list[str]) -> APIError:
        """400 for parameters that would change the result and that we do not implement."""
        listed = ", ".join(repr(n) for n in names)
        return cls(
            400,
            f"unsupported parameter{'s' if len(names) > 1 else ''} {listed}: this server does "
            "not implement it, and ignoring it would change what you get; remove it",
            param=names[0],
            code="unsupported_parameter",
        )

    @classmethod
    def model_not_found(cls, model: str, served: str) -> APIError:
        return cls(
            404,
            f"The model {model!r} does not exist; this server serves {served!r} "
            "(GET /v1/models lists it)",
            param="model",
            code="model_not_found",
        )

    @classmethod
    def overloaded(cls, waiting: int) -> APIError:
        return cls(
            503,
            f"the server is busy: {waiting} requests are already waiting for the model; "
            "retry in a moment",
            type="server_overloaded",
            code="queue_full",
            headers={"Retry-After": "1"},
        )


HTTP_TYPES = {
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def from_status(status: int, message: str) -> APIError:
    """An APIError for a plain HTTP error (unknown route, wrong method, ...)."""
    kind = HTTP_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return APIError(status, message, type=kind)
