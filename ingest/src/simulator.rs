//! The fleet simulator: seed-shaped readings, as the weather fleet in the seed talk publishes them.
//!
//! Each series has five tags (`state`, `city`, `station_id`, `sensor`, `sensor_id`) and one
//! reading per second: `sensor_value`, a random walk with four decimals; `sensor_value_smoothed`,
//! its 10-reading moving average at full precision; and `direction`, +1 or -1 as the value rose
//! or fell. The generator is deterministic for a seed.

use isobar_storage::{FieldValue, Point, WriteBatch};

use crate::rule::{RuleSpec, TimeUnit};

const SENSORS: [&str; 5] = ["temperature", "humidity", "pressure", "wind_speed", "rain"];
const STATES: [(&str, &str); 4] = [("wa", "seattle"), ("or", "portland"), ("ca", "oakland"), ("nv", "reno")];
const WINDOW: usize = 10;

/// The seed talk's IoT rule, as isobar configures it: what the demo runs.
pub fn seed_rule() -> RuleSpec {
    RuleSpec {
        name: "weather".into(),
        sql: "SELECT topic(6) AS sensor_id, topic(4) AS station_id, topic(5) AS sensor, sensor_timestamp, \
              cast(sensor_value AS double) AS sensor_value, cast(sensor_value_smoothed AS double) AS sensor_value_smoothed, \
              cast(direction AS int) AS direction FROM 'weather/+/+/+/+/+'"
            .into(),
        table: "weather".into(),
        tags: vec!["station_id".into(), "sensor".into(), "sensor_id".into()],
        time: Some("sensor_timestamp".into()),
        time_unit: TimeUnit::Ms,
    }
}

/// splitmix64: small, fast and the same on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
}

/// One sensor's state.
#[derive(Debug, Clone)]
struct Sensor {
    tags: [(String, String); 5],
    value_e4: i64,
    recent: Vec<f64>,
}

/// A fleet of sensors producing one reading per second each.
#[derive(Debug, Clone)]
pub struct SeedFleet {
    sensors: Vec<Sensor>,
    rng: SplitMix64,
    /// Time of the next reading, ns.
    pub time_ns: i64,
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub sensor_value: f64,
    pub sensor_value_smoothed: f64,
    pub direction: i64,
}

impl Reading {
    /// The JSON payload a seed device publishes, with its time in milliseconds.
    pub fn payload(&self, time_ms: i64) -> String {
        format!(
            r#"{{"sensor_timestamp":{time_ms},"sensor_value":{},"sensor_value_smoothed":{},"direction":{}}}"#,
            self.sensor_value, self.sensor_value_smoothed, self.direction
        )
    }
}

impl SeedFleet {
    /// `series` sensors (five per station), starting at `start_ns`.
    pub fn new(series: usize, start_ns: i64, seed: u64) -> Self {
        let mut fleet = Self::stations(0..series.div_ceil(SENSORS.len()), SENSORS.len(), start_ns, seed);
        fleet.sensors.truncate(series);
        fleet
    }

    /// The stations numbered `stations`, with `per_station` sensors each (cycling through the
    /// five sensor types), starting at `start_ns`.
    pub fn stations(stations: std::ops::Range<usize>, per_station: usize, start_ns: i64, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut sensors = Vec::with_capacity(stations.len() * per_station);
        for station_no in stations {
            let (state, city) = STATES[station_no % STATES.len()];
            let station = format!("st-{station_no:05}");
            for j in 0..per_station {
                let sensor = SENSORS[j % SENSORS.len()];
                let sensor_id = match j / SENSORS.len() {
                    0 => format!("{station}-{sensor}"),
                    n => format!("{station}-{sensor}-{n}"),
                };
                sensors.push(Sensor {
                    tags: [
                        ("state".into(), state.into()),
                        ("city".into(), city.into()),
                        ("station_id".into(), station.clone()),
                        ("sensor".into(), sensor.into()),
                        ("sensor_id".into(), sensor_id),
                    ],
                    value_e4: rng.range(0, 300_000),
                    recent: Vec::with_capacity(WINDOW),
                });
            }
        }
        Self { sensors, rng, time_ns: start_ns }
    }

    /// The MQTT topic sensor `i` publishes on, as in the seed talk:
    /// `weather/<state>/<city>/<station_id>/<sensor_type>/<sensor_id>`.
    pub fn topic(&self, i: usize) -> String {
        let [state, city, station, sensor, sensor_id] = &self.sensors[i].tags;
        format!("weather/{}/{}/{}/{}/{}", state.1, city.1, station.1, sensor.1, sensor_id.1)
    }

    pub fn series(&self) -> usize {
        self.sensors.len()
    }

    /// The next reading of sensor `i` (time is advanced by [`SeedFleet::tick`]).
    pub fn next_reading(&mut self, i: usize) -> Reading {
        let step = self.rng.range(-50, 50);
        let s = &mut self.sensors[i];
        s.value_e4 += step;
        let value = s.value_e4 as f64 / 10_000.0;
        if s.recent.len() == WINDOW {
            s.recent.remove(0);
        }
        s.recent.push(value);
        let smoothed = s.recent.iter().sum::<f64>() / s.recent.len() as f64;
        Reading { sensor_value: value, sensor_value_smoothed: smoothed, direction: if step >= 0 { 1 } else { -1 } }
    }

    /// One second of readings from every sensor, appended to `batch` as rows of `table`.
    pub fn tick(&mut self, table: &str, batch: &mut WriteBatch) {
        for i in 0..self.sensors.len() {
            let r = self.next_reading(i);
            let mut p = Point::new(self.time_ns);
            p.tags = self.sensors[i].tags.to_vec();
            p.fields = vec![
                ("sensor_value".into(), FieldValue::F64(r.sensor_value)),
                ("sensor_value_smoothed".into(), FieldValue::F64(r.sensor_value_smoothed)),
                ("direction".into(), FieldValue::I64(r.direction)),
            ];
            batch.push(table, p);
        }
        self.time_ns += 1_000_000_000;
    }
}
