#!/usr/bin/env python3
"""Browser test of the NGO upload page (GET /upload), Python stdlib only.

Drives headless Chromium through ChromeDriver (the WebDriver helpers of dashboard_test.py) as an
NGO officer would, against a `ctstats serve` that takes uploads:

  python3 tests/browser/upload_test.py --base http://127.0.0.1:PORT --token NGO_TOKEN --out DIR

Checks:
  - a bad token in the address shows the token form and a message; the right token typed in the
    form loads the page (missions, size limit, earlier uploads);
  - the template link serves the CSV header; a file filled in from it is committed, and the page
    shows rows read / valid / committed equal to the API's report of that upload;
  - a file with bad rows is rejected: the page's problem table has exactly the rows, columns,
    rules and messages of the JSON report the API gives for the same file (asked directly; a
    rejected file writes nothing);
  - the same good file again: "duplicate of batch <id>" naming the first upload's batch;
  - a file over the server's limit is refused before it is sent (nothing uploaded), with the
    limit in the message; a file of an unknown format gets the server's refusal in plain words;
  - the uploads list shows each upload with its status; the progress bar reached the end;
  - the browser console has no SEVERE or WARNING entry but the expected 4xx responses.
Saves <out>/upload.png (the rejected file's report) and <out>/upload-committed.png, and on
failure <out>/upload-failure.png. Exits 0 when every check passes, 1 otherwise.
"""

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from dashboard_test import (OPENER, Fatal, WebDriver, chromium_capabilities,  # noqa: E402
                            start_chromedriver, stop_process_group)

WAIT_SECONDS = 60


def raw(method, url, token=None, body=None, content_type=None):
    """(status, bytes) of one request."""
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with OPENER.open(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Test:
    def __init__(self, args, out):
        self.base, self.token, self.out = args.base.rstrip("/"), args.token, out
        self.failures = []
        self.screenshots = []
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="ctstats-upload-files-"))

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
            print(f"  FAIL {what}")
        return ok

    def wait_state(self, wd, states, what):
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            state = wd.execute("return document.body.dataset.state")
            if state in states:
                return state
            time.sleep(0.1)
        raise Fatal(f"{what}: the page stayed in state {state!r}, not {states}")

    def text(self, wd, css):
        return wd.execute("const e = document.querySelector(arguments[0]);"
                          "return e ? e.textContent : null", css)

    def screenshot(self, wd, name):
        wd.screenshot(self.out / name)
        self.screenshots.append(name)

    def batches(self):
        status, body = raw("GET", self.base + "/v1/batches", self.token)
        if status != 200:
            raise Fatal(f"GET /v1/batches as the NGO: {status} {body[:200]!r}")
        return json.loads(body)

    def upload(self, wd, path):
        """Choose `path` in the file input, press Upload, wait for the outcome."""
        wd.session_cmd("POST", f"/element/{wd.find('#file')}/value", {"text": str(path)})
        wd.click("#send")
        return self.wait_state(wd, ("done", "error", "token"), f"upload of {path.name}")

    def run(self, wd):
        status, header = raw("GET", self.base + "/v1/batches/template?format=csv")
        if status != 200:
            raise Fatal(f"template: {status}")
        columns = header.decode().strip().split(",")
        mission = self.batches()["missions"][0]
        values = {"first_name": "Browser", "last_name": "Tester", "birth_date": "1991-02-03",
                  "gender": "female", "citizenship": "KAZ", "shelter_offered": "yes"}

        def row(case, month, **over):
            v = dict(values, local_case_id=case, registration_month=month, **over)
            return ",".join(v.get(c, "") for c in columns)

        good = self.work / "good.csv"
        good.write_text(header.decode() + "\n".join(
            row(f"B-{i}", f"2006-0{i}-10") for i in range(1, 4)) + "\n")
        bad = self.work / "bad-rows.csv"
        bad.write_text(header.decode() + "\n".join([
            row("C-1", "2006-01-10"),
            row("C-2", "2006-02-10", shelter_offered="perhaps"),
            row("C-3", "Smarch 31st"),
            row("C-4", "2006-04-10", gender="sometimes"),
        ]) + "\n")
        big = self.work / "big.csv"
        limit = self.batches()["max_upload_bytes"]
        with open(big, "w") as f:
            f.write(header.decode())
            line = row("D-0", "2006-01-10") + "\n"
            while f.tell() <= limit:
                f.write(line)
        wrong = self.work / "records.pdf"
        wrong.write_bytes(b"%PDF-1.4 not a table")
        uploads_before = len(self.batches()["uploads"])

        # A bad token: the form; then the right one typed in.
        wd.navigate(self.base + "/upload#token=cts_" + "0" * 64)
        self.wait_state(wd, ("token",), "bad token")
        self.check("token was not accepted" in (self.text(wd, "#error") or ""),
                   f"bad token message: {self.text(wd, '#error')!r}")
        self.check(wd.execute("return location.hash") == "", "the token stays in the address")
        wd.type_into("#token-input", self.token)
        wd.click("#token-save")
        self.wait_state(wd, ("ready",), "after the token form")
        self.check(wd.execute("return document.getElementById('mission').value") == mission,
                   "the principal's mission is offered")
        href = wd.execute("return document.getElementById('template-csv').href")
        self.check(raw("GET", href)[1] == header, "the template link serves the template")

        # A good file: committed, numbers as the API reports them.
        state = self.upload(wd, good)
        first = self.batches()["uploads"][0]
        self.check(state == "done" and wd.execute(
            "return document.getElementById('report').dataset.status") == "committed",
            f"good file: state {state}, {self.text(wd, '#outcome')!r}")
        report = first["report"]
        for key in ("rows_read", "rows_valid", "rows_committed"):
            shown = self.text(wd, "#" + key.replace("_", "-"))
            self.check(shown == str(report[key]), f"{key}: page {shown}, API {report[key]}")
        self.check(self.text(wd, "#progress-text") == "Done." and
                   wd.execute("return document.getElementById('progress').value") == 1,
                   "the progress bar reached the end")
        self.screenshot(wd, "upload-committed.png")

        # Bad rows: the table is the JSON report, row by row.
        state = self.upload(wd, bad)
        self.check(state == "done" and wd.execute(
            "return document.getElementById('report').dataset.status") == "rejected",
            f"bad file: state {state}")
        status, body = raw("POST", f"{self.base}/v1/batches?mission={mission}&filename=bad-rows.csv",
                           self.token, bad.read_bytes(), "application/octet-stream")
        truth = json.loads(body)
        self.check(status == 422 and truth["status"] == "rejected", f"API on the bad file: {status}")
        shown = wd.execute("""return [...document.querySelectorAll('#issues tbody tr')].map(tr =>
            [...tr.children].map(td => td.textContent))""")
        expected = [[str(i["row"]), i["column"], i["rule"], i["message"]]
                    for i in truth["report"]["issues"]]
        self.check(len(expected) >= 3, f"the bad file has {len(expected)} issues")
        self.check(shown == expected, f"problem table {shown} is not the report {expected}")
        page = wd.execute("return document.body.innerText")
        for canary in ("perhaps", "sometimes", "Smarch"):
            self.check(canary not in page, f"the page shows the cell value {canary!r}")
        self.screenshot(wd, "upload.png")

        # The same good file again.
        state = self.upload(wd, good)
        outcome = self.text(wd, "#outcome") or ""
        self.check(state == "done" and f"duplicate of batch {report['batch_id']}" in outcome,
                   f"duplicate: {outcome!r}")

        # Too large: refused before anything is sent. A wrong format: the server's refusal.
        sent = len(self.batches()["uploads"])
        state = self.upload(wd, big)
        error = self.text(wd, "#error") or ""
        self.check(state == "error" and "larger than this server takes" in error,
                   f"oversized: {state} {error!r}")
        self.check(len(self.batches()["uploads"]) == sent, "an oversized file was sent")
        state = self.upload(wd, wrong)
        error = self.text(wd, "#error") or ""
        self.check(state == "error" and "Send a CSV, Excel" in error, f"wrong format: {error!r}")

        # The uploads list: committed, rejected, duplicate, newest first.
        time.sleep(0.5)
        statuses = wd.execute("""return [...document.querySelectorAll('#history tbody tr')]
            .map(tr => tr.dataset.status)""")
        api = [u["status"] for u in self.batches()["uploads"]]
        self.check(statuses == api, f"uploads list {statuses} is not the API's {api}")
        self.check(len(api) == uploads_before + 4 and api[:4] == [
            "duplicate", "rejected", "rejected", "committed"], f"uploads {api}")

        for e in wd.browser_log():
            msg = str(e.get("message", ""))
            expected_4xx = "status of 4" in msg
            self.check(expected_4xx or e.get("level") not in ("SEVERE", "WARNING"),
                       f"console {e.get('level')}: {msg[:300]}")


def main():
    ap = argparse.ArgumentParser(description="Browser test of the ctstats upload page.")
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True, help="an ngo principal's token")
    ap.add_argument("--out", required=True)
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = Test(args, out)
    profile = tempfile.mkdtemp(prefix="ctstats-chromium-")
    driver = wd = None
    fatal = None
    started = time.monotonic()
    with open(out / "chromedriver-upload.log", "wb") as log:
        try:
            driver, url = start_chromedriver(args.chromedriver, log)
            wd = WebDriver(url)
            wd.start(chromium_capabilities(args.chromium, profile, "1100,1000"))
            test.run(wd)
        except Fatal as e:
            fatal = str(e)
        except Exception as e:
            fatal = f"{type(e).__name__}: {e}"
        finally:
            if wd is not None and wd.sid and (fatal or test.failures):
                try:
                    test.screenshot(wd, "upload-failure.png")
                    for e in wd.browser_log():
                        print(f"console {e.get('level')}: {e.get('message')}")
                except Exception:
                    pass
            if wd is not None:
                wd.quit()
            stop_process_group(driver)
            shutil.rmtree(profile, ignore_errors=True)
            shutil.rmtree(test.work, ignore_errors=True)
    print(f"screenshots: {', '.join(test.screenshots) or 'none'}; time {time.monotonic() - started:.1f} s")
    if fatal:
        print(f"FAILED: {fatal}")
    for f in test.failures:
        print(f"FAILED: {f}")
    if fatal or test.failures:
        return 1
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
