// The series browser (#series): a table's series with their last value and its age, filtered
// by any tag; one series charted over a range read from the level that suits it (the raw
// table up to an hour, else a rollup: min-max band, average, open window marked). And the
// fleet view's band chart of one series, refreshed as windows become final.
"use strict";

const RANGES_MS = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
/** Points a chart should have at most, when a coarser level can give fewer. */
const POINTS_MAX = 2000;
/** How often a chart of a range ending now is read again. */
const REFRESH_MS = 5000;

/** The table to read for a span: the raw table up to an hour, else the finest rollup with at
 * most POINTS_MAX windows in it, else the coarsest rollup. */
function pickLevel(table, spanMs) {
  if (spanMs <= RANGES_MS["1h"] || !table.levels.length) return { name: table.table_name, intervalMs: 0 };
  const level = table.levels.find((l) => spanMs / l.interval_ms <= POINTS_MAX) ?? table.levels[table.levels.length - 1];
  return { name: level.table_name, intervalMs: level.interval_ms };
}

function tagConditions(tags) {
  return Object.entries(tags).map(([name, value]) => `${quoteIdent(name)} = ${literal(value)}`);
}

/** Every series of `table` with the newest time and the last value of `field`. */
async function seriesList(table, field) {
  const tags = table.tags.map(quoteIdent).join(", ");
  const answer = await query(
    `SELECT ${tags}, max(time) AS newest, last(${quoteIdent(field)}, time) AS value FROM ${quoteIdent(table.table_name)} ` +
      `GROUP BY ${tags} ORDER BY ${tags}`,
  );
  return records(answer);
}

/** `field` of one series over [fromMs, toMs) from `level`: uPlot's data, and the rows read. */
async function seriesData(level, tags, field, fromMs, toMs) {
  const where = [
    ...tagConditions(tags),
    `time >= ${literal(new Date(fromMs).toISOString())}`,
    `time < ${literal(new Date(toMs).toISOString())}`,
  ].join(" AND ");
  const from = quoteIdent(level.name);
  if (!level.intervalMs) {
    const { rows } = await query(`SELECT time, ${quoteIdent(field)} FROM ${from} WHERE ${where} ORDER BY time`);
    return { rows, data: [rows.map((r) => parseTime(r[0]) / 1000), rows.map((r) => r[1])] };
  }
  const column = (suffix) => quoteIdent(field + suffix);
  const { rows } = await query(
    `SELECT time, ${column("_min")}, ${column("_avg")}, ${column("_max")}, final FROM ${from} WHERE ${where} ORDER BY time`,
  );
  const at = (i) => rows.map((r) => r[i]);
  // The open window (still taking readings) is drawn as a hollow point on its average.
  const open = rows.map((r) => (r[4] ? null : r[2]));
  return { rows, data: [rows.map((r) => parseTime(r[0]) / 1000), at(1), at(2), at(3), open] };
}

/** A chart of `data` as `seriesData` gives it, in `container`. */
function seriesChart(container, level, field, data) {
  container.replaceChildren();
  const band = level.intervalMs > 0;
  const series = band
    ? [
        {},
        { label: `${field} min`, stroke: "#8fb3e8" },
        { label: `${field} avg`, stroke: PALETTE[0], width: 2 },
        { label: `${field} max`, stroke: "#8fb3e8" },
        { label: "open window", stroke: PALETTE[1], width: 0, points: { show: true, size: 9, fill: "#fff" } },
      ]
    : [{}, { label: field, stroke: PALETTE[0], spanGaps: true }];
  const options = {
    width: chartWidth(),
    height: 280,
    series,
    scales: { x: { time: true } },
    bands: band ? [{ series: [3, 1], fill: "rgba(30,111,217,0.12)" }] : [],
  };
  return new uPlot(options, data, container);
}

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map(([value, text]) => new Option(text, value, false, value === chosen)));
}

// The series browser.
views.series = async function (argument, token) {
  const [encodedName, search] = argument.split("?");
  const tableName = decodeURIComponent(encodedName);
  const params = new URLSearchParams(search ?? "");
  $("series-error").hidden = true;
  let tables;
  try {
    tables = await tableInfo();
  } catch (error) {
    $("series-error").textContent = error.message;
    $("series-error").hidden = false;
    return;
  }
  const table = tables.find((t) => t.table_name === tableName) ?? tables[0];
  fillSelect($("series-table"), tables.map((t) => [t.table_name, t.table_name]), table && table.table_name);
  if (!table) return;
  const fields = await numericFields(table);
  const field = params.get("field") ?? fields[0];
  const tags = Object.fromEntries(table.tags.filter((t) => params.has(t)).map((t) => [t, params.get(t)]));
  const list = await seriesList(table, field);
  const one = Object.keys(tags).length > 0;
  $("series-browse").hidden = one;
  $("series-one").hidden = !one;
  if (one) showSeries(table, fields, field, tags, list, params.get("range") ?? "1h", params, token);
  else browse(table, field, list);
};

$("series-table").addEventListener("change", (event) => (location.hash = "#series/" + encodeURIComponent(event.target.value)));

/** The list of `table`'s series, filtered by a choice of value per tag. */
function browse(table, field, list) {
  const filters = $("series-filters");
  filters.replaceChildren();
  const selects = table.tags.map((tag) => {
    const values = [...new Set(list.map((s) => s[tag]).filter((v) => v !== null))].sort();
    const select = document.createElement("select");
    select.id = "filter-" + tag;
    select.dataset.tag = tag;
    fillSelect(select, [["", `any ${tag}`], ...values.map((v) => [v, v])], "");
    select.addEventListener("change", render);
    filters.appendChild(select);
    return select;
  });
  const head = $("series-list").querySelector("thead");
  head.replaceChildren();
  const headRow = head.insertRow();
  for (const name of [...table.tags, field, "age", ""]) headRow.appendChild(Object.assign(document.createElement("th"), { textContent: name }));
  function render() {
    const chosen = selects.filter((s) => s.value).map((s) => [s.dataset.tag, s.value]);
    const shown = list.filter((s) => chosen.every(([tag, value]) => s[tag] === value));
    const body = $("series-list").querySelector("tbody");
    body.replaceChildren();
    const now = Date.now();
    for (const s of shown) {
      const row = body.insertRow();
      for (const tag of table.tags) row.insertCell().textContent = s[tag] ?? "";
      row.insertCell().textContent = s.value ?? "NULL";
      row.insertCell().textContent = s.newest ? age(now - parseTime(s.newest)) : "";
      const link = document.createElement("a");
      const query = new URLSearchParams(table.tags.filter((t) => s[t] !== null).map((t) => [t, s[t]]));
      link.href = `#series/${encodeURIComponent(table.table_name)}?${query}`;
      link.textContent = "open";
      row.insertCell().appendChild(link);
    }
    $("series-count").textContent = `${shown.length} of ${list.length} series`;
  }
  render();
}

/** One series: its last value and age, and a chart of the chosen range. */
function showSeries(table, fields, field, tags, list, range, params, token) {
  const hashFor = (changes) => {
    const next = new URLSearchParams({ ...Object.fromEntries(params), ...changes });
    return `#series/${encodeURIComponent(table.table_name)}?${next}`;
  };
  $("series-title").textContent = `${table.table_name}: ` + Object.entries(tags).map(([k, v]) => `${k}=${v}`).join(", ");
  const mine = list.find((s) => Object.entries(tags).every(([k, v]) => s[k] === v));
  $("series-last").textContent = mine
    ? `last ${field}: ${mine.value ?? "NULL"}, ${age(Date.now() - parseTime(mine.newest))} ago (${mine.newest})`
    : "no readings";
  fillSelect($("series-field"), fields.map((f) => [f, f]), field);
  $("series-field").onchange = (event) => (location.hash = hashFor({ field: event.target.value }));
  for (const button of document.querySelectorAll("#series-ranges button[data-range]")) {
    button.classList.toggle("current", button.dataset.range === range);
    button.onclick = () => (location.hash = hashFor({ range: button.dataset.range, from: "", to: "" }));
  }
  $("series-custom").onclick = () => {
    const from = Date.parse($("series-from").value + "Z");
    const to = Date.parse($("series-to").value + "Z");
    if (from < to) location.hash = hashFor({ range: "custom", from, to });
  };
  const custom = range === "custom" && Number(params.get("from")) < Number(params.get("to"));
  const bounds = () => (custom ? [Number(params.get("from")), Number(params.get("to"))] : [Date.now() - (RANGES_MS[range] ?? RANGES_MS["1h"]), Date.now()]);
  const [from, to] = bounds();
  $("series-from").value = new Date(from).toISOString().slice(0, 16);
  $("series-to").value = new Date(to).toISOString().slice(0, 16);
  const level = pickLevel(table, to - from);
  $("series-level").textContent = `reading ${level.name}` + (level.intervalMs ? ` (${level.intervalMs / 1000} s windows)` : " (every reading)");
  let chart = null;
  const draw = async () => {
    try {
      const [from, to] = bounds();
      const { rows, data } = await seriesData(level, tags, field, from, to);
      if (chart) chart.setData(data);
      else chart = seriesChart($("series-chart"), level, field, data);
      window.isobar.series = { table: level.name, field, tags, rows, chart };
      const open = level.intervalMs ? rows.filter((r) => !r[4]) : [];
      $("series-open").textContent = open.length ? `open window from ${open.map((r) => r[0]).join(", ")}: it still takes readings` : "";
      $("series-error").hidden = true;
    } catch (error) {
      $("series-error").textContent = error.message;
      $("series-error").hidden = false;
    }
  };
  if (custom) draw();
  else every(REFRESH_MS, draw, token);
}

/** The fleet view's band chart: the last hour of one series from its table's finest rollup. */
async function fleetBands(tables, token) {
  const panel = $("fleet-bands");
  panel.hidden = !tables.length;
  if (!tables.length) return;
  const choose = async () => {
    const table = tables.find((t) => t.table_name === $("bands-table").value) ?? tables[0];
    const fields = await numericFields(table);
    const field = fields.includes($("bands-field").value) ? $("bands-field").value : fields[0];
    fillSelect($("bands-field"), fields.map((f) => [f, f]), field);
    const list = await seriesList(table, field);
    const key = (s) => table.tags.map((t) => `${t}=${s[t] ?? ""}`).join(", ");
    const chosen = list.find((s) => key(s) === $("bands-series").value) ?? list[0];
    fillSelect($("bands-series"), list.map((s) => [key(s), key(s)]), chosen && key(chosen));
    return chosen && { table, field, tags: Object.fromEntries(table.tags.filter((t) => chosen[t] !== null).map((t) => [t, chosen[t]])) };
  };
  fillSelect($("bands-table"), tables.map((t) => [t.table_name, t.table_name]), $("bands-table").value || tables[0].table_name);
  let choice = await choose();
  let chart = null;
  const draw = async () => {
    if (!choice) return;
    const level = { name: choice.table.levels[0].table_name, intervalMs: choice.table.levels[0].interval_ms };
    const { rows, data } = await seriesData(level, choice.tags, choice.field, Date.now() - RANGES_MS["1h"], Date.now() + 60e3);
    if (chart) chart.setData(data);
    else chart = seriesChart($("bands-chart"), level, choice.field, data);
    window.isobar.bands = { table: level.name, field: choice.field, tags: choice.tags, rows, chart };
    $("bands-level").textContent = `${level.name}, the last hour; ${rows.filter((r) => !r[4]).length} window(s) open`;
  };
  for (const id of ["bands-table", "bands-series", "bands-field"]) {
    $(id).onchange = async () => {
      choice = await choose();
      chart = null;
      await draw();
    };
  }
  every(REFRESH_MS, draw, token);
}
