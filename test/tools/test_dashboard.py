"""The review dashboard (tools/dashboard) in headless Chromium.

A small synthetic AOI (test/lib/r4_review_fixture.py: 4 x 4 patches, changes planted in 2019, the
pixel_mean model calibrated) is served by tools/dashboard on 127.0.0.1; Debian's chromium, driven
through chromedriver (python3-selenium), opens the page.  Checked: the page loads with no console
errors; the map shows the heatmap (the pixel at each patch centre has the heat ramp's colour of
that patch's change rate from yearly_heatmap); clicking a patch on the map opens its daily distance
curve with exactly the pairs rai4eo.daily_distances returns and the threshold; accept / reject
store the verdict in rai4eo.review; screenshots are non-empty and show the legend.  Screenshots go
to $R4_DASHBOARD_SHOTS when set (else a temporary directory).

Needs a server named by PG* variables; the front end is built (tools/dashboard_app/build.sh, npm)
when vendor/ is missing.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

import psycopg                                               # noqa: E402
from PIL import Image                                        # noqa: E402
from selenium import webdriver                               # noqa: E402
from selenium.webdriver.chrome.service import Service        # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By                  # noqa: E402

import r4_review_fixture as fixture                          # noqa: E402

HEAT = [(0.0, (255, 255, 204)), (0.5, (253, 141, 60)), (1.0, (189, 0, 38))]
WINDOW = (1400, 900)


def heat_colour(t):
    """The heat ramp of heatmap_png at t in [0, 1], as its palette quantises it (1 + round(254 t))."""
    t = round(254 * min(max(t, 0.0), 1.0)) / 254
    for (a, ca), (b, cb) in zip(HEAT, HEAT[1:]):
        if t <= b:
            f = (t - a) / (b - a)
            return tuple(round(x + f * (y - x)) for x, y in zip(ca, cb))
    return HEAT[-1][1]


def close(c1, c2, tol):
    return all(abs(a - b) <= tol for a, b in zip(c1, c2))


def chromium(user_dir):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    # The machine has no network and no GPU: WebGL runs on SwiftShader, which Chromium only
    # falls back to when allowed (--enable-unsafe-swiftshader).
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
              "--user-data-dir=" + user_dir, "--window-size=%d,%d" % WINDOW, "--force-device-scale-factor=1",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--lang=en-US"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


class DashboardTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(ROOT, "tools", "dashboard_app", "vendor", "maplibre-gl.js")):
            subprocess.run([os.path.join(ROOT, "tools", "dashboard_app", "build.sh")], check=True)
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-dash-")
        cls.shots = os.environ.get("R4_DASHBOARD_SHOTS") or os.path.join(cls.tmp, "shots")
        os.makedirs(cls.shots, exist_ok=True)
        cls.db = "rai4eo_dashboard_test_%d" % os.getpid()
        fixture.make(cls.db, cls.tmp)
        cls.conn = psycopg.connect("dbname=" + cls.db, autocommit=True)
        cls.server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "dashboard"), "--port", "0",
                                       "--dsn", "dbname=" + cls.db, "--model", fixture.MODEL, "--year", str(fixture.YEAR)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = cls.server.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            cls.server.kill()
            raise RuntimeError("dashboard did not start: %r %s" % (line, cls.server.stderr.read()))
        cls.port = int(m[1])
        cls.url = "http://127.0.0.1:%d/" % cls.port
        cls.browser = chromium(os.path.join(cls.tmp, "chromium"))

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "browser", None):
            cls.browser.quit()
        if getattr(cls, "server", None):
            cls.server.terminate()
            cls.server.wait(10)
        if getattr(cls, "conn", None):
            cls.conn.close()
        with psycopg.connect("dbname=postgres", autocommit=True) as a:
            a.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------------------

    def open_page(self, *events, timeout=120):
        b = self.browser
        b.get_log("browser")             # drop what earlier pages logged
        b.get(self.url)
        self.wait_for(*(("ready", "candidatesLoaded", "heatLoaded", "imageryLoaded", "patchesLoaded", "mapIdle")
                        + events), timeout=timeout)

    def wait_for(self, *events, timeout=60):
        t = time.monotonic()
        while True:
            got = self.browser.execute_script("return window.r4 ? window.r4.events : []")
            if all(e in got for e in events):
                return
            if time.monotonic() - t > timeout:
                self.fail("page events %s never came (got %s; console %s)" % (events, got, self.browser.get_log("browser")))
            time.sleep(0.25)

    def settle(self):
        # MapLibre fires idle once nothing is left to load or draw; wait for a fresh one.
        self.browser.execute_script("window.r4.idle = false; window.r4.map.once('idle', () => { window.r4.idle = true; });"
                                    "window.r4.map.triggerRepaint();")
        t = time.monotonic()
        while not self.browser.execute_script("return window.r4.idle") and time.monotonic() - t < 30:
            time.sleep(0.2)

    def screenshot(self, name):
        png = self.browser.get_screenshot_as_png()
        with open(os.path.join(self.shots, name), "wb") as f:
            f.write(png)
        return Image.open(io.BytesIO(png)).convert("RGB")

    def errors(self):
        return [e for e in self.browser.get_log("browser") if e["level"] == "SEVERE"]

    def patch_screen_xy(self, lon_lat):
        return self.browser.execute_script(
            "const p = window.r4.map.project(arguments[0]); const r = document.getElementById('map').getBoundingClientRect();"
            "return [p.x + r.left, p.y + r.top];", lon_lat)

    def centres(self):
        """patch_id -> (sample_id, lon/lat of the centre, change rate of the heatmap's band 1)."""
        rows = self.conn.execute("""
            WITH h AS (SELECT yearly_heatmap((SELECT ST_Envelope(ST_Collect(ST_Transform(geom, 4326))) FROM rai4eo.patch),
                                             %s, %s) AS r)
            SELECT p.patch_id, p.sample_id, ST_X(ST_Transform(ST_Centroid(p.geom), 4326)),
                   ST_Y(ST_Transform(ST_Centroid(p.geom), 4326)), ST_Value(h.r, 1, ST_Centroid(p.geom))
            FROM rai4eo.patch p, h ORDER BY 1""", (fixture.YEAR, fixture.MODEL)).fetchall()
        return {r[0]: (r[1], [r[2], r[3]], r[4]) for r in rows}

    def request(self, path, data=None, ctype="application/json", host=None):
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if host:
            req.add_header("Host", host)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # ---- tests --------------------------------------------------------------------------

    def test_page_loads_without_console_errors(self):
        self.open_page()
        self.settle()
        self.assertEqual(self.errors(), [])
        n = len(self.browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr"))
        changed = self.conn.execute(
            "SELECT count(*) FROM yearly_change((SELECT ST_Envelope(ST_Collect(ST_Transform(geom, 4326))) FROM rai4eo.patch), "
            "%s, %s) WHERE changed", (fixture.YEAR, fixture.MODEL)).fetchone()[0]
        self.assertGreater(changed, 0)
        self.assertEqual(n, changed)
        # The list is sorted by score, highest first, as rai4eo_review_candidates gives it.
        scores = [float(td.text) for td in self.browser.find_elements(By.CSS_SELECTOR, "#candidates tbody td:nth-child(2)")]
        self.assertEqual(scores, sorted(scores, reverse=True))
        # Nothing came from anywhere but the dashboard (no CDN, no tiles from the web).
        urls = self.browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        self.assertTrue(urls)
        self.assertEqual([u for u in urls if not u.startswith(self.url) and not u.startswith("data:")], [])
        # The vector tiles (fetched by MapLibre's workers) reached the map.
        n = self.browser.execute_script("return window.r4.map.querySourceFeatures('patches', {sourceLayer: 'patches'})"
                                        ".map(f => f.properties.patch_key).filter((v, i, a) => a.indexOf(v) === i).length")
        self.assertEqual(n, self.conn.execute("SELECT count(*) FROM rai4eo.patch").fetchone()[0])

    def test_map_shows_the_heatmap(self):
        self.open_page()
        # The heatmap alone, opaque: each patch centre must show its change rate's colour.
        self.browser.execute_script("const m = window.r4.map; m.setLayoutProperty('imagery-layer', 'visibility', 'none');"
                                    "m.setPaintProperty('heat-layer', 'raster-opacity', 1);")
        self.settle()
        img = self.screenshot("heatmap_only.png")
        rates = set()
        for pid, (sid, ll, rate) in self.centres().items():
            x, y = self.patch_screen_xy(ll)
            got = img.getpixel((int(x), int(y)))
            self.assertIsNotNone(rate, sid)
            self.assertTrue(close(got, heat_colour(rate), 6), "%s: rate %s wants %s, got %s" % (sid, rate, heat_colour(rate), got))
            rates.add(round(rate, 3))
        self.assertGreater(len(rates), 1)        # more than one colour: a real map, not a blank fill

    def test_click_opens_the_time_series(self):
        self.open_page()
        top = self.conn.execute(
            "SELECT patch_id, sample_id FROM rai4eo_review_candidates((SELECT ST_Envelope(ST_Collect(ST_Transform(geom, 4326))) "
            "FROM rai4eo.patch), %s, %s) LIMIT 1", (fixture.YEAR, fixture.MODEL)).fetchone()
        self.settle()
        x, y = self.patch_screen_xy(self.centres()[top[0]][1])
        ActionChains(self.browser).move_by_offset(int(x), int(y)).click().perform()
        ActionChains(self.browser).move_by_offset(-int(x), -int(y)).perform()
        self.wait_for("seriesShown")
        self.assertTrue(self.browser.find_element(By.ID, "detail").is_displayed())
        self.assertIn(top[1], self.browser.find_element(By.ID, "detail-title").text)
        pairs = self.conn.execute("SELECT count(*) FROM rai4eo.daily_distances(%s, %s, 'PF-SR', %s, %s, 2)",
                                  (top[0], fixture.MODEL, "%d-01-01" % fixture.YEAR, "%d-12-31" % fixture.YEAR)).fetchone()[0]
        self.assertGreater(pairs, 2)
        pts = self.browser.find_element(By.CSS_SELECTOR, "#chart polyline.series-%d" % fixture.YEAR).get_attribute("points")
        self.assertEqual(len(pts.split()), pairs)
        threshold = self.conn.execute("SELECT rai4eo.change_threshold(%s, NULL)", (fixture.MODEL,)).fetchone()[0]
        self.assertIn("threshold %.4f" % threshold, self.browser.find_element(By.ID, "chart").text)
        self.assertEqual(len(self.browser.find_elements(By.CSS_SELECTOR, "#chart line.threshold")), 1)
        # Before / after quicklooks, decoded by the browser.
        for k in ("before", "after"):
            t = time.monotonic()
            while not self.browser.execute_script("const i = document.getElementById(arguments[0]);"
                                                  "return i.complete && i.naturalWidth > 0", k):
                self.assertLess(time.monotonic() - t, 30, k)
                time.sleep(0.2)
        self.settle()
        img = self.screenshot("time_series.png")
        self.assertGreater(len(set(img.getdata())), 200)
        self.assertEqual(self.errors(), [])

    def test_verdicts_are_stored(self):
        self.open_page()
        rows = self.browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")
        pid = int(rows[0].get_attribute("data-patch"))
        self.browser.find_element(By.ID, "reviewer").send_keys("ana")
        rows[0].click()
        self.wait_for("seriesShown")
        self.browser.find_element(By.ID, "accept").click()
        self.wait_for("verdictStored")
        got = self.conn.execute("SELECT verdict, reviewer, model, year FROM rai4eo.review WHERE patch_id = %s", (pid,)).fetchall()
        self.assertEqual(got, [("accept", "ana", fixture.MODEL, fixture.YEAR)])
        self.assertEqual(self.conn.execute("SELECT changed FROM rai4eo.review_truth WHERE patch_id = %s AND year = %s",
                                           (pid, fixture.YEAR)).fetchone(), (True,))
        self.assertEqual(self.browser.find_element(By.CSS_SELECTOR, "#candidates tbody tr[data-patch='%d'] td:nth-child(4)"
                                                   % pid).text, "accept")
        # A second verdict of the same reviewer replaces the first.
        self.browser.execute_script("window.r4.events = window.r4.events.filter(e => e !== 'verdictStored')")
        self.browser.find_element(By.ID, "reject").click()
        self.wait_for("verdictStored")
        got = self.conn.execute("SELECT verdict, reviewer FROM rai4eo.review WHERE patch_id = %s", (pid,)).fetchall()
        self.assertEqual(got, [("reject", "ana")])
        self.assertEqual(self.conn.execute("SELECT changed FROM rai4eo.review_truth WHERE patch_id = %s", (pid,)).fetchone(),
                         (False,))
        # The tiles carry the verdict too.
        self.settle()
        v = self.browser.execute_script(
            "return window.r4.map.querySourceFeatures('patches', {sourceLayer: 'patches'})"
            ".filter(f => f.properties.patch_key === arguments[0]).map(f => f.properties.verdict)", str(pid))
        self.assertTrue(v)
        self.assertEqual(set(v), {"reject"})
        self.assertEqual(self.errors(), [])

    def test_screenshots_show_the_map_and_legend(self):
        self.open_page()
        rows = self.browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")
        rows[0].click()
        self.wait_for("seriesShown")
        self.settle()
        img = self.screenshot("dashboard.png")
        self.assertEqual(img.size, WINDOW[:1] + (img.size[1],))
        self.assertGreater(os.path.getsize(os.path.join(self.shots, "dashboard.png")), 20000)
        # The map area holds imagery, heatmap and outlines: many colours, not a blank canvas.
        r = self.browser.find_element(By.ID, "map").rect
        m = img.crop((int(r["x"]), int(r["y"]), int(r["x"] + r["width"]), int(r["y"] + r["height"])))
        self.assertGreater(len(set(m.getdata())), 500)
        # The legend is on screen with both colour bars: the heat ramp's ends and viridis's ends.
        legend = self.browser.find_element(By.ID, "legend")
        self.assertTrue(legend.is_displayed())
        self.assertIn("yearly change rate", legend.text)
        self.assertIn("calibrated score", legend.text)
        for bar, ends in (("heat-bar", ((255, 255, 204), (189, 0, 38))), ("score-bar", ((68, 1, 84), (253, 231, 37)))):
            b = self.browser.find_element(By.ID, bar).rect
            y = int(b["y"] + b["height"] / 2)
            left = img.getpixel((int(b["x"] + 3), y))
            right = img.getpixel((int(b["x"] + b["width"] - 4), y))
            self.assertTrue(close(left, ends[0], 12) and close(right, ends[1], 12), (bar, left, right))

    def test_server_is_loopback_only_and_checks_requests(self):
        # Listening on 127.0.0.1 only (/proc/net/tcp: local address 0100007F:port, state 0A = LISTEN).
        with open("/proc/net/tcp") as f:
            listen = [ln.split()[1] for ln in f.read().splitlines()[1:] if ln.split()[3] == "0A"
                      and int(ln.split()[1].split(":")[1], 16) == self.port]
        self.assertEqual(listen, ["0100007F:%04X" % self.port])
        self.assertEqual(self.request("/api/config", host="attacker.example:%d" % self.port)[0], 403)
        self.assertEqual(self.request("/api/review", b"patch_id=1", ctype="application/x-www-form-urlencoded")[0], 415)
        pid = self.conn.execute("SELECT min(patch_id) FROM rai4eo.patch").fetchone()[0]
        status, body = self.request("/api/review", json.dumps({"patch_id": pid, "year": 2019, "verdict": "maybe"}).encode())
        self.assertEqual((status, json.loads(body)["sqlstate"]), (400, "22023"))
        status, body = self.request("/api/review", json.dumps({"patch_id": 12345, "year": 2019, "verdict": "accept"}).encode())
        self.assertEqual((status, json.loads(body)["sqlstate"]), (400, "23503"))
        status, body = self.request("/api/tiles/3/9/0.pbf?year=2019")
        self.assertEqual((status, json.loads(body)["sqlstate"]), (400, "22023"))


if __name__ == "__main__":
    unittest.main()
