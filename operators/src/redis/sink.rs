//! The Redis sink: a [`TwoPhase`] sink whose writes are versioned compare-and-sets.
//!
//! Every write carries a version `(generation, batch, event time)`: the generation of the job's
//! lineage (a fresh run starts a new one; a restored run keeps the one of its checkpoint), the
//! batch id (its checkpoint epoch; ids only grow within a lineage) and the row's event time. A
//! Lua script applies it only if no newer version is stored — so committing a batch again
//! after a crash, or a replay, never puts an older value over a newer one:
//!
//! - `hash`: the row's columns as fields, the version in field `__weir_version`;
//! - `string`: the value at the key, the version at `<key>:__weir_version` (same TTL);
//! - `sorted_set`: `ZADD key score member`, versions per member in hash `<key>:__weir_versions`;
//! - `stream`: `XADD key * column value ...`; entries are appended once per batch and writer,
//!   recorded in hash `<key>:__weir_writers`.
//!
//! Each batch goes out as one pipeline of `EVALSHA` calls. Batches are staged in checkpoints,
//! so recovery is committing them again.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use weir_engine::data::{encode_row, TimestampFormat, Value};
use weir_engine::event::{Epoch, Event};
use weir_engine::io::block_on_for;

use super::{render_value, RedisMode, Template};
use crate::expr::Expr;
use crate::sink::TwoPhase;

/// How many times a batch is attempted before the job fails.
const ATTEMPTS: u32 = 5;

/// `newer(g, e, t, stored)`: whether version `g e t` is at least the stored `"g e t"` text.
const NEWER: &str = r"
local function newer(g, e, t, stored)
  if not stored then return true end
  local sg, se, st = string.match(stored, '^(%d+) (%d+) (%-?%d+)$')
  if not sg then return true end
  sg, se, st = tonumber(sg), tonumber(se), tonumber(st)
  if g ~= sg then return g > sg end
  if e ~= se then return e > se end
  return t >= st
end
local g, e, t = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local version = ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3]
";

/// KEYS: hash. ARGV: g e t ttl_ms field value ...
const HASH: &str = r"
if not newer(g, e, t, redis.call('HGET', KEYS[1], '__weir_version')) then return 0 end
redis.call('HSET', KEYS[1], '__weir_version', version, unpack(ARGV, 5))
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
";

/// KEYS: key, version key. ARGV: g e t ttl_ms value
const STRING: &str = r"
if not newer(g, e, t, redis.call('GET', KEYS[2])) then return 0 end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[4])
  redis.call('SET', KEYS[2], version, 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[5])
  redis.call('SET', KEYS[2], version)
end
return 1
";

/// KEYS: sorted set, versions hash. ARGV: g e t score member
const SORTED_SET: &str = r"
if not newer(g, e, t, redis.call('HGET', KEYS[2], ARGV[5])) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[5], version)
return 1
";

/// KEYS: stream, writers hash. ARGV: g e t writer fields-per-entry field value ...
/// Appends are not idempotent: a batch the writer has marked (the same one included) is
/// skipped; the mark's third number is always 0, so `newer(g, e, -1, mark)` is `(g, e) > mark`.
const STREAM: &str = r"
if not newer(g, e, -1, redis.call('HGET', KEYS[2], ARGV[4])) then return 0 end
local n = 2 * tonumber(ARGV[5])
local i = 6
while i <= #ARGV do
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + n - 1))
  i = i + n
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[1] .. ' ' .. ARGV[2] .. ' 0')
return 1
";

/// A Redis sink.
#[derive(Clone, Debug)]
pub struct RedisSinkConfig {
    /// Sink name.
    pub name: String,
    /// The job (names stream writers).
    pub job: String,
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// How rows are written.
    pub mode: RedisMode,
    /// The key of each row.
    pub key: Template,
    /// Column names of the rows.
    pub columns: Vec<String>,
    /// Timestamp encoding in values and keys.
    pub format: TimestampFormat,
    /// Expiry of hash and string keys.
    pub ttl: Option<Duration>,
    /// `sorted_set`: the member of each row.
    pub member: Option<Template>,
    /// `sorted_set`: the score of each row.
    pub score: Option<Expr>,
    /// `string`: the value of each row (default: the row as JSON).
    pub value: Option<Expr>,
    /// Bound on connecting and on one batch.
    pub timeout: Duration,
}

/// One write of a batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Write {
    key: String,
    ts: i64,
    op: Op,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Op {
    /// One value per column of the sink, in order.
    Hash(Vec<String>),
    Set(String),
    Score {
        member: String,
        score: f64,
    },
    /// One value per column of the sink, in order.
    Entry(Vec<String>),
}

/// The SHA1s of the loaded scripts.
struct Scripts {
    hash: String,
    string: String,
    sorted_set: String,
    stream: String,
}

/// The Redis sink's side of the two-phase contract.
pub struct RedisCommitter {
    config: RedisSinkConfig,
    worker: usize,
    generation: u64,
    connection: Option<(ConnectionManager, Scripts)>,
}

impl RedisCommitter {
    /// The committer of `worker`, writing versions of lineage `generation`. Connects now, so
    /// that a server that is not there is an error before the job starts.
    pub fn new(config: RedisSinkConfig, worker: usize, generation: u64) -> Result<Self, String> {
        let mut committer = RedisCommitter {
            config,
            worker,
            generation,
            connection: None,
        };
        committer.connect()?;
        Ok(committer)
    }

    fn context(&self) -> String {
        format!("sink `{}` (Redis at {})", self.config.name, self.config.url)
    }

    fn connect(&mut self) -> Result<(), String> {
        if self.connection.is_some() {
            return Ok(());
        }
        let client = redis::Client::open(self.config.url.as_str())
            .map_err(|e| format!("{}: bad URL: {e}", self.context()))?;
        let connected = block_on_for(self.config.timeout, async {
            let mut manager = ConnectionManager::new(client).await?;
            let mut scripts = Vec::new();
            for body in [HASH, STRING, SORTED_SET, STREAM] {
                let sha: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(format!("{NEWER}{body}"))
                    .query_async(&mut manager)
                    .await?;
                scripts.push(sha);
            }
            Ok::<_, redis::RedisError>((manager, scripts))
        });
        let (manager, mut shas) = match connected {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(format!("{}: {e}", self.context())),
            None => {
                return Err(format!(
                    "{}: no answer within {:?}",
                    self.context(),
                    self.config.timeout
                ))
            }
        };
        let stream = shas.pop().expect("four scripts");
        let sorted_set = shas.pop().expect("four scripts");
        let string = shas.pop().expect("four scripts");
        let hash = shas.pop().expect("four scripts");
        self.connection = Some((
            manager,
            Scripts {
                hash,
                string,
                sorted_set,
                stream,
            },
        ));
        Ok(())
    }

    /// Applies batch `id` of `writer`, retrying what failed (a lost connection, a restarted
    /// server that forgot the scripts); the writes are idempotent.
    fn apply(&mut self, writer: usize, id: Epoch, batch: &[Write]) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self
                .connect()
                .and_then(|()| self.attempt(writer, id, batch))
            {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(
                        "{}: batch {id} not written (attempt {attempt} of {ATTEMPTS}): {e}",
                        self.context()
                    );
                    last = e;
                    self.connection = None;
                    std::thread::sleep(Duration::from_millis(200 * attempt as u64));
                }
            }
        }
        Err(format!(
            "{}: batch {id} failed {ATTEMPTS} times; the last error: {last}",
            self.context()
        ))
    }

    fn attempt(&mut self, writer: usize, id: Epoch, batch: &[Write]) -> Result<(), String> {
        let (manager, scripts) = self.connection.as_mut().expect("connected");
        let (g, e) = (self.generation.to_string(), id.to_string());
        let ttl = self
            .config
            .ttl
            .map_or(0, |t| t.as_millis() as u64)
            .to_string();
        let mut pipe = redis::pipe();
        // Stream entries go per key, in one script call each, with the writer's mark.
        let mut entries: BTreeMap<&str, Vec<&Vec<String>>> = BTreeMap::new();
        let columns = &self.config.columns;
        for w in batch {
            let t = w.ts.to_string();
            match &w.op {
                Op::Hash(fields) => {
                    let cmd = pipe.cmd("EVALSHA").arg(&scripts.hash).arg(1).arg(&w.key);
                    cmd.arg(&g).arg(&e).arg(&t).arg(&ttl);
                    for (f, v) in columns.iter().zip(fields) {
                        cmd.arg(f).arg(v);
                    }
                }
                Op::Set(value) => {
                    pipe.cmd("EVALSHA")
                        .arg(&scripts.string)
                        .arg(2)
                        .arg(&w.key)
                        .arg(format!("{}:__weir_version", w.key))
                        .arg(&g)
                        .arg(&e)
                        .arg(&t)
                        .arg(&ttl)
                        .arg(value);
                }
                Op::Score { member, score } => {
                    pipe.cmd("EVALSHA")
                        .arg(&scripts.sorted_set)
                        .arg(2)
                        .arg(&w.key)
                        .arg(format!("{}:__weir_versions", w.key))
                        .arg(&g)
                        .arg(&e)
                        .arg(&t)
                        .arg(score.to_string())
                        .arg(member);
                }
                Op::Entry(fields) => entries.entry(&w.key).or_default().push(fields),
            }
        }
        let writer_name = format!("{}/{}/w{writer}", self.config.job, self.config.name);
        for (key, rows) in entries {
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(&scripts.stream)
                .arg(2)
                .arg(key)
                .arg(format!("{key}:__weir_writers"))
                .arg(&g)
                .arg(&e)
                .arg(0)
                .arg(&writer_name)
                .arg(columns.len());
            for fields in rows {
                for (f, v) in columns.iter().zip(fields) {
                    cmd.arg(f).arg(v);
                }
            }
        }
        let result = block_on_for(self.config.timeout, async {
            pipe.query_async::<Vec<i64>>(manager).await
        });
        match result {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err(format!("no answer within {:?}", self.config.timeout)),
        }
    }
}

impl TwoPhase for RedisCommitter {
    type Record = Event;

    fn event_time(record: &Event) -> Option<i64> {
        Some(record.ts)
    }
    type Item = Write;
    type Prepared = Vec<Write>;

    fn item(&mut self, event: Event) -> Result<Write, String> {
        let c = &self.config;
        let row = &event.row;
        let key = c.key.render(row, c.format);
        // Values only: the column names come from the sink's config when the batch goes out.
        let fields = || {
            (0..c.columns.len())
                .map(|i| {
                    let mut v = String::new();
                    render_value(&row.get(i), c.format, &mut v);
                    v
                })
                .collect::<Vec<_>>()
        };
        let op = match c.mode {
            RedisMode::Hash => Op::Hash(fields()),
            RedisMode::Stream => Op::Entry(fields()),
            RedisMode::String => Op::Set(match &c.value {
                Some(expr) => {
                    let mut v = String::new();
                    render_value(&expr.eval(row), c.format, &mut v);
                    v
                }
                None => {
                    let mut line = String::new();
                    encode_row(row, &c.columns, c.format, &mut line);
                    line
                }
            }),
            RedisMode::SortedSet => {
                let member = c
                    .member
                    .as_ref()
                    .map(|m| m.render(row, c.format))
                    .unwrap_or_default();
                let score = match c.score.as_ref().map(|s| s.eval(row)) {
                    Some(Value::Int(i)) => i as f64,
                    Some(Value::Float(f)) => f,
                    Some(Value::Ts(ms)) => ms as f64,
                    other => {
                        return Err(format!(
                            "the score of member `{member}` of `{key}` is {}, not a number",
                            other.map_or("missing".to_string(), |v| v.to_string())
                        ))
                    }
                };
                Op::Score { member, score }
            }
        };
        Ok(Write {
            key,
            ts: event.ts,
            op,
        })
    }

    fn prepare(&mut self, _id: Epoch, items: Vec<Write>) -> Result<Vec<Write>, String> {
        Ok(items)
    }

    fn commit(&mut self, id: Epoch, batch: &Vec<Write>) -> Result<(), String> {
        self.apply(self.worker, id, batch)
    }

    fn recover(&mut self, owner: usize, batches: Vec<(Epoch, Vec<Write>)>) -> Result<(), String> {
        // Idempotent: what was applied before the crash is not newer than itself.
        let n = batches.len();
        for (id, batch) in batches {
            self.apply(owner, id, &batch)?;
        }
        tracing::info!(
            "sink `{}`: applied {n} batch(es) of worker {owner} again after the restore",
            self.config.name
        );
        Ok(())
    }
}
