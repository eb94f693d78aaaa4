//! The alerts' durable state, `<data_dir>/alerts.json`: per alert its cursor (windows starting
//! before it are judged) and the state of every series that breaches or has fired, and the
//! outbox of notifications not yet delivered. Written whole (a temporary file, fsync, rename,
//! fsync of the directory) after every change and before a notification goes out.
//!
//! A series moves `pending` (breaching for fewer than `for_windows` windows) → `firing` →
//! `resolved` (after `resolve_windows` windows without a breach); firing and resolving each
//! put one notification per notifier in the outbox. A series that stops breaching while
//! pending is forgotten. A window whose condition is NULL, or a window the series has no row
//! in, changes nothing.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AlertSpec;
use crate::error::{Error, Result};

/// Notifications waiting in the outbox, at most; past it the oldest is given up.
const OUTBOX_LEN_MAX: usize = 10_000;
/// The state file's format version.
const VERSION: u32 = 1;

/// Where a series stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    Pending,
    Firing,
    Resolved,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Resolved => "resolved",
        }
    }
}

/// One series of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeriesState {
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) phase: Phase,
    /// Consecutive breaching windows up to the newest judged.
    pub(crate) breaches: u32,
    /// Consecutive windows without a breach while firing.
    pub(crate) clears: u32,
    /// Start of the window the phase began with, in ns since the epoch.
    pub(crate) since_ns: i64,
    /// Start of the newest window judged.
    pub(crate) last_window_ns: i64,
    /// Start of the window that made the series fire, while firing and once resolved.
    pub(crate) fired_ns: Option<i64>,
    /// The newest judged window's columns.
    pub(crate) values: Map<String, Value>,
}

/// One final window of one series, judged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Judged {
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) window_ns: i64,
    /// The condition's value; `None` when it is NULL.
    pub(crate) breach: Option<bool>,
    pub(crate) values: Map<String, Value>,
}

impl Judged {
    /// The series' key in the state: its tags, `name=value` joined by `,`.
    fn key(&self) -> String {
        series_text(&self.tags)
    }
}

fn series_text(tags: &[(String, String)]) -> String {
    tags.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(",")
}

/// What a firing or resolving series tells its notifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Notification {
    /// The same for every delivery of one transition: `alert/series/since_ns/state`.
    pub(crate) id: String,
    pub(crate) alert: String,
    /// `firing` or `resolved`.
    pub(crate) state: Phase,
    pub(crate) table: String,
    pub(crate) condition: String,
    /// The series' tags.
    pub(crate) series: BTreeMap<String, String>,
    /// Start of the window that made the transition (RFC 3339).
    pub(crate) window: String,
    /// Start of the first breaching window of the firing (RFC 3339).
    pub(crate) firing_since: String,
    /// The window's columns.
    pub(crate) values: Map<String, Value>,
}

/// A notification on its way to one notifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Delivery {
    pub(crate) notifier: String,
    pub(crate) attempts: u32,
    /// Unix time of the next attempt, in milliseconds.
    pub(crate) next_attempt_ms: i64,
    pub(crate) notification: Notification,
    /// The judgement that made it; it may go out once a save has written that judgement.
    #[serde(skip)]
    judgement: u64,
}

impl Delivery {
    /// The same delivery, for attempt `attempts + 1` at `next_attempt_ms`.
    pub(crate) fn retry(self, attempts: u32, next_attempt_ms: i64) -> Self {
        Self { attempts, next_attempt_ms, ..self }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AlertState {
    /// `AlertSpec::definition` the series states were judged under.
    definition: String,
    /// Windows starting before this are judged; `None` until the alert first sees its table.
    cursor_ns: Option<i64>,
    series: BTreeMap<String, SeriesState>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    alerts: BTreeMap<String, AlertState>,
    outbox: VecDeque<Delivery>,
    /// Judgements made since start, and the newest one a save has written.
    #[serde(skip)]
    judgements: u64,
    #[serde(skip)]
    saved: u64,
}

/// One row of `system.alerts`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesRow {
    pub(crate) alert: String,
    pub(crate) series: String,
    pub(crate) state: SeriesState,
}

/// The alerts' state, shared by the judge, the deliverer and `system.alerts`.
#[derive(Debug)]
pub(crate) struct Store {
    path: PathBuf,
    inner: Mutex<StateFile>,
    /// Held while a snapshot is written, so that snapshots reach the disk in order.
    saving: tokio::sync::Mutex<()>,
    /// Woken when the outbox gets a notification.
    pub(crate) outbox_filled: tokio::sync::Notify,
}

impl Store {
    /// Reads `<data_dir>/alerts.json` if it exists, keeping the state of each alert in
    /// `alerts` whose definition is unchanged (the others start over).
    pub(crate) fn open(data_dir: &Path, alerts: &[AlertSpec]) -> Result<Self> {
        let path = data_dir.join("alerts.json");
        let mut file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<StateFile>(&bytes)
                .map_err(|e| Error::Alerts(format!("{} is unreadable ({e}); move it away to start the alerts over", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(Error::Alerts(format!("read {}: {e}", path.display()))),
        };
        if file.version > VERSION {
            return Err(Error::Alerts(format!("{} is from a newer isobar (version {})", path.display(), file.version)));
        }
        file.version = VERSION;
        let mut kept = BTreeMap::new();
        for alert in alerts {
            let definition = alert.definition();
            let state = file.alerts.remove(&alert.name).filter(|s| s.definition == definition);
            kept.insert(alert.name.clone(), state.unwrap_or(AlertState { definition, ..AlertState::default() }));
        }
        file.alerts = kept;
        file.outbox.retain(|d| alerts.iter().any(|a| a.name == d.notification.alert && a.notify.contains(&d.notifier)));
        Ok(Self { path, inner: Mutex::new(file), saving: tokio::sync::Mutex::new(()), outbox_filled: tokio::sync::Notify::new() })
    }

    /// Where `alert` judges from; `None` before it first saw its table's frontier.
    pub(crate) fn cursor(&self, alert: &str) -> Option<i64> {
        self.inner.lock().alerts.get(alert).and_then(|a| a.cursor_ns)
    }

    /// Judges `windows` (those between the cursor and `frontier_ns`, in time order) and moves
    /// the cursor to `frontier_ns`; returns the notifications given up to keep the outbox
    /// bounded. Nothing is durable until [`Store::save`].
    pub(crate) fn judge(&self, alert: &AlertSpec, frontier_ns: i64, windows: Vec<Judged>, now_ms: i64) -> usize {
        let mut file = self.inner.lock();
        file.judgements += 1;
        let judgement = file.judgements;
        let mut notifications = Vec::new();
        let Some(state) = file.alerts.get_mut(&alert.name) else { return 0 };
        for window in windows {
            let key = window.key();
            let (next, transition) = observe(alert, state.series.remove(&key), window);
            if let Some(next) = next {
                if let Some(phase) = transition {
                    notifications.push(notification(alert, &key, &next, phase));
                }
                state.series.insert(key, next);
            }
        }
        state.cursor_ns = Some(state.cursor_ns.map_or(frontier_ns, |c| c.max(frontier_ns)));
        for notification in notifications {
            for notifier in &alert.notify {
                file.outbox.push_back(Delivery {
                    notifier: notifier.clone(),
                    attempts: 0,
                    next_attempt_ms: now_ms,
                    notification: notification.clone(),
                    judgement,
                });
            }
        }
        let given_up = file.outbox.len().saturating_sub(OUTBOX_LEN_MAX);
        file.outbox.drain(..given_up);
        given_up
    }

    /// Deliveries written durably and due at `now_ms`, oldest first.
    pub(crate) fn due(&self, now_ms: i64) -> Vec<Delivery> {
        let file = self.inner.lock();
        file.outbox.iter().filter(|d| d.judgement <= file.saved && d.next_attempt_ms <= now_ms).cloned().collect()
    }

    /// When the next delivery written durably is due, if any.
    pub(crate) fn next_attempt_ms(&self) -> Option<i64> {
        let file = self.inner.lock();
        file.outbox.iter().filter(|d| d.judgement <= file.saved).map(|d| d.next_attempt_ms).min()
    }

    /// Replaces `delivery` in the outbox by `next` (a later attempt), or removes it.
    pub(crate) fn settle(&self, delivery: &Delivery, next: Option<Delivery>) {
        let mut file = self.inner.lock();
        let same = |d: &Delivery| d.notifier == delivery.notifier && d.notification.id == delivery.notification.id;
        if let Some(i) = file.outbox.iter().position(same) {
            match next {
                Some(next) => file.outbox[i] = next,
                None => {
                    file.outbox.remove(i);
                }
            }
        }
    }

    /// Every series state, by alert and series.
    pub(crate) fn rows(&self) -> Vec<SeriesRow> {
        let file = self.inner.lock();
        let mut rows = Vec::new();
        for (alert, state) in &file.alerts {
            for (series, s) in &state.series {
                rows.push(SeriesRow { alert: alert.clone(), series: series.clone(), state: s.clone() });
            }
        }
        rows
    }

    /// Writes the state durably; then the notifications it holds may go out.
    pub(crate) async fn save(&self) -> Result<()> {
        let _in_order = self.saving.lock().await;
        let (bytes, judgements) = {
            let file = self.inner.lock();
            (serde_json::to_vec(&*file).map_err(|e| Error::Alerts(format!("alert state: {e}")))?, file.judgements)
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| Error::Alerts(format!("alert state task: {e}")))?
            .map_err(|e| Error::Alerts(format!("write {}: {e}", self.path.display())))?;
        let mut file = self.inner.lock();
        let woken = file.outbox.iter().any(|d| d.judgement > file.saved && d.judgement <= judgements);
        file.saved = file.saved.max(judgements);
        if woken {
            self.outbox_filled.notify_one();
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A series' next state after `window`, and the phase it moved into when that is news
/// (firing or resolved).
fn observe(alert: &AlertSpec, state: Option<SeriesState>, window: Judged) -> (Option<SeriesState>, Option<Phase>) {
    let Some(breach) = window.breach else { return (state, None) };
    if state.as_ref().is_some_and(|s| window.window_ns <= s.last_window_ns) {
        return (state, None); // judged before
    }
    let Judged { tags, window_ns, values, .. } = window;
    let moved = |state: SeriesState, phase: Phase| {
        let transition = (phase != state.phase && phase != Phase::Pending).then_some(phase);
        let since_ns = if phase != state.phase { window_ns } else { state.since_ns };
        let fired_ns = if transition == Some(Phase::Firing) { Some(window_ns) } else { state.fired_ns };
        (Some(SeriesState { phase, since_ns, last_window_ns: window_ns, fired_ns, values, ..state }), transition)
    };
    match (state, breach) {
        (None, false) => (None, None),
        (Some(s), false) if s.phase == Phase::Pending => (None, None),
        (Some(s), false) if s.phase == Phase::Resolved => moved(s, Phase::Resolved),
        (Some(s), false) => {
            let s = SeriesState { clears: s.clears + 1, breaches: 0, ..s };
            let phase = if s.clears >= alert.resolve_windows { Phase::Resolved } else { Phase::Firing };
            moved(s, phase)
        }
        (Some(s), true) if s.phase == Phase::Firing => moved(SeriesState { clears: 0, breaches: s.breaches + 1, ..s }, Phase::Firing),
        (state, true) => {
            let breaches = state.as_ref().filter(|s| s.phase == Phase::Pending).map_or(0, |s| s.breaches) + 1;
            let s = state.unwrap_or(SeriesState {
                tags,
                phase: Phase::Pending,
                breaches: 0,
                clears: 0,
                since_ns: window_ns,
                last_window_ns: window_ns,
                fired_ns: None,
                values: Map::new(),
            });
            let s = SeriesState { breaches, clears: 0, ..s };
            let phase = if breaches >= alert.for_windows { Phase::Firing } else { Phase::Pending };
            // A resolved series breaching again is pending anew, from this window.
            let s = if s.phase == Phase::Resolved { SeriesState { phase: Phase::Pending, since_ns: window_ns, ..s } } else { s };
            moved(s, phase)
        }
    }
}

fn notification(alert: &AlertSpec, key: &str, state: &SeriesState, phase: Phase) -> Notification {
    let time = |ns: i64| chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let fired_ns = state.fired_ns.unwrap_or(state.since_ns);
    Notification {
        id: format!("{}/{key}/{fired_ns}/{}", alert.name, phase.as_str()),
        alert: alert.name.clone(),
        state: phase,
        table: alert.table.clone(),
        condition: alert.condition.clone(),
        series: state.tags.iter().cloned().collect(),
        window: time(state.last_window_ns),
        firing_since: time(fired_ns),
        values: state.values.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE_NS: i64 = 60_000_000_000;

    fn alert(for_windows: u32, resolve_windows: u32) -> AlertSpec {
        AlertSpec {
            name: "hot".into(),
            table: "weather_1m".into(),
            condition: "sensor_value_max > 40".into(),
            for_windows,
            resolve_windows,
            notify: vec!["ops".into(), "sns".into()],
            ..AlertSpec::default()
        }
    }

    fn window(sensor: &str, minute: i64, breach: Option<bool>) -> Judged {
        let mut values = Map::new();
        values.insert("sensor_value_max".into(), Value::from(minute));
        Judged { tags: vec![("sensor_id".into(), sensor.into())], window_ns: minute * MINUTE_NS, breach, values }
    }

    /// Judges `breaches` (one window a minute from minute 1) for one sensor and returns the
    /// phase after each and the outbox's states.
    fn run(alert: &AlertSpec, breaches: &[Option<bool>]) -> (Vec<Option<Phase>>, Vec<Phase>) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), std::slice::from_ref(alert)).expect("open");
        let mut phases = Vec::new();
        for (i, breach) in breaches.iter().enumerate() {
            let minute = i as i64 + 1;
            store.judge(alert, (minute + 1) * MINUTE_NS, vec![window("s1", minute, *breach)], 0);
            phases.push(store.rows().first().map(|r| r.state.phase));
        }
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(store.save()).expect("save");
        let sent = store.due(0).iter().filter(|d| d.notifier == "ops").map(|d| d.notification.state).collect();
        (phases, sent)
    }

    #[test]
    fn a_series_fires_after_n_windows_and_resolves_once() {
        use Phase::*;
        let (t, f) = (Some(true), Some(false));
        let (phases, sent) = run(&alert(2, 1), &[t, f, t, t, t, None, f, f]);
        assert_eq!(phases, [Some(Pending), None, Some(Pending), Some(Firing), Some(Firing), Some(Firing), Some(Resolved), Some(Resolved)]);
        assert_eq!(sent, [Firing, Resolved]);
        let (phases, sent) = run(&alert(1, 2), &[t, f, t, f, f, t]);
        assert_eq!(phases, [Some(Firing), Some(Firing), Some(Firing), Some(Firing), Some(Resolved), Some(Firing)]);
        assert_eq!(sent, [Firing, Resolved, Firing]);
    }

    #[test]
    fn state_survives_a_reopen_and_old_windows_are_not_judged_again() {
        let dir = tempfile::tempdir().expect("dir");
        let alert = alert(1, 1);
        let store = Store::open(dir.path(), std::slice::from_ref(&alert)).expect("open");
        assert_eq!(store.cursor("hot"), None);
        store.judge(&alert, 3 * MINUTE_NS, vec![window("s1", 1, Some(true)), window("s2", 2, Some(false))], 5);
        assert_eq!(store.due(5), Vec::new(), "nothing goes out before the state is written");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(store.save()).expect("save");
        let notified = store.due(5);
        assert_eq!(notified.len(), 2, "one firing per notifier");
        assert!(notified[0].notification.id.starts_with("hot/sensor_id=s1/60000000000/firing"), "{:?}", notified[0].notification.id);
        assert_eq!(notified[0].notification.series.get("sensor_id").map(String::as_str), Some("s1"));

        let reopened = Store::open(dir.path(), std::slice::from_ref(&alert)).expect("reopen");
        assert_eq!(reopened.cursor("hot"), Some(3 * MINUTE_NS));
        assert_eq!(reopened.rows(), store.rows());
        let notifications = |deliveries: Vec<Delivery>| deliveries.into_iter().map(|d| (d.notifier, d.notification)).collect::<Vec<_>>();
        assert_eq!(notifications(reopened.due(5)), notifications(notified.clone()), "the outbox is durable");
        reopened.settle(&notified[0], None);
        assert_eq!(reopened.due(5).len(), 1);
        // The same window again (a restart re-reading it) changes nothing.
        reopened.judge(&alert, 3 * MINUTE_NS, vec![window("s1", 1, Some(true))], 5);
        assert_eq!(reopened.due(5).len(), 1);

        // A changed definition starts over.
        let changed = AlertSpec { condition: "sensor_value_max > 50".into(), ..alert };
        runtime.block_on(reopened.save()).expect("save");
        let restarted = Store::open(dir.path(), &[changed]).expect("reopen");
        assert_eq!((restarted.cursor("hot"), restarted.rows()), (None, Vec::new()));
    }
}
