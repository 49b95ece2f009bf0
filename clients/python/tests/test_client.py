"""The client against a real `ctstats serve`: every method, the refusals as typed errors,
re-serving, and its tables equal to what the HTTP API answers (JSON and CSV)."""

import csv
import io

import httpx
import pytest

import ctstats_client
from ctstats_client import (BudgetExhausted, Client, CtstatsError, Forbidden, InvalidQuery,
                            InvalidSql, InvalidToken, NoBudget, NotFound, Unauthenticated)

SPEC = {
    "measure": "persons",
    "group_by": ["mission", "registration_year"],
    "period": {"from": "2003-01", "to": "2006-12"},
    "contribution_bound": 2,
    "budget": {"epsilon": 0.25},
}
# The same question as SPEC, in SQL.
STATEMENT = (
    "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.25, max_records_per_person = 2) "
    "mission, registration_year, COUNT(DISTINCT person) AS persons FROM cases "
    "WHERE registration_year BETWEEN 2003 AND 2006 GROUP BY mission, registration_year"
)


@pytest.fixture()
def researcher(service):
    with Client(service["url"], service["researcher"]) as c:
        yield c


def test_the_catalogue_lists_dimensions_value_columns_and_indicators(researcher):
    dims = researcher.dimensions()
    by_name = dims.set_index("name")
    assert by_name.loc["mission", "dimension"]
    assert by_name.loc["months_to_closure", "value_column"]
    assert not by_name.loc["months_to_closure", "dimension"]
    assert "KAZ" in dims.attrs["missions"]
    assert "persons" in dims.attrs["measures"]
    indicators = researcher.indicators()
    assert "persons_assisted" in set(indicators["id"])
    assert {"id", "title", "unit"} <= set(indicators.columns)


def test_preview_prices_the_query_which_is_charged_once_and_re_served_free(researcher):
    preview = researcher.preview(SPEC)
    assert preview.attrs["affordable"] is True
    assert preview.attrs["cost"]["epsilon"] == pytest.approx(0.25)
    assert list(preview["name"]) == ["persons"]
    spent = researcher.budget()["epsilon_spent"]

    first = researcher.query(SPEC)
    assert list(first.columns) == ["mission", "registration_year", "estimate", "lower", "upper"]
    assert len(first) == preview.attrs["cells"]
    assert first.attrs["query_hash"] == preview.attrs["query_hash"]
    assert first.attrs["charged"]["epsilon"] == pytest.approx(0.25)
    assert (first["lower"] <= first["upper"]).all()
    assert researcher.budget()["epsilon_spent"] == pytest.approx(spent + 0.25)

    again = researcher.query(**SPEC)  # keyword fields are the same spec
    assert again.attrs["reused"] is True
    assert again.attrs["charged"]["epsilon"] == 0
    assert again.equals(first)
    assert researcher.budget()["epsilon_spent"] == pytest.approx(spent + 0.25)


def test_sql_asks_the_same_question_as_json(researcher):
    answer = researcher.query(SPEC)
    preview = researcher.sql_preview(STATEMENT)
    assert preview.attrs["query_hash"] == answer.attrs["query_hash"]
    sql = researcher.sql(STATEMENT)
    assert sql.attrs["query_hash"] == answer.attrs["query_hash"]
    assert sql.attrs["reused"] is True
    assert sql.equals(answer)
    top = researcher.sql(STATEMENT + " ORDER BY persons DESC LIMIT 3")
    assert len(top) == 3
    assert list(top["estimate"]) == sorted(answer["estimate"], reverse=True)[:3]


def _csv_rows(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{k: (float(v) if k in ("estimate", "lower", "upper") else v) for k, v in r.items()}
            for r in rows]


def test_tables_equal_the_http_api_as_json_and_as_csv(service, researcher):
    frame = researcher.query(SPEC)
    raw = httpx.post(f"{service['url']}/v1/query", json=SPEC,
                     headers={"Authorization": f"Bearer {service['researcher']}"}).json()
    cells = raw["answer"]["cells"]
    assert len(cells) == len(frame)
    for cell, (_, row) in zip(cells, frame.iterrows()):
        assert cell["key"] == [row["mission"], row["registration_year"]]
        assert (cell["estimate"], cell["lower"], cell["upper"]) == (
            row["estimate"], row["lower"], row["upper"])
    records = frame.to_dict("records")
    assert _csv_rows(researcher.query_csv(SPEC)) == records
    assert _csv_rows(researcher.sql_csv(STATEMENT)) == records


def test_releases_are_listed_and_read_as_tables(researcher):
    releases = researcher.releases()
    assert len(releases) >= 1
    first = int(releases["id"].iloc[0])
    release = researcher.release(first)
    assert {"indicator", "estimate", "lower", "upper"} <= set(release.columns)
    assert (release["lower"] <= release["upper"]).all()
    assert release.attrs["cost"]["epsilon"] > 0
    assert len(_csv_rows(researcher.release_csv(first))) == len(release)


SYNTHETIC = {"name": "client test table", "from": 2003, "to": 2006, "epsilon": 1.0,
             "delta": 1e-6, "columns": ["mission", "gender", "age_band", "exploitation_types"]}


def test_synthetic_tables_are_made_once_re_served_free_and_read_by_every_role(service,
                                                                               researcher):
    with Client(service["url"], service["analyst"]) as analyst:
        preview = analyst.synthetic_preview(SYNTHETIC)
        assert preview["affordable"] and preview["cost"]["epsilon"] <= 1.0
        # Charged in rho: the budget after is what the preview said it would be.
        before = analyst.budget()["rho_spent"]
        made = analyst.synthesize(SYNTHETIC)
        after = analyst.budget()
        assert after["rho_spent"] - before == pytest.approx(preview["loss"]["rho"], rel=1e-6)
        assert after["epsilon_left"] == pytest.approx(
            preview["after"]["principal"]["epsilon_left"], rel=1e-9)
        again = analyst.synthesize(SYNTHETIC)
        assert again["id"] == made["id"]
        assert analyst.budget()["rho_spent"] == after["rho_spent"]
    flags = [c for c in made["columns"] if c.startswith("exploitation_")]
    assert made["columns"][:3] == ["mission", "gender", "age_band"] and len(flags) == 9
    with pytest.raises(Forbidden):
        researcher.synthesize(SYNTHETIC)

    listed = researcher.synthetic_tables()
    assert made["id"] in set(int(i) for i in listed["id"])
    records = researcher.synthetic_records(made["id"])
    assert len(records) == made["rows"] and list(records.columns) == made["columns"]
    assert records.attrs["guarantee"] == made["guarantee"]
    assert set(records["mission"]) <= set(made["missions"])
    for flag in flags:
        assert set(records[flag]) <= {"yes", "no", "unknown"}
    assert not [c for c in records.columns if "key" in c or c.endswith("_id")]
    assert researcher.synthetic_parquet(made["id"])[:4] == b"PAR1"
    with pytest.raises(NotFound):
        researcher.synthetic_records(999_999)


def test_refusals_raise_typed_errors_with_the_api_code(service, researcher):
    with pytest.raises(InvalidSql) as e:
        researcher.sql("SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) mission, COUNT(*) "
                       "FROM cases JOIN persons ON cases.person_key = persons.person_key")
    assert (e.value.code, e.value.status, e.value.construct) == ("invalid_sql", 400, "JOIN")
    assert e.value.line == 1 and e.value.column > 1
    with pytest.raises(InvalidQuery) as e:
        researcher.query(SPEC, group_by=["no_such_dimension"])
    assert e.value.details["errors"][0]["field"] == "group_by"
    with pytest.raises(NotFound):
        researcher.release(999_999)

    url = service["url"]
    with pytest.raises(Unauthenticated):
        Client(url).budget()
    with pytest.raises(InvalidToken):
        Client(url, "cts_" + "0" * 64).query(SPEC)
    with pytest.raises(Forbidden):
        Client(url, service["ngo"]).query(SPEC)
    with pytest.raises(NoBudget):
        Client(url, service["unbudgeted"]).query(SPEC)
    poor = Client(url, service["poor"])
    with pytest.raises(BudgetExhausted) as e:
        poor.query(SPEC, budget={"epsilon": 1.0})
    assert e.value.code == "budget_exhausted" and isinstance(e.value, CtstatsError)
    assert poor.budget()["epsilon_spent"] == 0


def test_without_pandas_tables_are_plain_rows(monkeypatch, researcher):
    monkeypatch.setattr(ctstats_client, "_pandas", None)
    rows = researcher.query(SPEC)
    assert isinstance(rows, ctstats_client.Rows) and isinstance(rows[0], dict)
    assert rows.columns == ["mission", "registration_year", "estimate", "lower", "upper"]
    assert set(rows[0]) == set(rows.columns)
    assert rows.meta["query_hash"]


def test_the_readme_example_runs(service, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "researcher.py"
    out = subprocess.run(
        [sys.executable, str(example), "--url", service["url"], "--token", service["analyst"],
         "--plot", str(tmp_path / "persons.png")],
        check=True, capture_output=True, text=True).stdout
    assert "costs epsilon 0.5" in out
    assert "charged epsilon" in out
    # Plotted, or printed where matplotlib is not installed.
    assert "chart:" in out or "estimate" in out
