"""A researcher's session with ctstats, notebook style: what does a question cost, ask it, plot
the estimates with their 95% intervals.

    pip install ./clients/python[pandas] matplotlib        # matplotlib is optional
    python examples/researcher.py --url http://127.0.0.1:8080 --token cts_...

Without matplotlib the table is printed instead of plotted. Every number below is a noisy
estimate, charged to the token's budget once; running the script again re-serves the same
answers free.
"""

import argparse

from ctstats_client import BudgetExhausted, Client

parser = argparse.ArgumentParser()
parser.add_argument("--url", default="http://127.0.0.1:8080")
parser.add_argument("--token", required=True)
parser.add_argument("--plot", default="persons.png", help="where the chart goes")
args = parser.parse_args()
ctstats = Client(args.url, args.token)

# 1. What is there to ask about.
dims = ctstats.dimensions()
print("missions:", ", ".join(dims.attrs["missions"]))

# 2. The price first: previews are free.
question = (
    "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.5, max_records_per_person = 2) "
    "mission, registration_year, COUNT(DISTINCT person) AS persons FROM cases "
    "WHERE registration_year BETWEEN 2003 AND 2008 GROUP BY mission, registration_year"
)
price = ctstats.sql_preview(question)
print(f"costs epsilon {price.attrs['cost']['epsilon']}, "
      f"each cell +-{price.attrs['half_width_95']} persons (95%), "
      f"affordable: {price.attrs['affordable']}")

# 3. Ask (charged once; asked again, free).
try:
    persons = ctstats.sql(question)
except BudgetExhausted as e:
    raise SystemExit(f"not enough budget: {e.message}")
persons = persons[persons["registration_year"] != "unknown"]
print(f"charged epsilon {persons.attrs['charged']['epsilon']}, "
      f"left {persons.attrs['budget']['epsilon_left']:.2f}, reused: {persons.attrs['reused']}")

# 4. Plot each mission's persons per year with error bars.
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print(persons[["mission", "registration_year", "estimate", "lower", "upper"]]
          .to_string(index=False))
else:
    fig, ax = plt.subplots(figsize=(8, 4))
    for mission, rows in persons[persons["mission"] != "unknown"].groupby("mission"):
        years = rows["registration_year"].astype(int)
        ax.errorbar(years, rows["estimate"],
                    yerr=[rows["estimate"] - rows["lower"], rows["upper"] - rows["estimate"]],
                    capsize=3, marker="o", label=mission)
    ax.set_xlabel("registration year")
    ax.set_ylabel("persons assisted (DP estimate, 95% interval)")
    ax.legend(ncol=3)
    fig.savefig(args.plot, dpi=120, bbox_inches="tight")
    print("chart:", args.plot)
