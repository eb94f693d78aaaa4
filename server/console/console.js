// isobar's web console: the fleet's tables and an SQL editor, over the HTTP query API
// (docs/http-api.md). No build step: this file is served as it is, from inside the binary.
"use strict";

// What tests and the curious read: the last result and the chart drawn from it.
window.isobar = { result: null, chart: null };

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

function quoteIdent(name) {
  return '"' + name.replaceAll('"', '""') + '"';
}

// Views: #fleet and #sql, and the login form when the API asks for credentials.
function show(view) {
  for (const id of ["login", "fleet", "sql"]) $(id).hidden = id !== view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.view === view);
  if (view === "fleet") loadFleet();
}

function showLogin() {
  show("login");
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

// The fleet: every table with its newest reading and how many rows arrived in the last minute.
async function loadFleet() {
  const body = $("fleet-tables").querySelector("tbody");
  try {
    const tables = await query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
    body.replaceChildren();
    for (const [name] of tables.rows) {
      const row = body.insertRow();
      row.dataset.table = name;
      row.insertCell().textContent = name;
      const cells = [row.insertCell(), row.insertCell(), row.insertCell()];
      const t = quoteIdent(name);
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
  } catch (error) {
    body.replaceChildren();
    body.insertRow().insertCell().textContent = error.message;
  }
}

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
      renderTable(answer);
      renderChart(answer);
      $("sql-csv").disabled = false;
      $("sql-status").textContent = `${answer.row_count} rows in ${Math.round(performance.now() - started)} ms`;
    } else {
      renderTable({ columns: [], rows: [] });
      renderChart(null);
      $("sql-status").textContent = answer.command + (answer.rows !== undefined ? ` ${answer.rows}` : "");
    }
  } catch (error) {
    $("sql-error").textContent = error.name === "AbortError" ? "cancelled" : error.message;
    $("sql-error").hidden = false;
    $("sql-status").textContent = "";
    renderTable({ columns: [], rows: [] });
    renderChart(null);
  } finally {
    running = null;
    $("sql-cancel").disabled = true;
  }
}

function renderTable(answer) {
  const table = $("sql-result");
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

const NUMERIC = new Set(["double precision", "real", "bigint", "integer", "smallint"]);

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
    const t = Date.parse(row[timeAt]) / 1000;
    times.add(t);
    for (const [column, i] of numbers) {
      const name = labelAt >= 0 ? `${row[labelAt]} ${column.name}` : column.name;
      if (!series.has(name)) series.set(name, new Map());
      series.get(name).set(t, row[i]);
    }
  }
  const xs = [...times].sort((a, b) => a - b);
  const data = [xs, ...[...series.values()].map((values) => xs.map((t) => values.get(t) ?? null))];
  const palette = ["#1e6fd9", "#d9541e", "#2b9e44", "#9b3fd1", "#c9a400", "#00a3a3", "#d12f6a", "#6b7a8f"];
  const options = {
    width: Math.min(document.body.clientWidth - 40, 1200),
    height: 300,
    series: [{}, ...[...series.keys()].map((label, i) => ({ label, stroke: palette[i % palette.length], spanGaps: true }))],
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

$("sql-run").addEventListener("click", runSql);
$("sql-cancel").addEventListener("click", () => running && running.abort());
$("sql-csv").addEventListener("click", exportCsv);
$("sql-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) runSql();
});

function route() {
  show(location.hash === "#sql" ? "sql" : "fleet");
}
window.addEventListener("hashchange", route);
route();
