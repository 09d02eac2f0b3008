//! The four synthetic streams of the mission: clicks, IoT readings, payments, device profiles.
//!
//! Every event is a pure function of `(seed, index)`; distributions are skewed the way real
//! traffic is (a few heavy users and popular products, a few faulty sensors that overheat, a
//! few fraudsters whose payments keep failing).

use std::f64::consts::TAU;
use std::sync::{Arc, OnceLock};

use weir_engine::data::{DataType, Field, RowBuilder, Schema, SchemaRef};

use super::rng::Rng;

/// Which stream to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Web clicks.
    Clicks,
    /// IoT sensor readings.
    Iot,
    /// Card payments.
    Payments,
    /// Device profile updates (a dimension).
    DeviceProfiles,
}

impl StreamKind {
    /// Every stream.
    pub const ALL: [StreamKind; 4] = [
        StreamKind::Clicks,
        StreamKind::Iot,
        StreamKind::Payments,
        StreamKind::DeviceProfiles,
    ];

    /// Parses a stream name.
    pub fn parse(name: &str) -> Option<StreamKind> {
        Some(match name {
            "clicks" => StreamKind::Clicks,
            "iot" => StreamKind::Iot,
            "payments" => StreamKind::Payments,
            "device_profiles" => StreamKind::DeviceProfiles,
            _ => return None,
        })
    }

    /// The stream's name.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Clicks => "clicks",
            StreamKind::Iot => "iot",
            StreamKind::Payments => "payments",
            StreamKind::DeviceProfiles => "device_profiles",
        }
    }

    /// The event-time column.
    pub fn time_column(self) -> &'static str {
        match self {
            StreamKind::DeviceProfiles => "updated_at",
            _ => "ts",
        }
    }

    /// The stream's schema (the event-time column is required).
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 4]> = OnceLock::new();
        let schemas = SCHEMAS.get_or_init(|| {
            let s = |fields: Vec<Field>| Arc::new(Schema::new(fields).expect("static schema"));
            use DataType::*;
            [
                s(vec![
                    Field::new("user_id", String),
                    Field::new("session_id", String),
                    Field::new("device_id", String),
                    Field::new("page_url", String),
                    Field::new("event_type", String),
                    Field::new("product_id", String),
                    Field::new("price", Float),
                    Field::required("ts", Timestamp),
                ]),
                s(vec![
                    Field::new("device_id", String),
                    Field::new("temperature", Float),
                    Field::new("humidity", Float),
                    Field::new("location", String),
                    Field::required("ts", Timestamp),
                ]),
                s(vec![
                    Field::new("payment_id", String),
                    Field::new("user_id", String),
                    Field::new("amount", Float),
                    Field::new("currency", String),
                    Field::new("status", String),
                    Field::new("merchant", String),
                    Field::required("ts", Timestamp),
                ]),
                s(vec![
                    Field::new("device_id", String),
                    Field::new("user_id", String),
                    Field::new("model", String),
                    Field::new("location", String),
                    Field::required("updated_at", Timestamp),
                ]),
            ]
        });
        schemas[self as usize].clone()
    }
}

/// How many distinct users, devices, products and merchants the streams draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cardinalities {
    /// Distinct users.
    pub users: u64,
    /// Distinct devices.
    pub devices: u64,
    /// Distinct products.
    pub products: u64,
    /// Distinct merchants.
    pub merchants: u64,
}

impl Default for Cardinalities {
    fn default() -> Self {
        Cardinalities {
            users: 10_000,
            devices: 5_000,
            products: 1_000,
            merchants: 500,
        }
    }
}

const CITIES: [&str; 12] = [
    "Amsterdam",
    "Berlin",
    "Chicago",
    "Delhi",
    "Lagos",
    "Lima",
    "London",
    "Madrid",
    "Osaka",
    "Paris",
    "Sydney",
    "Toronto",
];
const MODELS: [&str; 8] = [
    "Pixel 8",
    "Pixel 9",
    "iPhone 15",
    "iPhone 16",
    "Galaxy S24",
    "Galaxy A55",
    "Xperia 10",
    "Nokia X30",
];

/// Interned identifiers, so generating an event copies strings instead of formatting them.
#[derive(Debug)]
pub struct Pools {
    users: Vec<String>,
    devices: Vec<String>,
    products: Vec<String>,
    product_pages: Vec<String>,
    merchants: Vec<String>,
}

impl Pools {
    /// Builds the identifier pools.
    pub fn new(c: Cardinalities) -> Self {
        let ids = |prefix: &str, n: u64, width: usize| -> Vec<String> {
            (0..n.max(1))
                .map(|i| format!("{prefix}{i:0width$}"))
                .collect()
        };
        let products = ids("p", c.products, 4);
        Pools {
            users: ids("u", c.users, 6),
            devices: ids("d", c.devices, 5),
            product_pages: products.iter().map(|p| format!("/product/{p}")).collect(),
            products,
            merchants: ids("m", c.merchants, 4),
        }
    }
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// Fills `b` with the values of event `index` of `kind` at event time `ts`.
pub fn fill_row(
    kind: StreamKind,
    index: u64,
    ts: i64,
    rng: &mut Rng,
    pools: &Pools,
    scratch: &mut String,
    b: &mut RowBuilder,
) {
    let users = pools.users.len() as u64;
    let devices = pools.devices.len() as u64;
    match kind {
        StreamKind::Clicks => {
            let user = rng.skewed(users);
            let user_id = &pools.users[user as usize];
            let device = (user.wrapping_mul(2_654_435_761)) % devices;
            let product = rng.skewed(pools.products.len() as u64) as usize;
            let r = rng.unit();
            let (event_type, page) = if r < 0.70 {
                let home = rng.chance(0.1);
                (
                    "view",
                    if home {
                        "/"
                    } else {
                        pools.product_pages[product].as_str()
                    },
                )
            } else if r < 0.90 {
                ("click", pools.product_pages[product].as_str())
            } else if r < 0.97 {
                ("add_to_cart", "/cart")
            } else {
                ("purchase", "/checkout")
            };
            scratch.clear();
            scratch.push_str(user_id);
            scratch.push('-');
            scratch.push_str(itoa::Buffer::new().format(ts.div_euclid(1_800_000)));
            b.set_str(0, user_id);
            b.set_str(1, scratch);
            b.set_str(2, &pools.devices[device as usize]);
            b.set_str(3, page);
            b.set_str(4, event_type);
            b.set_str(5, &pools.products[product]);
            // The catalogue price of the product: fixed per product, no random draw.
            let cents = 499 + (product as u64).wrapping_mul(7_919) % 49_500;
            b.set_float(6, cents as f64 / 100.0);
            b.set_ts(7, ts);
        }
        StreamKind::Iot => {
            let device = rng.below(devices);
            let day = 86_400_000.0;
            let phase = (device % 24) as f64 / 24.0;
            let daily = (TAU * (ts.rem_euclid(86_400_000) as f64 / day + phase)).sin();
            let mut temperature = 18.0 + (device % 13) as f64 + 4.0 * daily + 0.5 * rng.normal();
            // One device in 97 is faulty: it overheats for ten minutes in every hour.
            if device.is_multiple_of(97) && (ts.div_euclid(600_000) + device as i64) % 6 == 0 {
                temperature += 60.0 + 5.0 * rng.unit();
            }
            let humidity = (55.0 - 15.0 * daily + 5.0 * rng.normal()).clamp(5.0, 95.0);
            b.set_str(0, &pools.devices[device as usize]);
            b.set_float(1, round_to(temperature, 2));
            b.set_float(2, round_to(humidity, 1));
            b.set_str(3, CITIES[(device % CITIES.len() as u64) as usize]);
            b.set_ts(4, ts);
        }
        StreamKind::Payments => {
            let user = rng.skewed(users);
            // About one user in 211 is a fraudster: most of their payments fail.
            let fail_rate = if user % 211 == 3 { 0.6 } else { 0.03 };
            let failed = rng.chance(fail_rate);
            let amount = if rng.chance(0.001) {
                5_000.0 + 45_000.0 * rng.unit()
            } else {
                (3.5 + 1.1 * rng.normal()).exp()
            };
            let c = rng.unit();
            let currency = if c < 0.60 {
                "USD"
            } else if c < 0.85 {
                "EUR"
            } else if c < 0.95 {
                "GBP"
            } else {
                "JPY"
            };
            let merchant = rng.skewed(pools.merchants.len() as u64) as usize;
            scratch.clear();
            scratch.push_str("pay-");
            let digits = itoa::Buffer::new().format(index).len();
            for _ in digits..12 {
                scratch.push('0');
            }
            scratch.push_str(itoa::Buffer::new().format(index));
            b.set_str(0, scratch);
            b.set_str(1, &pools.users[user as usize]);
            b.set_float(2, round_to(amount, 2));
            b.set_str(3, currency);
            b.set_str(4, if failed { "FAILED" } else { "SUCCESS" });
            b.set_str(5, &pools.merchants[merchant]);
            b.set_ts(6, ts);
        }
        StreamKind::DeviceProfiles => {
            let device = rng.below(devices);
            // Each pass over the devices is a new version of the profile.
            let version = index / devices;
            let user = (device.wrapping_mul(31) + version) % users;
            b.set_str(0, &pools.devices[device as usize]);
            b.set_str(1, &pools.users[user as usize]);
            b.set_str(
                2,
                MODELS[((device + version) % MODELS.len() as u64) as usize],
            );
            b.set_str(
                3,
                CITIES[((device + version / 3) % CITIES.len() as u64) as usize],
            );
            b.set_ts(4, ts);
        }
    }
}
