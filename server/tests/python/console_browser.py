"""The web console in real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium), against a running isobar fed by `isobar simulate`.

Run by server/tests/python.rs with the HTTP and Postgres ports, and a user and password when
the server has users. Checks: login (a wrong password refused); the fleet view lists the table
with its series, and its band chart plots the weather_1m rows of the series it shows; the series
browser lists every series, filtering by station narrows the list, and a series opened over 24
hours charts its weather_1m rows (over 15 minutes, its raw readings); the SQL editor shows the
rows psql's protocol gives and charts them; an invalid query shows the server's error; the
service view shows the ingest counters and the rollups. Charts are read from uPlot's data, not
pixels. Screenshots of the fleet view and a series view go to $ISOBAR_SCREENSHOT_DIR (default:
the system's temporary directory). Exits non-zero with the failing check on the first mismatch.
"""

import os
import sys
import tempfile
import time

import psycopg
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

http_port, pg_port = int(sys.argv[1]), int(sys.argv[2])
# `--demo SECONDS`: only that the fleet view shows the demo's fleet within SECONDS.
demo_s = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--demo" else None
user, password = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 and demo_s is None else (None, None)
base = f"http://127.0.0.1:{http_port}/"

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]:
    options.add_argument(flag)
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(browser, 30)


def visible(element_id):
    return wait.until(ready.visibility_of_element_located((By.ID, element_id)))


def screenshot(name):
    directory = os.environ.get("ISOBAR_SCREENSHOT_DIR") or tempfile.gettempdir()
    browser.save_screenshot(os.path.join(directory, f"console-{name}{'-users' if user else ''}.png"))


def chart_of(holder, what):
    """uPlot's data of window.isobar[holder] once it is drawn."""
    try:
        wait.until(lambda b: b.execute_script(f"return window.isobar.{holder} && window.isobar.{holder}.chart.data[0].length"))
    except TimeoutException:
        raise AssertionError(f"{what}: no chart; {browser.execute_script(f'return document.body.innerText')[:2000]}")
    return browser.execute_script(f"const h = window.isobar.{holder}; return [h.table, h.chart.data]")


def rollup_rows(pg, tags):
    where = " AND ".join(f"{k} = %s" for k in tags)
    return pg.execute(
        f"SELECT time, sensor_value_min, sensor_value_avg, sensor_value_max, final FROM weather_1m WHERE {where} ORDER BY time",
        list(tags.values()),
    ).fetchall()


def same_bands(chart, rows, what):
    xs, mins, avgs, maxs, open_ = chart
    # The chart may end with a window that became final or opened since it was drawn.
    n = len(xs)
    assert n >= len(rows) - 1 and n > 0, f"{what}: {n} points, {len(rows)} rows"
    rows = rows[:n]
    assert xs == [t.timestamp() for t, *_ in rows], f"{what}: times {xs[:3]} vs {[r[0] for r in rows[:3]]}"
    assert mins == [r[1] for r in rows] and avgs == [r[2] for r in rows] and maxs == [r[3] for r in rows], f"{what}: values"
    assert [a for a, r in zip(open_, rows) if r[4]] == [None] * sum(1 for r in rows if r[4]), f"{what}: final windows drawn open"


def text_of(element_id, predicate, what):
    try:
        wait.until(lambda b: predicate(b.find_element(By.ID, element_id).text))
    except TimeoutException:
        raise AssertionError(f"{what}: #{element_id} says {browser.find_element(By.ID, element_id).text!r}")
    return browser.find_element(By.ID, element_id).text


def demo_fleet_shown(seconds):
    started = time.monotonic()
    browser.get(base)

    def fleet_shown(b):
        rows = b.find_elements(By.CSS_SELECTOR, '#fleet-tables tr[data-table="weather"] td')
        charted = b.execute_script("return window.isobar.bands && window.isobar.bands.chart.data[0].length")
        return len(rows) == 5 and rows[3].text.isdigit() and int(rows[3].text) > 0 and charted
    try:
        WebDriverWait(browser, seconds, poll_frequency=1).until(fleet_shown)
    except TimeoutException:
        raise AssertionError(f"the demo's fleet within {seconds} s: {browser.find_element(By.ID, 'fleet').text}")
    print(f"the console showed the demo fleet {time.monotonic() - started:.1f} s after the page was opened")


try:
    if demo_s is not None:
        demo_fleet_shown(demo_s)
        sys.exit(0)
    browser.get(base)
    if user:
        # Login is required; a wrong password is refused with the server's message.
        visible("login")
        form = browser.find_element(By.ID, "login-form")
        form.find_element(By.NAME, "user").send_keys(user)
        form.find_element(By.NAME, "password").send_keys("wrong")
        form.find_element(By.CSS_SELECTOR, "button").click()
        text_of("login-error", lambda t: "password authentication failed" in t, "a wrong password")
        password_box = form.find_element(By.NAME, "password")
        password_box.clear()
        password_box.send_keys(password)
        form.find_element(By.CSS_SELECTOR, "button").click()

    dsn = f"host=127.0.0.1 port={pg_port} dbname=isobar user={user or 'isobar'}" + (f" password={password}" if user else "")
    pg = psycopg.connect(dsn, autocommit=True)
    series_count = pg.execute("SELECT count(*) FROM (SELECT DISTINCT station_id, sensor, sensor_id FROM weather)").fetchone()[0]

    # The fleet view lists the table, with its series and newest reading, and charts one
    # series' minutes from weather_1m: its min-max band, average and open window.
    visible("fleet")
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, '#fleet-tables tr[data-table="weather"]'))
    row = browser.find_element(By.CSS_SELECTOR, '#fleet-tables tr[data-table="weather"]')
    wait.until(lambda b: row.find_elements(By.TAG_NAME, "td")[2].text not in ("", "no rows"))
    assert row.find_elements(By.TAG_NAME, "td")[1].text == str(series_count), f"series of weather: {row.text}"
    table, chart = chart_of("bands", "the fleet's band chart")
    tags = browser.execute_script("return window.isobar.bands.tags")
    assert table == "weather_1m", table
    same_bands(chart, rollup_rows(pg, tags), "the fleet's band chart")
    screenshot("fleet")

    # The series browser: every series, fewer once filtered by a station; one opened over 24
    # hours is read from weather_1m, over 15 minutes from the raw table.
    browser.get(base + "#series/weather")
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#series-list tbody tr"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#series-list tbody tr")) == series_count, "every series listed"
    station = pg.execute("SELECT min(station_id) FROM weather").fetchone()[0]
    stations = pg.execute("SELECT count(*) FROM (SELECT DISTINCT station_id, sensor, sensor_id FROM weather WHERE station_id = %s)", [station]).fetchone()[0]
    assert stations < series_count, "the fleet has several stations"
    Select(browser.find_element(By.ID, "filter-station_id")).select_by_value(station)
    rows = browser.find_elements(By.CSS_SELECTOR, "#series-list tbody tr")
    assert len(rows) == stations, f"filtered by station {station}: {len(rows)} rows, want {stations}"
    assert all(r.find_elements(By.TAG_NAME, "td")[0].text == station for r in rows), "only that station's series"
    rows[0].find_element(By.LINK_TEXT, "open").click()
    visible("series-one")
    browser.find_element(By.CSS_SELECTOR, 'button[data-range="24h"]').click()
    wait.until(lambda b: "range=24h" in b.current_url and b.execute_script("return window.isobar.series && window.isobar.series.table") == "weather_1m")
    table, chart = chart_of("series", "the series chart over 24 h")
    tags = browser.execute_script("return window.isobar.series.tags")
    assert tags["station_id"] == station, tags
    same_bands(chart, rollup_rows(pg, tags), "the series chart over 24 h")
    text_of("series-last", lambda t: t.startswith("last sensor_value:"), "the last value and its age")
    screenshot("series")
    browser.find_element(By.CSS_SELECTOR, 'button[data-range="15m"]').click()
    wait.until(lambda b: "range=15m" in b.current_url and b.execute_script("return window.isobar.series.table") == "weather")
    _, (xs, values) = chart_of("series", "the series chart over 15 min")
    where = " AND ".join(f"{k} = %s" for k in tags)
    raw = pg.execute(f"SELECT time, sensor_value FROM weather WHERE {where} AND time >= now() - INTERVAL '15 minutes' ORDER BY time",
                     list(tags.values())).fetchall()
    assert len(xs) > 0 and values[: len(raw)] == [v for _, v in raw][: len(values)], "raw readings over 15 minutes"

    # The service view: the MQTT listener's counters and the rollup's lag.
    browser.get(base + "#stats")
    wait.until(lambda b: "mqtt_listener" in b.find_element(By.ID, "stats-ingest").text)
    wait.until(lambda b: "weather_1m" in b.find_element(By.ID, "stats-rollups").text)
    wait.until(lambda b: "write buffer" in b.find_element(By.ID, "stats-storage").text)
    # No alert is configured: the alerts view says no series is pending, firing or resolved.
    browser.get(base + "#alerts")
    visible("alerts-none")

    # The SQL editor: the rows and the chart of one sensor's minutes, against pgwire's answer.
    sensor = pg.execute("SELECT min(sensor_id) FROM weather_1m").fetchone()[0]
    sql = f"SELECT time, sensor_value_avg, sensor_value_max FROM weather_1m WHERE sensor_id = '{sensor}' ORDER BY time"
    want = pg.execute(sql).fetchall()
    assert want, "the fleet has rollup rows"
    browser.get(base + "#sql")
    visible("sql")
    editor = browser.find_element(By.ID, "sql-text")
    editor.clear()
    editor.send_keys(sql)
    browser.find_element(By.ID, "sql-run").click()
    text_of("sql-status", lambda t: t.startswith(f"{len(want)} rows"), "the query's rows")
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#sql-result tbody td")]
    got = [tuple(cells[i:i + 3]) for i in range(0, len(cells), 3)]
    assert [(float(a), float(b)) for _, a, b in got] == [(a, b) for _, a, b in want], f"table rows {got[:3]} vs {want[:3]}"
    chart = browser.execute_script("return window.isobar.chart && window.isobar.chart.data")
    assert chart, "a time column and numbers are charted"
    xs, averages, maxima = chart
    assert xs == [t.timestamp() for t, _, _ in want], f"chart times {xs[:3]} vs {want[:3]}"
    assert averages == [a for _, a, _ in want] and maxima == [m for _, _, m in want], "chart values are the rows'"

    # An invalid query shows the server's error, and no stale rows.
    editor.clear()
    editor.send_keys("SELECT no_such_column FROM weather")
    browser.find_element(By.ID, "sql-run").click()
    message = text_of("sql-error", lambda t: "no_such_column" in t, "the server's error")
    assert not browser.find_elements(By.CSS_SELECTOR, "#sql-result tbody tr"), "no rows after an error"
    assert browser.execute_script("return window.isobar.chart") is None, "no chart after an error"
    print(f"console ok: {len(want)} rows charted; error shown: {message.splitlines()[0]}")
finally:
    browser.quit()
