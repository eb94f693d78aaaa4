// Service statistics (#stats): messages and rows per second by way in, the newest ingest
// errors with their reasons, rollup lag, and the write buffer's, catalog's and chunks' sizes.
// Alerts (#alerts): every series of every alert that is pending, firing or resolved.
"use strict";

const STATS_REFRESH_MS = 2000;

/** Fills `table` from column names and rows of values. */
function fillRows(table, names, rows) {
  fillTable(table, { columns: names.map((name) => ({ name, type: "" })), rows });
}

views.stats = function (_, token) {
  let previous = null;
  const ingest = async () => {
    const sample = { at: performance.now(), rows: records(await query("SELECT source, messages, rows_written, rejected FROM system.ingest")) };
    const seconds = previous ? (sample.at - previous.at) / 1000 : 0;
    const rate = (row, key) => {
      const before = previous && previous.rows.find((r) => r.source === row.source);
      return before && seconds > 0 ? ((row[key] - before[key]) / seconds).toFixed(1) : "…";
    };
    fillRows(
      $("stats-ingest"),
      ["source", "messages/s", "rows/s", "messages", "rows written", "rejected"],
      sample.rows.map((r) => [r.source, rate(r, "messages"), rate(r, "rows_written"), r.messages, r.rows_written, r.rejected]),
    );
    previous = sample;
  };
  const errors = async () => {
    const answer = await query(
      "SELECT time, source, topic, client, reason, payload_bytes FROM system.ingest_errors ORDER BY time DESC LIMIT 50",
    );
    fillTable($("stats-errors"), answer);
    $("stats-errors-none").hidden = answer.rows.length > 0;
  };
  const rollups = async () => {
    const rows = records(
      await query("SELECT rollup, source, interval_ms, final_before, newest_event, open_windows, stale_windows FROM system.rollups"),
    );
    const now = Date.now();
    fillRows(
      $("stats-rollups"),
      ["rollup", "source", "window", "final before", "lag behind now", "lag behind newest reading", "open windows", "stale windows"],
      rows.map((r) => [
        r.rollup,
        r.source,
        `${r.interval_ms / 1000} s`,
        r.final_before ?? "none yet",
        r.final_before ? age(now - parseTime(r.final_before)) : "",
        r.final_before && r.newest_event ? age(parseTime(r.newest_event) - parseTime(r.final_before)) : "",
        r.open_windows,
        r.stale_windows,
      ]),
    );
  };
  const storage = async () => {
    const [engine] = records(await query("SELECT health, buffered_bytes, catalog_bytes FROM system.storage"));
    const chunks = records(
      await query("SELECT location, count(*) AS chunks, sum(rows) AS rows, sum(bytes) AS bytes FROM system.chunks GROUP BY location ORDER BY location"),
    );
    fillRows($("stats-storage"), ["what", "size", ""], [
      ["health", engine.health, ""],
      ["write buffer (in the WAL, not yet in chunks)", bytes(engine.buffered_bytes), ""],
      ["catalog (RocksDB: WAL, schemas, series, chunk entries)", bytes(engine.catalog_bytes), ""],
      ...chunks.map((c) => [`chunks, ${c.location}`, bytes(c.bytes), `${c.chunks} chunks, ${c.rows} rows`]),
    ]);
  };
  const all = () =>
    Promise.all([ingest(), errors(), rollups(), storage()]).then(
      () => ($("stats-error").hidden = true),
      (error) => {
        $("stats-error").textContent = error.message;
        $("stats-error").hidden = false;
      },
    );
  every(STATS_REFRESH_MS, all, token);
};

views.alerts = function (_, token) {
  const load = async () => {
    try {
      const answer = await query(
        "SELECT alert, series, state, since, breaching_windows, last_window, fired, last_values FROM system.alerts " +
          "ORDER BY CASE state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, alert, series",
      );
      fillTable($("alerts-table"), answer);
      const stateAt = answer.columns.findIndex((c) => c.name === "state");
      for (const [i, tr] of [...$("alerts-table").querySelectorAll("tbody tr")].entries()) tr.className = answer.rows[i][stateAt];
      $("alerts-none").hidden = answer.rows.length > 0;
      const firing = answer.rows.filter((r) => r[stateAt] === "firing").length;
      document.querySelector('nav a[data-view="alerts"]').textContent = firing ? `Alerts (${firing} firing)` : "Alerts";
      $("alerts-error").hidden = true;
    } catch (error) {
      $("alerts-error").textContent = error.message;
      $("alerts-error").hidden = false;
    }
  };
  every(STATS_REFRESH_MS, load, token);
};
