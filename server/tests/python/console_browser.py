"""The web console in real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium), against a running isobar fed by `isobar simulate`.

Run by server/tests/python.rs with the HTTP and Postgres ports, and a user and password when
the server has users. Checks: login (a wrong password refused), the fleet view lists the
table, the SQL editor shows the rows psql's protocol gives and charts them (read from uPlot's
data, not pixels), and an invalid query shows the server's error. Exits non-zero with the
failing check on the first mismatch.
"""

import sys
import time

import psycopg
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

http_port, pg_port = int(sys.argv[1]), int(sys.argv[2])
user, password = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)
base = f"http://127.0.0.1:{http_port}/"

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]:
    options.add_argument(flag)
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(browser, 30)


def visible(element_id):
    return wait.until(ready.visibility_of_element_located((By.ID, element_id)))


def text_of(element_id, predicate, what):
    try:
        wait.until(lambda b: predicate(b.find_element(By.ID, element_id).text))
    except TimeoutException:
        raise AssertionError(f"{what}: #{element_id} says {browser.find_element(By.ID, element_id).text!r}")
    return browser.find_element(By.ID, element_id).text


try:
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

    # The fleet view lists the table, with its newest reading.
    visible("fleet")
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, '#fleet-tables tr[data-table="weather"]'))
    row = browser.find_element(By.CSS_SELECTOR, '#fleet-tables tr[data-table="weather"]')
    wait.until(lambda b: row.find_elements(By.TAG_NAME, "td")[1].text not in ("", "no rows"))

    # The SQL editor: the rows and the chart of one sensor's minutes, against pgwire's answer.
    dsn = f"host=127.0.0.1 port={pg_port} dbname=isobar user={user or 'isobar'}" + (f" password={password}" if user else "")
    with psycopg.connect(dsn) as pg:
        sensor = pg.execute("SELECT min(sensor_id) FROM weather_1m").fetchone()[0]
        sql = (f"SELECT time, sensor_value_avg, sensor_value_max FROM weather_1m WHERE sensor_id = '{sensor}' "
               "ORDER BY time")
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
