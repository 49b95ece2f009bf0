"""Typed errors: one class per stable error code of the ctstats API.

Every refusal of the API is JSON ``{"error": {"code", "message", "details"}}``; the client
raises the class of its ``code`` (``BudgetExhausted`` for ``budget_exhausted``, ...), each a
subclass of :class:`CtstatsError`, which carries ``code``, ``status``, ``message`` and
``details``. A code this version does not know raises :class:`CtstatsError` itself.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type


class CtstatsError(Exception):
    """A refusal or failure answered by the service."""

    code: str = ""

    def __init__(self, status: int, code: str, message: str, details: Optional[Any] = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class Unauthenticated(CtstatsError):
    """No bearer token (401)."""


class InvalidToken(CtstatsError):
    """Unknown or revoked token (401)."""


class Forbidden(CtstatsError):
    """The token's role may not do this (403)."""


class NoBudget(CtstatsError):
    """No budget is set for the caller on this dataset (403)."""


class BudgetExhausted(CtstatsError):
    """The caller's budget cannot pay for the query (403); ``details`` says what is left."""


class DatasetBudgetExhausted(CtstatsError):
    """The dataset-wide budget cannot pay for the query (403)."""


class InvalidQuery(CtstatsError):
    """The query cannot be answered as asked (400); ``details["errors"]`` names each field."""


class InvalidSql(CtstatsError):
    """The SQL statement is refused (400); ``details["sql"]`` has construct, line and column."""

    @property
    def construct(self) -> Optional[str]:
        return (self.details or {}).get("sql", {}).get("construct")

    @property
    def line(self) -> Optional[int]:
        return (self.details or {}).get("sql", {}).get("line")

    @property
    def column(self) -> Optional[int]:
        return (self.details or {}).get("sql", {}).get("column")


class InvalidJson(CtstatsError):
    """The body is not the JSON the endpoint takes (400)."""


class BudgetTooSmall(CtstatsError):
    """The budget is too small for the query's noise (400)."""


class NotFound(CtstatsError):
    """No such route, release or principal (404)."""


class PayloadTooLarge(CtstatsError):
    """The body is larger than the service accepts (413)."""


class ServerError(CtstatsError):
    """The service failed (500); the cause is in its log, not here."""


_BY_CODE: Dict[str, Type[CtstatsError]] = {
    "unauthenticated": Unauthenticated,
    "invalid_token": InvalidToken,
    "forbidden": Forbidden,
    "no_budget": NoBudget,
    "budget_exhausted": BudgetExhausted,
    "dataset_budget_exhausted": DatasetBudgetExhausted,
    "invalid_query": InvalidQuery,
    "invalid_sql": InvalidSql,
    "invalid_json": InvalidJson,
    "budget_too_small": BudgetTooSmall,
    "not_found": NotFound,
    "payload_too_large": PayloadTooLarge,
    "internal": ServerError,
}


def error_for(status: int, body: Any) -> CtstatsError:
    """The typed error of a refusal's status and JSON body."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = error.get("code") or f"http_{status}"
    message = error.get("message") or "no message"
    cls = _BY_CODE.get(code, CtstatsError)
    return cls(status, code, message, error.get("details"))
