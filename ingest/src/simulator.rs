//! The fleet simulator: seed-shaped readings, as the weather fleet in the seed talk publishes them.
//!
//! Each series has five tags (`state`, `city`, `station_id`, `sensor`, `sensor_id`) and one
//! reading per second: `sensor_value`, with four decimals; `sensor_value_smoothed`, its
//! 10-reading moving average at full precision; and `direction`, +1 or -1 as the value rose or
//! fell. The generator is deterministic for a seed.
//!
//! The values are plausible for each sensor type, so that a demo's charts and a newcomer's
//! first queries look like weather: temperature in °C with a daily cycle (coolest before dawn,
//! warmest mid-afternoon, local time on the US west coast) around the city's mean; relative
//! humidity in % (20 to 100), high when it is cool; pressure in hPa drifting around 1013 (980 to
//! 1045); wind speed in m/s (never negative), gustier by day; rain in mm/h, 0 most of the time,
//! with showers that start and stop. Each has noise that wanders and returns (an AR(1)
//! process), so no value runs away however long the fleet runs.

use isobar_storage::{FieldValue, Point, WriteBatch};

use crate::rule::{RuleSpec, TimeUnit};

const SENSORS: [&str; 5] = ["temperature", "humidity", "pressure", "wind_speed", "rain"];
/// State, city, and the city's mean temperature in °C.
const STATES: [(&str, &str, f64); 4] = [("wa", "seattle", 11.5), ("or", "portland", 12.5), ("ca", "oakland", 15.0), ("nv", "reno", 11.0)];
const WINDOW: usize = 10;
/// The stations' offset from UTC (US Pacific standard time), in hours.
const UTC_OFFSET_HOURS: f64 = -8.0;
/// Chance per second that a dry sensor's rain starts, and that a shower stops.
const RAIN_STARTS_PER_S: f64 = 1.0 / 7_200.0;
const RAIN_STOPS_PER_S: f64 = 1.0 / 900.0;

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
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[-1, 1)`.
    fn signed(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }
}

/// What a sensor measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Temperature,
    Humidity,
    Pressure,
    WindSpeed,
    Rain,
}

impl Kind {
    fn of(j: usize) -> Kind {
        [Kind::Temperature, Kind::Humidity, Kind::Pressure, Kind::WindSpeed, Kind::Rain][j % SENSORS.len()]
    }
}

/// One sensor's state.
#[derive(Debug, Clone)]
struct Sensor {
    tags: [(String, String); 5],
    kind: Kind,
    /// The city's mean temperature, °C.
    mean_c: f64,
    /// Noise that wanders and returns to 0 (an AR(1) process).
    wander: f64,
    /// Rain intensity while it rains, mm/h; `None` while dry.
    shower: Option<f64>,
    last_e4: i64,
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
            let (state, city, mean_c) = STATES[station_no % STATES.len()];
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
                    kind: Kind::of(j),
                    // Stations of one city differ by up to a degree.
                    mean_c: mean_c + rng.signed(),
                    wander: rng.signed(),
                    shower: None,
                    last_e4: 0,
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

    /// The next reading of sensor `i`, at the fleet's time (advanced by [`SeedFleet::tick`]).
    pub fn next_reading(&mut self, i: usize) -> Reading {
        let local_hours = (self.time_ns as f64 / 3.6e12 + UTC_OFFSET_HOURS).rem_euclid(24.0);
        // -1 at 03:00, +1 at 15:00.
        let daily = (std::f64::consts::TAU * (local_hours - 9.0) / 24.0).sin();
        let (noise, draw) = (self.rng.signed(), self.rng.unit());
        let s = &mut self.sensors[i];
        let value = match s.kind {
            Kind::Temperature => {
                s.wander = 0.995 * s.wander + 0.05 * noise;
                s.mean_c + 6.0 * daily + 1.5 * s.wander
            }
            Kind::Humidity => {
                s.wander = 0.995 * s.wander + 0.05 * noise;
                (68.0 - 18.0 * daily + 8.0 * s.wander).clamp(20.0, 100.0)
            }
            Kind::Pressure => {
                s.wander = 0.9995 * s.wander + 0.01 * noise;
                (1013.0 + 12.0 * s.wander).clamp(980.0, 1045.0)
            }
            Kind::WindSpeed => {
                s.wander = 0.98 * s.wander + 0.15 * noise;
                (3.5 + 1.5 * daily + 2.5 * s.wander).max(0.0)
            }
            Kind::Rain => {
                s.shower = match s.shower {
                    None if draw < RAIN_STARTS_PER_S => Some(0.5 + 4.0 * draw / RAIN_STARTS_PER_S),
                    Some(_) if draw < RAIN_STOPS_PER_S => None,
                    Some(rate) => Some((rate + 0.2 * noise).clamp(0.1, 30.0)),
                    None => None,
                };
                s.shower.unwrap_or(0.0)
            }
        };
        // Four decimals, as the seed's devices send.
        let value_e4 = (value * 10_000.0).round() as i64;
        let rose = s.recent.is_empty() || value_e4 >= s.last_e4;
        s.last_e4 = value_e4;
        let value = value_e4 as f64 / 10_000.0;
        if s.recent.len() == WINDOW {
            s.recent.remove(0);
        }
        s.recent.push(value);
        let smoothed = s.recent.iter().sum::<f64>() / s.recent.len() as f64;
        Reading { sensor_value: value, sensor_value_smoothed: smoothed, direction: if rose { 1 } else { -1 } }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two simulated days of every sensor type: each stays in its plausible range, and the
    /// temperature is warmer mid-afternoon than before dawn.
    #[test]
    fn readings_are_plausible_weather_for_their_sensor_type() {
        // 2024-01-01T00:00:00Z.
        let start_ns = 1_704_067_200_000_000_000;
        let mut fleet = SeedFleet::stations(0..4, 5, start_ns, 9);
        let (mut dawn, mut afternoon) = (Vec::new(), Vec::new());
        let mut rained = 0;
        for second in 0..2 * 86_400 {
            for i in 0..fleet.series() {
                let r = fleet.next_reading(i);
                let v = r.sensor_value;
                let sensor = fleet.sensors[i].kind;
                match sensor {
                    Kind::Temperature => assert!((-5.0..35.0).contains(&v), "temperature {v}"),
                    Kind::Humidity => assert!((20.0..=100.0).contains(&v), "humidity {v}"),
                    Kind::Pressure => assert!((980.0..=1045.0).contains(&v), "pressure {v}"),
                    Kind::WindSpeed => assert!((0.0..40.0).contains(&v), "wind speed {v}"),
                    Kind::Rain => {
                        assert!((0.0..=30.0).contains(&v), "rain {v}");
                        rained += usize::from(v > 0.0);
                    }
                }
                assert_eq!(v, (v * 10_000.0).round() / 10_000.0, "four decimals");
                // Local time is UTC-8: 03:00 local is 11:00 UTC, 15:00 local is 23:00 UTC.
                let utc_hour = second / 3_600 % 24;
                if sensor == Kind::Temperature {
                    match utc_hour {
                        11 => dawn.push(v),
                        23 => afternoon.push(v),
                        _ => {}
                    }
                }
            }
            fleet.time_ns += 1_000_000_000;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&afternoon) > mean(&dawn) + 8.0, "afternoon {} dawn {}", mean(&afternoon), mean(&dawn));
        assert!(rained > 0 && rained < 4 * 86_400, "it rains sometimes: {rained} wet seconds");
    }

    #[test]
    fn the_same_seed_gives_the_same_readings() {
        let mut a = SeedFleet::new(10, 0, 5);
        let mut b = SeedFleet::new(10, 0, 5);
        for i in 0..1_000 {
            assert_eq!(a.next_reading(i % 10), b.next_reading(i % 10));
        }
    }
}
