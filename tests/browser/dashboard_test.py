#!/usr/bin/env python3
"""Browser test of the release dashboard (GET /dashboard), Python stdlib only.

Drives headless Chromium through ChromeDriver with the W3C WebDriver protocol (plain HTTP JSON
over urllib) and compares what the page draws with the release JSON fetched directly from the API:

  python3 tests/browser/dashboard_test.py --base http://127.0.0.1:PORT --token TOKEN --out DIR \
      [--chromedriver /usr/bin/chromedriver] [--chromium /usr/bin/chromium] [--screenshot-each]

Checks, against the newest release of GET /v1/releases (the ground truth):
  - the page loads with #token=..., removes the token from the address, and reaches
    body[data-state=ready] with the newest release and its first indicator selected;
  - the chart (#chart) of every indicator (and every key of a breakdown), selected through the
    select elements: one .interval per cell, one .point per cell with a value, data-* attributes
    equal to the cells, each point inside its own interval bar, missions side by side;
  - the table (#table, after clicking #show-table) of every selection: one tbody row per cell,
    data-* attributes equal to the JSON numbers (floats, 1e-9 tolerance);
  - the CSV of #download-csv (captured in the page, not downloaded) has every cell of the indicator;
  - the browser console has no SEVERE or WARNING entry;
  - a wrong token shows #error and the token form, and typing the right token in the form works.
Saves <out>/dashboard.png (chart view) and <out>/dashboard-table.png (table view), and on
failure <out>/dashboard-failure.png; ChromeDriver's log goes to <out>/chromedriver.log.
Exits 0 when every check passes, 1 otherwise (printing what failed).

Self-test without the Rust server:
  python3 tests/browser/mock_server.py --port 8765 &
  python3 tests/browser/dashboard_test.py --base http://127.0.0.1:8765 --token test-token --out /tmp/dash
"""

import argparse
import base64
import csv
import io
import json
import math
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C web element identifier key
WAIT_SECONDS = 30
CSV_HEADER = ["indicator", "mission", "period", "key", "value", "lower", "upper", "unit"]

# Never go through a proxy: everything here is on the loopback interface.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Fatal(Exception):
    """A failure after which the test cannot go on."""


def http(method, url, body=None, headers=None, timeout=60):
    """(status, parsed JSON or text) of one request; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = dict(headers or {})
    if data is not None:
        hdrs["Content-Type"] = "application/json; charset=utf-8"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


# ---- WebDriver ------------------------------------------------------------------------------

class WebDriver:
    def __init__(self, url):
        self.url = url
        self.sid = None

    def cmd(self, method, path, body=None, timeout=90):
        status, resp = http(method, self.url + path, body, timeout=timeout)
        value = resp.get("value") if isinstance(resp, dict) else resp
        if status != 200:  # W3C errors are never 200 (a script's result may hold "error")
            err = value if isinstance(value, dict) else {"error": str(value)}
            raise Fatal(f"WebDriver {method} {path} -> {status} {err.get('error')}: "
                        f"{str(err.get('message', ''))[:500]}")
        return value

    def session_cmd(self, method, path, body=None, **kw):
        return self.cmd(method, f"/session/{self.sid}{path}", body, **kw)

    def start(self, capabilities):
        value = self.cmd("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.sid = value["sessionId"]

    def quit(self):
        if self.sid:
            sid, self.sid = self.sid, None
            try:
                self.cmd("DELETE", f"/session/{sid}", timeout=20)
            except Exception as e:  # the driver is killed next anyway
                print(f"warning: could not delete the WebDriver session: {e}", file=sys.stderr)

    def navigate(self, url):
        self.session_cmd("POST", "/url", {"url": url})

    def execute(self, script, *args):
        return self.session_cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def execute_async(self, script, *args):
        return self.session_cmd("POST", "/execute/async", {"script": script, "args": list(args)})

    def find(self, css):
        return self.session_cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.session_cmd("POST", f"/element/{self.find(css)}/click", {})

    def type_into(self, css, text):
        self.session_cmd("POST", f"/element/{self.find(css)}/value", {"text": text})

    def screenshot(self, path):
        path.write_bytes(base64.b64decode(self.session_cmd("GET", "/screenshot")))

    def browser_log(self):
        """Entries since the last call (ChromeDriver empties its buffer on read)."""
        return self.session_cmd("POST", "/se/log", {"type": "browser"})


def chromium_capabilities(binary, profile, size):
    """Headless Chromium with a throwaway profile, logging the console."""
    return {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                     f"--window-size={size}", f"--user-data-dir={profile}"],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chromedriver(path, log_file):
    port = free_port()
    # Own process group, so the driver and any browser it started can be stopped together.
    proc = subprocess.Popen([path, f"--port={port}"], stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Fatal(f"chromedriver exited with {proc.returncode} (see {log_file.name})")
        try:
            status, resp = http("GET", url + "/status", timeout=2)
            if status == 200 and resp["value"].get("ready"):
                return proc, url
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.1)
    raise Fatal(f"chromedriver did not get ready on port {port} within 20 s")


def stop_process_group(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


# ---- the API (ground truth) -----------------------------------------------------------------

def api_get(base, token, path):
    status, body = http("GET", base + path, headers={"Authorization": f"Bearer {token}",
                                                     "Accept": "application/json"})
    if status != 200:
        raise Fatal(f"GET {path} -> {status}: {body}")
    return body


# ---- page scripts ---------------------------------------------------------------------------

JS_STATE = """
const chart = document.getElementById('chart');
const err = document.getElementById('error');
return {state: document.body.dataset.state || '',
        indicator: chart ? chart.getAttribute('data-indicator') : null,
        key: chart ? chart.getAttribute('data-key') : null,
        error: err && !err.hidden ? err.textContent : ''};
"""

JS_SELECT = """
const [id, value] = arguments;
const sel = document.getElementById(id);
if (!sel || ![...sel.options].some((o) => o.value === value)) return false;
sel.value = value;
sel.dispatchEvent(new Event('change', {bubbles: true}));
return true;
"""

JS_PAGE = """
const opts = (id) => [...document.getElementById(id).options].map((o) => o.value);
const shown = (id) => { const el = document.getElementById(id);
  return !!el && !el.closest('[hidden]') && el.getBoundingClientRect().height > 0; };
let stored = null;
try { stored = sessionStorage.getItem('ctstats.token'); } catch (e) {}
return {release: document.getElementById('release').value,
        indicator: document.getElementById('indicator').value,
        indicators: opts('indicator'),
        key: document.getElementById('key').value,
        keys: opts('key'),
        keyShown: shown('key'),
        name: document.getElementById('release-name').textContent,
        hash: location.hash, href: location.href, stored,
        chartShown: shown('chart'), tableShown: shown('table'),
        tokenFormShown: shown('token-form'), errorShown: shown('error'),
        errorText: document.getElementById('error').textContent};
"""

# Geometry in user units of the SVG, so a test can tell a point sits on its own bar.
JS_CHART = """
const svg = document.getElementById('chart');
const attrs = (el) => ({mission: el.getAttribute('data-mission'), period: el.getAttribute('data-period'),
                        key: el.getAttribute('data-key')});
const title = (el) => { const t = el.querySelector('title'); return t ? t.textContent : null; };
return {
  points: [...svg.querySelectorAll('.point')].map((el) => Object.assign(attrs(el), {
    title: title(el), cx: el.cx.baseVal.value, cy: el.cy.baseVal.value, tag: el.tagName})),
  intervals: [...svg.querySelectorAll('.interval')].map((el) => { const b = el.getBBox();
    return Object.assign(attrs(el), {title: title(el), x: b.x, y: b.y, w: b.width, h: b.height}); }),
  viewBox: svg.getAttribute('viewBox'),
  axisText: [...svg.querySelectorAll('.y-axis text')].map((t) => t.textContent),
  axisLabel: [...svg.querySelectorAll('.axis-label')].map((t) => t.textContent),
  legend: [...document.querySelectorAll('#legend li')].map((li) => li.textContent),
};
"""

JS_TABLE = """
const t = document.getElementById('table');
return {head: [...t.tHead.querySelectorAll('th')].map((th) => th.textContent),
        rows: [...t.tBodies[0].rows].map((tr) => ({
          mission: tr.getAttribute('data-mission'), period: tr.getAttribute('data-period'),
          key: tr.getAttribute('data-key'), value: tr.getAttribute('data-value'),
          lower: tr.getAttribute('data-lower'), upper: tr.getAttribute('data-upper'),
          text: [...tr.cells].map((td) => td.textContent)}))};
"""

# Clicks #download-csv with URL.createObjectURL and <a>.click() wrapped, so the CSV blob is
# captured and nothing is downloaded.
JS_CSV = """
const done = arguments[arguments.length - 1];
const create = URL.createObjectURL, click = HTMLAnchorElement.prototype.click;
let blob = null, name = null;
URL.createObjectURL = function (b) { blob = b; return create.call(URL, b); };
HTMLAnchorElement.prototype.click = function () { name = this.download; };
try { document.getElementById('download-csv').click(); }
finally { URL.createObjectURL = create; HTMLAnchorElement.prototype.click = click; }
if (!blob) { done({error: 'no Blob was made'}); return; }
blob.text().then((text) => done({name, type: blob.type, text}), (e) => done({error: String(e)}));
"""


# ---- the test -------------------------------------------------------------------------------

def key_str(k):
    return "" if k is None else str(k)


def cell_id(c):
    return (str(c["mission"]), str(c["period"]), key_str(c.get("key")))


def num_equal(attr, expected):
    """A data-* string (JS String(number), "" for null) against a JSON number or null."""
    if expected is None:
        return attr == ""
    try:
        return math.isclose(float(attr), float(expected), rel_tol=1e-9, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def is_keyed(ind):
    return ind.get("breakdown") is not None or ind.get("kind") == "breakdown" or \
        any(c.get("key") is not None for c in ind.get("cells", []))


def keys_of(ind):
    keys = []
    for c in ind.get("cells", []):
        if c.get("key") is not None and c["key"] not in keys:
            keys.append(c["key"])
    return keys


def cells_of(ind, key):
    cells = ind.get("cells", [])
    return [c for c in cells if c.get("key") == key] if is_keyed(ind) else cells


class Test:
    def __init__(self, args):
        self.args = args
        self.base = args.base.rstrip("/")
        self.out = pathlib.Path(args.out)
        self.failures = []
        self.selections = []   # (indicator id, key) checked in the chart
        self.chart_cells = 0
        self.table_cells = 0
        self.csv_rows = 0
        self.screenshots = []

    def check(self, ok, message):
        if not ok:
            self.failures.append(message)
            print(f"FAIL: {message}")
        return ok

    def wait_for(self, wd, states, indicator=None, key=None, what=""):
        """Polls until body[data-state] is in `states` (and the chart shows the selection)."""
        deadline = time.monotonic() + WAIT_SECONDS
        last = None
        while time.monotonic() < deadline:
            last = wd.execute(JS_STATE)
            if last["state"] in states and (indicator is None or (
                    last["indicator"] == indicator and (key is None or last["key"] == key))):
                return last
            if last["state"] == "error" and "error" not in states:
                raise Fatal(f"{what}: the page shows an error: {last['error']!r}")
            time.sleep(0.1)
        raise Fatal(f"{what}: no data-state in {states} within {WAIT_SECONDS} s (last: {last})")

    def select(self, wd, select_id, value, indicator, key):
        ok = wd.execute(JS_SELECT, select_id, value)
        if not self.check(ok, f"#{select_id} has no option {value!r}"):
            return False
        self.wait_for(wd, {"ready"}, indicator, key, f"select {select_id}={value}")
        return True

    # -- checks of one selection --

    def check_chart(self, wd, ind, key):
        label = ind["id"] + (f"[{key}]" if key is not None else "")
        cells = cells_of(ind, key)
        valued = [c for c in cells if c.get("value") is not None]
        chart = wd.execute(JS_CHART)
        pts, bars = chart["points"], chart["intervals"]
        self.check(len(bars) == len(cells),
                   f"chart {label}: {len(bars)} .interval, expected {len(cells)} (all cells)")
        self.check(len(pts) == len(valued),
                   f"chart {label}: {len(pts)} .point, expected {len(valued)} (cells with a value)")
        self.check(all(p["tag"].lower() == "circle" for p in pts), f"chart {label}: a .point is no circle")
        self.check(sorted(cell_id(p) for p in pts) == sorted(cell_id(c) for c in valued),
                   f"chart {label}: the points' data-mission/period/key differ from the JSON cells")
        self.check(sorted(cell_id(b) for b in bars) == sorted(cell_id(c) for c in cells),
                   f"chart {label}: the intervals' data-mission/period/key differ from the JSON cells")
        self.check(all(p["title"] and p["title"].startswith(f"{p['mission']} {p['period']}") for p in pts),
                   f"chart {label}: a point lacks its '<mission> <period>: ...' <title>")
        # Each point on its own bar: same x, y within the bar (SVG y grows downwards).
        bar_of = {cell_id(b): b for b in bars}
        for p in pts:
            b = bar_of.get(cell_id(p))
            if not self.check(b is not None, f"chart {label}: point {cell_id(p)} has no interval"):
                continue
            self.check(abs((b["x"] + b["w"] / 2) - p["cx"]) < 0.6 and b["y"] - 0.6 <= p["cy"] <= b["y"] + b["h"] + 0.6,
                       f"chart {label}: point {cell_id(p)} is not on its interval bar")
        # Missions side by side: within a period, no two missions share an x.
        by_period = {}
        for b in bars:
            by_period.setdefault(b["period"], set()).add(round(b["x"] + b["w"] / 2, 1))
        for period, xs in by_period.items():
            n = len({b["mission"] for b in bars if b["period"] == period})
            self.check(len(xs) == n, f"chart {label}: missions overlap in period {period}")
        self.check(len(chart["axisText"]) >= 2, f"chart {label}: the y axis has fewer than 2 ticks")
        if ind.get("kind") == "share":
            self.check(all(t.endswith("%") for t in chart["axisText"]),
                       f"chart {label}: share axis ticks are not percentages: {chart['axisText']}")
        self.check(any(ind.get("unit", "") in t for t in chart["axisLabel"]),
                   f"chart {label}: no axis label with the unit {ind.get('unit')!r}: {chart['axisLabel']}")
        missions = {c["mission"] for c in cells}
        self.check(all(any(li.startswith(m) for li in chart["legend"]) for m in missions),
                   f"chart {label}: the legend lacks a mission: {chart['legend']}")
        self.selections.append((ind["id"], key))
        self.chart_cells += len(cells)

    def check_table(self, wd, ind, key):
        label = ind["id"] + (f"[{key}]" if key is not None else "")
        cells = cells_of(ind, key)
        table = wd.execute(JS_TABLE)
        rows = table["rows"]
        expected_cols = 5 if is_keyed(ind) else 4
        self.check(len(table["head"]) == expected_cols,
                   f"table {label}: {len(table['head'])} columns, expected {expected_cols}: {table['head']}")
        if not self.check(len(rows) == len(cells), f"table {label}: {len(rows)} rows, expected {len(cells)}"):
            return
        by_id = {}
        for c in cells:
            by_id.setdefault(cell_id(c), []).append(c)
        for r in rows:
            matches = by_id.get(cell_id(r))
            if not self.check(matches, f"table {label}: row {cell_id(r)} is no cell of the JSON"):
                continue
            c = matches.pop(0)
            for f in ("value", "lower", "upper"):
                self.check(num_equal(r[f], c.get(f)),
                           f"table {label}: {cell_id(r)} data-{f}={r[f]!r}, JSON {c.get(f)!r}")
            if c.get("value") is None:
                self.check(r["text"][-2] == "–", f"table {label}: {cell_id(r)} shows {r['text'][-2]!r} for a null value")
        self.table_cells += len(rows)

    def check_csv(self, wd, release, ind):
        got = wd.execute_async(JS_CSV)
        if not self.check("error" not in got, f"csv {ind['id']}: {got.get('error')}"):
            return
        self.check(got["name"] == f"{release['id']}-{ind['id']}.csv",
                   f"csv {ind['id']}: file name {got['name']!r}")
        self.check(got["type"].startswith("text/csv"), f"csv {ind['id']}: Blob type {got['type']!r}")
        rows = list(csv.reader(io.StringIO(got["text"], newline="")))
        self.check(rows and rows[0] == CSV_HEADER, f"csv {ind['id']}: header {rows[:1]}")
        body = rows[1:]
        cells = ind.get("cells", [])
        if not self.check(len(body) == len(cells), f"csv {ind['id']}: {len(body)} rows, expected {len(cells)}"):
            return
        by_id = {}
        for c in cells:
            by_id.setdefault(cell_id(c), []).append(c)
        for r in body:
            rec = dict(zip(CSV_HEADER, r))
            matches = by_id.get((rec["mission"], rec["period"], rec["key"]))
            if not self.check(matches and rec["indicator"] == ind["id"] and rec["unit"] == ind.get("unit", ""),
                              f"csv {ind['id']}: row {r} is no cell of the JSON"):
                continue
            c = matches.pop(0)
            for f in ("value", "lower", "upper"):
                self.check(num_equal(rec[f], c.get(f)), f"csv {ind['id']}: {r} {f} differs from JSON {c.get(f)!r}")
        self.csv_rows += len(body)

    def screenshot(self, wd, name):
        path = self.out / name
        wd.screenshot(path)
        self.screenshots.append(str(path))

    # -- the run --

    def run(self, wd):
        token = self.args.token
        listing = api_get(self.base, token, "/v1/releases")
        releases = listing.get("releases") or []
        if not releases:
            raise Fatal("GET /v1/releases lists no release: nothing to check")
        release = api_get(self.base, token, f"/v1/releases/{releases[0]['id']}")
        indicators = release.get("indicators") or []
        if not indicators:
            raise Fatal(f"release {release['id']} has no indicators: nothing to check")
        print(f"release {release['id']} {release.get('name')!r}: {len(indicators)} indicators, "
              f"{sum(len(i.get('cells', [])) for i in indicators)} cells")

        # Load with the token in the address.
        wd.navigate(f"{self.base}/dashboard#token={urllib.parse.quote(token, safe='')}")
        first = indicators[0]
        self.wait_for(wd, {"ready"}, first["id"], None, "first load")
        page = wd.execute(JS_PAGE)
        self.check(page["hash"] == "" and token not in page["href"],
                   f"the token is still in the address: {page['href']!r}")
        self.check(page["stored"] == token, "the token was not kept in sessionStorage")
        self.check(page["release"] == str(release["id"]),
                   f"release select shows {page['release']!r}, expected the newest {release['id']}")
        self.check(page["name"] == release.get("name"), f"header shows {page['name']!r}")
        self.check(page["indicators"] == [i["id"] for i in indicators],
                   f"indicator options {page['indicators']} differ from the release's indicators")
        self.check(page["indicator"] == first["id"], f"first indicator selected is {page['indicator']!r}")
        self.check(page["chartShown"] and not page["tableShown"], "the chart is not the initial view")
        first_key = page["key"] if is_keyed(first) else None
        if is_keyed(first):
            self.check(page["keyShown"] and page["keys"] == keys_of(first),
                       f"key select of {first['id']}: {page['keys']}")
        else:
            self.check(not page["keyShown"], f"a key select is shown for {first['id']} (no breakdown)")
        self.check_chart(wd, first, first_key)

        # Every indicator, and every key of a breakdown, through the select elements.
        for ind in indicators:
            if not self.select(wd, "indicator", ind["id"], ind["id"], None):
                continue
            if not ind.get("cells"):
                # Nothing to draw (e.g. no flow passed the DP threshold): an empty chart, not
                # a stale one, and still counted as checked.
                chart = wd.execute(JS_CHART)
                self.check(not chart["points"] and not chart["intervals"],
                           f"chart {ind['id']}: drawn although the indicator has no cells")
                self.selections.append((ind["id"], None))
            elif is_keyed(ind):
                page = wd.execute(JS_PAGE)
                self.check(page["keyShown"] and page["keys"] == keys_of(ind),
                           f"key options of {ind['id']}: {page['keys']}, expected {keys_of(ind)}")
                for k in keys_of(ind):
                    if self.select(wd, "key", k, ind["id"], k):
                        self.check_chart(wd, ind, k)
                        if self.args.screenshot_each:
                            self.screenshot(wd, f"chart-{ind['id']}-{k}.png")
            else:
                self.check(not wd.execute(JS_PAGE)["keyShown"], f"a key select is shown for {ind['id']}")
                self.check_chart(wd, ind, None)
                if self.args.screenshot_each:
                    self.screenshot(wd, f"chart-{ind['id']}.png")
        kinds = {i.get("kind") for i in indicators}
        for kind in ("breakdown", "share"):
            if kind not in kinds:
                print(f"note: the release has no {kind} indicator, so none was checked")

        # Back to the first indicator for the chart screenshot.
        self.select(wd, "indicator", first["id"], first["id"], None)
        if is_keyed(first):
            self.select(wd, "key", first_key, first["id"], first_key)
        self.screenshot(wd, "dashboard.png")

        # Table view: click, then every selection again.
        wd.click("#show-table")
        page = wd.execute(JS_PAGE)
        self.check(page["tableShown"] and not page["chartShown"], "#show-table did not show the table")
        self.check_table(wd, first, first_key)
        for ind in indicators:
            self.select(wd, "indicator", ind["id"], ind["id"], None)
            for k in ((keys_of(ind) or [None]) if is_keyed(ind) else [None]):
                if k is not None:
                    self.select(wd, "key", k, ind["id"], k)
                self.check_table(wd, ind, k)
            self.check_csv(wd, release, ind)
        self.select(wd, "indicator", first["id"], first["id"], None)
        if is_keyed(first):
            self.select(wd, "key", first_key, first["id"], first_key)
        self.screenshot(wd, "dashboard-table.png")
        wd.click("#show-chart")
        page = wd.execute(JS_PAGE)
        self.check(page["chartShown"] and not page["tableShown"], "#show-chart did not show the chart")

        # The console of normal operation: nothing at WARNING or above.
        for e in wd.browser_log():
            self.check(e.get("level") not in ("SEVERE", "WARNING"),
                       f"console {e.get('level')}: {e.get('message')}")

        # A wrong token: error and token form; then the token typed into the form.
        wd.navigate("about:blank")
        wd.navigate(f"{self.base}/dashboard#token=not-{urllib.parse.quote(token, safe='')}")
        self.wait_for(wd, {"error"}, what="wrong token")
        page = wd.execute(JS_PAGE)
        self.check(page["errorShown"] and page["errorText"].strip(), "wrong token: #error is not shown")
        self.check(page["tokenFormShown"], "wrong token: the token form is not shown")
        self.check(page["stored"] is None, "wrong token: it is still in sessionStorage")
        wd.navigate(f"{self.base}/dashboard")
        self.wait_for(wd, {"token"}, what="no token")
        page = wd.execute(JS_PAGE)
        self.check(page["tokenFormShown"] and not page["errorShown"], "no token: form not shown, or an error")
        wd.type_into("#token-input", token)
        wd.click("#token-form button[type=submit]")
        self.wait_for(wd, {"ready"}, first["id"], None, "token typed into the form")
        page = wd.execute(JS_PAGE)
        self.check(page["release"] == str(release["id"]) and page["stored"] == token,
                   "token form: the newest release did not load, or the token was not kept")
        # The rejected token's 401 is logged by the browser ("Failed to load resource"); that one
        # is expected, anything else is not.
        for e in wd.browser_log():
            msg = e.get("message", "")
            expected = e.get("level") == "SEVERE" and "status of 401" in msg
            self.check(expected or e.get("level") not in ("SEVERE", "WARNING"),
                       f"console {e.get('level')}: {msg}")


def main():
    ap = argparse.ArgumentParser(description="Browser test of the ctstats release dashboard.")
    ap.add_argument("--base", required=True, help="the query service, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", required=True, help="a bearer token that may read releases")
    ap.add_argument("--out", required=True, help="directory for screenshots and the driver log")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshot-each", action="store_true",
                    help="also save chart-<indicator>[-<key>].png for every selection")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    test = Test(args)
    profile = tempfile.mkdtemp(prefix="ctstats-chromium-")
    driver = None
    wd = None
    fatal = None
    started = time.monotonic()
    with open(out / "chromedriver.log", "wb") as log:
        try:
            driver, url = start_chromedriver(args.chromedriver, log)
            wd = WebDriver(url)
            wd.start(chromium_capabilities(args.chromium, profile, "1280,900"))
            test.run(wd)
        except Fatal as e:
            fatal = str(e)
        except Exception as e:  # a bug here, or the page behaving unexpectedly
            fatal = f"{type(e).__name__}: {e}"
        finally:
            if wd is not None and wd.sid and (fatal or test.failures):
                try:
                    test.screenshot(wd, "dashboard-failure.png")
                    for e in wd.browser_log():
                        print(f"console {e.get('level')}: {e.get('message')}")
                except Exception:
                    pass
            if wd is not None:
                wd.quit()
            stop_process_group(driver)
            shutil.rmtree(profile, ignore_errors=True)

    print()
    seen = list(dict.fromkeys(test.selections))  # the first one is checked twice
    print(f"indicators checked: {len({i for i, _ in seen})}, selections (indicator[key]): {len(seen)} "
          f"({', '.join(i + (f'[{k}]' if k is not None else '') for i, k in seen)})")
    print(f"cells compared: chart {test.chart_cells}, table {test.table_cells}, csv {test.csv_rows}")
    print(f"screenshots: {', '.join(test.screenshots) or 'none'}")
    print(f"time: {time.monotonic() - started:.1f} s")
    if fatal:
        print(f"FAILED: {fatal}")
    if test.failures:
        print(f"FAILED: {len(test.failures)} check(s):")
        for f in test.failures:
            print(f"  - {f}")
    if fatal or test.failures:
        return 1
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
