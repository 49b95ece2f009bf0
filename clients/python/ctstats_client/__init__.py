"""A small client for the ctstats HTTP API, for researchers in Python.

>>> from ctstats_client import Client
>>> c = Client("http://127.0.0.1:8080", token)
>>> c.preview(measure="persons", group_by=["mission"],
...           period={"from": "2003-01", "to": "2006-12"}, budget={"epsilon": 0.5})
>>> persons = c.sql("SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.5) mission, "
...                 "COUNT(DISTINCT person) FROM cases "
...                 "WHERE registration_year BETWEEN 2003 AND 2006 GROUP BY mission")
>>> persons[["mission", "estimate", "lower", "upper"]]

Tables come back as pandas DataFrames when pandas is installed (``pip install
ctstats-client[pandas]``), else as :class:`Rows` (a list of dicts). Either way what the API said
about the table as a whole (query hash, cost, budget left, notes, ...) is in ``.attrs`` (a
DataFrame's) or ``.meta`` (the rows'). Refusals raise the typed errors of
:mod:`ctstats_client.errors`.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

import httpx

from .errors import (  # noqa: F401  (re-exported)
    BudgetExhausted,
    BudgetTooSmall,
    CtstatsError,
    DatasetBudgetExhausted,
    Forbidden,
    InvalidJson,
    InvalidQuery,
    InvalidSql,
    InvalidToken,
    NoBudget,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthenticated,
    error_for,
)

try:  # pandas is optional
    import pandas as _pandas
except ImportError:  # pragma: no cover - exercised by the no-pandas test through the flag
    _pandas = None

__all__ = [
    "Client",
    "Rows",
    "CtstatsError",
    "BudgetExhausted",
    "BudgetTooSmall",
    "DatasetBudgetExhausted",
    "Forbidden",
    "InvalidJson",
    "InvalidQuery",
    "InvalidSql",
    "InvalidToken",
    "NoBudget",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "Unauthenticated",
]


class Rows(list):
    """A table without pandas: a list of dicts (one per row), with the table's ``meta``."""

    def __init__(self, rows: Iterable[Dict[str, Any]], meta: Dict[str, Any], columns: List[str]):
        super().__init__(rows)
        self.meta = meta
        self.columns = columns


def _table(rows: List[Dict[str, Any]], columns: List[str], meta: Dict[str, Any]):
    if _pandas is None:
        return Rows(rows, meta, columns)
    frame = _pandas.DataFrame(rows, columns=columns)
    frame.attrs.update(meta)
    return frame


class Client:
    """The API of one ctstats service, as one principal (its bearer token)."""

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 120.0,
                 transport: Optional[httpx.BaseTransport] = None):
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- HTTP -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, json: Any = None, params: Any = None) -> httpx.Response:
        response = self._http.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": {"code": f"http_{response.status_code}",
                                  "message": response.text[:200]}}
            raise error_for(response.status_code, body)
        return response

    def get_json(self, path: str, params: Any = None) -> Any:
        """``GET path`` as JSON (any endpoint; the methods below are built on this)."""
        return self._request("GET", path, params=params).json()

    def post_json(self, path: str, body: Any, params: Any = None) -> Any:
        """``POST path`` with a JSON body, as JSON."""
        return self._request("POST", path, json=body, params=params).json()

    # -- the catalogue ------------------------------------------------------------------------

    def dimensions(self):
        """The public dimensions and value columns: one row per column name, with whether it can
        be grouped and filtered (``dimension``) and aggregated (``value_column``); the measures
        and missions in the table's metadata."""
        body = self.get_json("/v1/dimensions")
        names = list(dict.fromkeys(body["dimensions"] + body["value_columns"]))
        rows = [{"name": n, "dimension": n in body["dimensions"],
                 "value_column": n in body["value_columns"]} for n in names]
        meta = {k: v for k, v in body.items() if k not in ("dimensions", "value_columns")}
        return _table(rows, ["name", "dimension", "value_column"], meta)

    def indicators(self):
        """The catalogue of standard indicators, one row each."""
        body = self.get_json("/v1/indicators")
        rows = body["indicators"]
        columns = list(rows[0].keys()) if rows else ["id", "title", "unit"]
        return _table(rows, columns, {})

    # -- queries ------------------------------------------------------------------------------

    @staticmethod
    def _spec(spec: Optional[Dict[str, Any]], fields: Dict[str, Any]) -> Dict[str, Any]:
        merged = dict(spec or {})
        merged.update(fields)
        return merged

    def preview(self, spec: Optional[Dict[str, Any]] = None, **fields):
        """What a query would cost and how precise it would be; charges nothing. One row per
        noisy part (its mechanism, noise scale, 95% half-width and cost); the total cost, the
        half-width of every cell, the budget and whether it is affordable in the metadata."""
        return self._preview(self.post_json("/v1/preview", self._spec(spec, fields)))

    def sql_preview(self, statement: str):
        """:meth:`preview` for a SQL statement."""
        return self._preview(self.post_json("/v1/sql/preview", {"sql": statement}))

    @staticmethod
    def _preview(body: Dict[str, Any]):
        rows = []
        for part in body["parts"]:
            row = {k: v for k, v in part.items() if k not in ("cost", "sensitivity")}
            row["epsilon"] = part.get("cost", {}).get("epsilon")
            row["delta"] = part.get("cost", {}).get("delta")
            rows.append(row)
        columns = list(rows[0].keys()) if rows else ["name", "half_width_95"]
        meta = {k: v for k, v in body.items() if k != "parts"}
        return _table(rows, columns, meta)

    def query(self, spec: Optional[Dict[str, Any]] = None, **fields):
        """Ask a DP query (the JSON spec of ``POST /v1/query``, as a dict or keyword fields),
        charged to the caller's budget, or re-served free if asked before. One row per cell:
        its keys (one column per dimension), ``estimate``, ``lower`` and ``upper`` (the 95%
        interval); query hash, compiled query, charge, budget left, ``reused`` and the answer's
        parts and notes in the metadata."""
        return self._answer(self.post_json("/v1/query", self._spec(spec, fields)))

    def sql(self, statement: str):
        """Ask a SQL statement (``POST /v1/sql``); the same table as :meth:`query`."""
        return self._answer(self.post_json("/v1/sql", {"sql": statement}))

    def query_csv(self, spec: Optional[Dict[str, Any]] = None, **fields) -> str:
        """:meth:`query` as the API's CSV text (cells only)."""
        return self._request("POST", "/v1/query", json=self._spec(spec, fields),
                             params={"format": "csv"}).text

    def sql_csv(self, statement: str) -> str:
        """:meth:`sql` as the API's CSV text (cells only)."""
        return self._request("POST", "/v1/sql", json={"sql": statement},
                             params={"format": "csv"}).text

    @staticmethod
    def _answer(body: Dict[str, Any]):
        answer = body["answer"]
        dims = list(answer["dimensions"])
        rows = []
        for cell in answer["cells"]:
            row = dict(zip(dims, cell["key"]))
            row.update(estimate=cell["estimate"], lower=cell["lower"], upper=cell["upper"])
            rows.append(row)
        meta = {k: v for k, v in body.items() if k != "answer"}
        meta["answer"] = {k: v for k, v in answer.items() if k != "cells"}
        return _table(rows, dims + ["estimate", "lower", "upper"], meta)

    def budget(self) -> Dict[str, Any]:
        """The caller's budget on the dataset: total, spent and left (a dict, not a table)."""
        return self.get_json("/v1/budget")

    # -- releases -----------------------------------------------------------------------------

    def releases(self):
        """The releases of the dataset, one row each (free to read for every role)."""
        body = self.get_json("/v1/releases")
        rows = []
        for r in body["releases"]:
            row = {k: v for k, v in r.items() if k != "cost"}
            row["epsilon"] = r.get("cost", {}).get("epsilon")
            row["delta"] = r.get("cost", {}).get("delta")
            rows.append(row)
        columns = list(rows[0].keys()) if rows else ["id", "name"]
        return _table(rows, columns, {})

    def release(self, release_id: int):
        """One release, one row per indicator cell: ``indicator``, ``mission``, ``period``,
        ``key`` (the breakdown's value, if any), ``estimate``, ``lower``, ``upper`` and
        ``unit`` (the API's ``value`` is named ``estimate`` here, as in query answers); the
        release's cost, budget rule and notes in the metadata."""
        body = self.get_json(f"/v1/releases/{int(release_id)}")
        rows = []
        for ind in body["indicators"]:
            for cell in ind["cells"]:
                rows.append({"indicator": ind["id"], "mission": cell.get("mission"),
                             "period": cell.get("period"), "key": cell.get("key"),
                             "estimate": cell.get("value"), "lower": cell.get("lower"),
                             "upper": cell.get("upper"), "unit": ind.get("unit")})
        columns = ["indicator", "mission", "period", "key", "estimate", "lower", "upper", "unit"]
        meta = {k: v for k, v in body.items() if k != "indicators"}
        return _table(rows, columns, meta)

    def release_csv(self, release_id: int) -> str:
        """A release as the API's CSV text."""
        return self._request("GET", f"/v1/releases/{int(release_id)}",
                             params={"format": "csv"}).text

    # -- synthetic tables ---------------------------------------------------------------------

    def synthetic_preview(self, request: Optional[Dict[str, Any]] = None, **fields) -> Dict[str, Any]:
        """What a synthetic table (the body of ``POST /v1/synthetic``: ``name``, ``from``,
        ``to``, ``epsilon``, ``delta``, optional ``columns``, ``missions``,
        ``max_records_per_person``) would charge and leave of the budgets; charges nothing. A
        dict: rho, (epsilon, delta), the noise, the budgets after it, ``affordable``."""
        return self.post_json("/v1/synthetic/preview", self._spec(request, fields))

    def synthesize(self, request: Optional[Dict[str, Any]] = None, **fields) -> Dict[str, Any]:
        """Make a DP synthetic table (analysts and admins), charged once to the caller's budget
        and the dataset's, or served again free if the caller asked the same before. Keyword
        ``from_`` stands for ``from`` (a Python keyword). A dict: the stored table's metadata
        (``id``, ``rows``, ``columns``, cost, guarantee, tree); read its records with
        :meth:`synthetic_records`."""
        body = self._spec(request, {("from" if k == "from_" else k): v for k, v in fields.items()})
        return self.post_json("/v1/synthetic", body)

    def synthetic_tables(self):
        """The stored synthetic tables, newest first, one row each (free for every role)."""
        body = self.get_json("/v1/synthetic")
        rows = []
        for t in body["tables"]:
            row = {k: v for k, v in t.items() if k not in ("cost", "loss", "tree", "kept_values")}
            row["epsilon"] = t.get("cost", {}).get("epsilon")
            row["delta"] = t.get("cost", {}).get("delta")
            rows.append(row)
        columns = list(rows[0].keys()) if rows else ["id", "name", "rows"]
        return _table(rows, columns, {})

    def synthetic_table(self, table_id: int) -> Dict[str, Any]:
        """One synthetic table's metadata (a dict)."""
        return self.get_json(f"/v1/synthetic/{int(table_id)}")

    def synthetic_records(self, table_id: int):
        """A synthetic table's records, one row each, every value a string of its column's
        public domain (``unknown`` for a missing value); its metadata in ``.attrs`` / ``.meta``."""
        import csv
        import io

        info = self.synthetic_table(table_id)
        text = self._request("GET", f"/v1/synthetic/{int(table_id)}/records",
                             params={"format": "csv"}).text
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
        return _table(rows, list(reader.fieldnames or info.get("columns", [])), info)

    def synthetic_parquet(self, table_id: int) -> bytes:
        """A synthetic table's records as the API's Parquet bytes (``pandas.read_parquet``)."""
        return self._request("GET", f"/v1/synthetic/{int(table_id)}/records",
                             params={"format": "parquet"}).content
