// isobar's web console, over the HTTP query API (docs/http-api.md). No build step: these files
// are served as they are, from inside the binary. This one: the query helper, login, views and
// routing, the fleet view and the SQL editor; series.js has the series browser and the band
// charts, status.js the service statistics and the alerts.
"use strict";

// What tests and the curious read: the last result and chart of the SQL editor, the series
// view's chart and what it read, the fleet view's band chart.
window.isobar = { result: null, chart: null, series: null, bands: null };

const $ = (id) => document.getElementById(id);

/** Runs `sql` through the query API; resolves to the JSON answer, rejects with its error. */
async function query(sql, { signal, format } = {}) {
  const response = await fetch("/api/v1/query", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sql, format }),
    credentials: "same-origin",
    signal,
  });
  if (format === "csv" && response.ok) return response.blob();
  const answer = await response.json();
  if (response.status === 401) {
    showLogin();
    throw new Error(answer.error.message);
  }
  if (!response.ok || answer.error) throw new Error(answer.error ? answer.error.message : response.statusText);
  return answer;
}

/** The rows of `answer` as objects keyed by column name. */
function records(answer) {
  return answer.rows.map((row) => Object.fromEntries(answer.columns.map((c, i) => [c.name, row[i]])));
}

function quoteIdent(name) {
  return '"' + name.replaceAll('"', '""') + '"';
}

function literal(value) {
  return "'" + String(value).replaceAll("'", "''") + "'";
}

/** Milliseconds since the epoch of a timestamp the API sent (UTC when it names no zone). */
function parseTime(text) {
  return Date.parse(/([zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : text + "Z");
}

/** "12 s", "5 min", "3 h", "2 d". */
function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** "1.2 MB" */
function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++;
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** Fills `table` (thead and tbody) with `answer`'s columns and rows. */
function fillTable(table, answer) {
  const head = table.querySelector("thead");
  const body = table.querySelector("tbody");
  head.replaceChildren();
  body.replaceChildren();
  if (!answer.columns.length) return;
  const headRow = head.insertRow();
  for (const column of answer.columns) {
    const th = document.createElement("th");
    th.textContent = column.name;
    th.title = column.type;
    headRow.appendChild(th);
  }
  for (const row of answer.rows) {
    const tr = body.insertRow();
    for (const value of row) tr.insertCell().textContent = value === null ? "NULL" : String(value);
  }
}

// Views, each called with its argument and the token of its showing. A view may refresh
// itself on timers, which stop when a view is shown again.
const views = {};
let timers = [];
let showing = 0;

/** Runs `work` now and every `ms` while the showing `token` lasts (nothing once it is over). */
function every(ms, work, token) {
  if (token !== showing) return;
  work();
  timers.push(setInterval(work, ms));
}

function show(view, argument) {
  for (const id of ["login", ...Object.keys(views)]) $(id).hidden = id !== view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.view === view);
  for (const timer of timers) clearInterval(timer);
  timers = [];
  showing++;
  if (views[view]) views[view](argument, showing);
}

function showLogin() {
  show("login");
}

/** `#series/weather?sensor_id=x` → view "series", argument "weather?sensor_id=x" (still
 * URL-encoded). */
function route() {
  const [view, ...rest] = location.hash.slice(1).split("/");
  show(views[view] ? view : "fleet", rest.join("/"));
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch("/api/v1/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: form.get("user"), password: form.get("password") }),
    credentials: "same-origin",
  });
  if (!response.ok) {
    const answer = await response.json();
    $("login-error").textContent = answer.error.message;
    $("login-error").hidden = false;
    return;
  }
  $("login-error").hidden = true;
  $("logout").hidden = false;
  route();
});

$("logout").addEventListener("click", async () => {
  await fetch("/api/v1/logout", { method: "POST", credentials: "same-origin" });
  $("logout").hidden = true;
  showLogin();
});

/** Every table from system.tables, with its rollup levels (finest first) when it is raw. */
async function tableInfo() {
  const tables = records(await query("SELECT table_name, kind, source, interval_ms, tags, series FROM system.tables"));
  for (const table of tables) {
    table.tags = table.tags ? table.tags.split(",") : [];
    table.levels = [];
    for (let from = table.table_name; ; ) {
      const next = tables.find((t) => t.kind === "rollup" && t.source === from);
      if (!next) break;
      table.levels.push(next);
      from = next.table_name;
    }
  }
  return tables.filter((t) => t.kind === "raw" && !t.table_name.startsWith("system."));
}

/** The numeric fields of `table`: its number columns that are not tags. */
async function numericFields(table) {
  const columns = await query(
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = " +
      literal(table.table_name) + " ORDER BY ordinal_position",
  );
  return columns.rows.filter(([name, type]) => NUMERIC.has(type) && !table.tags.includes(name)).map(([name]) => name);
}

// The fleet: every table with its series, newest reading and ingest rate, and the minute
// bands of one series (series.js).
views.fleet = async function (_, token) {
  const body = $("fleet-tables").querySelector("tbody");
  let tables;
  try {
    tables = await tableInfo();
  } catch (error) {
    body.replaceChildren();
    body.insertRow().insertCell().textContent = error.message;
    return;
  }
  body.replaceChildren();
  for (const table of tables) {
    const row = body.insertRow();
    row.dataset.table = table.table_name;
    const link = document.createElement("a");
    link.href = "#series/" + encodeURIComponent(table.table_name);
    link.textContent = table.table_name;
    row.insertCell().appendChild(link);
    row.insertCell().textContent = table.series;
    const cells = [row.insertCell(), row.insertCell(), row.insertCell()];
    const t = quoteIdent(table.table_name);
    query(`SELECT max(time), count(*) FILTER (WHERE time > now() - INTERVAL '1 minute') FROM ${t}`).then(
      (answer) => {
        const [newest, lastMinute] = answer.rows[0];
        cells[0].textContent = newest ?? "no rows";
        cells[1].textContent = lastMinute;
        cells[2].textContent = (lastMinute / 60).toFixed(1);
      },
      (error) => (cells[0].textContent = error.message),
    );
  }
  fleetBands(tables.filter((t) => t.levels.length), token);
};

// The SQL editor.
let running = null;

async function runSql() {
  const sql = $("sql-text").value;
  if (running) running.abort();
  running = new AbortController();
  $("sql-cancel").disabled = false;
  $("sql-error").hidden = true;
  $("sql-status").textContent = "running…";
  const started = performance.now();
  try {
    const answer = await query(sql, { signal: running.signal });
    window.isobar.result = answer;
    if (answer.columns) {
      fillTable($("sql-result"), answer);
      renderChart(answer);
      $("sql-csv").disabled = false;
      $("sql-status").textContent = `${answer.row_count} rows in ${Math.round(performance.now() - started)} ms`;
    } else {
      fillTable($("sql-result"), { columns: [], rows: [] });
      renderChart(null);
      $("sql-status").textContent = answer.command + (answer.rows !== undefined ? ` ${answer.rows}` : "");
    }
  } catch (error) {
    $("sql-error").textContent = error.name === "AbortError" ? "cancelled" : error.message;
    $("sql-error").hidden = false;
    $("sql-status").textContent = "";
    fillTable($("sql-result"), { columns: [], rows: [] });
    renderChart(null);
  } finally {
    running = null;
    $("sql-cancel").disabled = true;
  }
}

const NUMERIC = new Set(["double precision", "real", "bigint", "integer", "smallint"]);
const PALETTE = ["#1e6fd9", "#d9541e", "#2b9e44", "#9b3fd1", "#c9a400", "#00a3a3", "#d12f6a", "#6b7a8f"];

function chartWidth() {
  return Math.min(document.body.clientWidth - 40, 1200);
}

/** A line chart when the result has a time column and numbers: one line per number column,
 * and per value of the first text column (a sensor, say) when there is one. */
function renderChart(answer) {
  if (window.isobar.chart) window.isobar.chart.destroy();
  window.isobar.chart = null;
  $("sql-chart").replaceChildren();
  if (!answer) return;
  const timeAt = answer.columns.findIndex((c) => c.type.startsWith("timestamp"));
  const numbers = answer.columns.map((c, i) => [c, i]).filter(([c]) => NUMERIC.has(c.type));
  if (timeAt < 0 || !numbers.length || !answer.rows.length) return;
  const labelAt = answer.columns.findIndex((c) => c.type === "text");
  // Series: (label, number column) → {time → value}.
  const series = new Map();
  const times = new Set();
  for (const row of answer.rows) {
    if (row[timeAt] === null) continue;
    const t = parseTime(row[timeAt]) / 1000;
    times.add(t);
    for (const [column, i] of numbers) {
      const name = labelAt >= 0 ? `${row[labelAt]} ${column.name}` : column.name;
      if (!series.has(name)) series.set(name, new Map());
      series.get(name).set(t, row[i]);
    }
  }
  const xs = [...times].sort((a, b) => a - b);
  const data = [xs, ...[...series.values()].map((values) => xs.map((t) => values.get(t) ?? null))];
  const options = {
    width: chartWidth(),
    height: 300,
    series: [{}, ...[...series.keys()].map((label, i) => ({ label, stroke: PALETTE[i % PALETTE.length], spanGaps: true }))],
    scales: { x: { time: true } },
  };
  window.isobar.chart = new uPlot(options, data, $("sql-chart"));
}

async function exportCsv() {
  try {
    const blob = await query($("sql-text").value, { format: "csv" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "isobar.csv";
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (error) {
    $("sql-error").textContent = error.message;
    $("sql-error").hidden = false;
  }
}

views.sql = function () {};
$("sql-run").addEventListener("click", runSql);
$("sql-cancel").addEventListener("click", () => running && running.abort());
$("sql-csv").addEventListener("click", exportCsv);
$("sql-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) runSql();
});

window.addEventListener("hashchange", route);
// The other scripts register their views first; they run before this event.
document.addEventListener("DOMContentLoaded", route);
