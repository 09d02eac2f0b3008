//! Helpers shared by weir's end-to-end tests (`tests/tests/`, `cluster/tests/`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;

use weir_engine::stats::JobStats;
use weir_jobs::run::{run, RunOptions, RunSummary};

/// Validates `spec` and runs it in this process with `workers` threads.
pub fn run_spec(spec: &str, workers: usize) -> RunSummary {
    let plan =
        weir_jobs::load_spec(spec, &[]).unwrap_or_else(|e| panic!("invalid spec:\n{e}\n{spec}"));
    run(
        Arc::new(plan),
        RunOptions::local(workers),
        Arc::new(JobStats::default()),
    )
    .unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// The lines of a file (empty when it does not exist).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The lines of a file, parsed as JSON objects.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    lines(path)
        .iter()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad JSON line {l}: {e}", path.display()))
        })
        .collect()
}

/// Every file of `dir` (name → content), for comparing the whole output of two runs.
pub fn read_dir(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("dir entry"))
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().to_string(),
                        std::fs::read_to_string(e.path()).expect("read"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A TCP port that was free a moment ago, on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A Kafka-protocol broker (noida-db) on a free loopback port, stopped when dropped.
///
/// The binary is `$WEIR_NOIDA`, else `~/.cache/weir-tools/venv/bin/noida-db` (where
/// `scripts/test.sh` installs it), else `noida-db` on the `PATH`.
pub struct KafkaBroker {
    child: Option<std::process::Child>,
    port: u16,
    dir: tempfile::TempDir,
    binary: std::path::PathBuf,
}

impl KafkaBroker {
    /// The noida server: `$WEIR_NOIDA`, else the one `scripts/test.sh` installs. A Python
    /// launcher is resolved to the server it starts, because the launcher answers Ctrl-C by
    /// killing the server before it has written its data.
    fn binary() -> std::path::PathBuf {
        let path = match std::env::var_os("WEIR_NOIDA") {
            Some(p) => std::path::PathBuf::from(p),
            None => {
                let home = std::env::var_os("HOME")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_default();
                home.join(".cache/weir-tools/venv/bin/noida-db")
            }
        };
        let launcher = std::fs::read(&path)
            .map(|b| b.starts_with(b"#!"))
            .unwrap_or(false);
        if !launcher {
            return path;
        }
        let python = path.with_file_name("python");
        let found = std::process::Command::new(&python)
            .args(["-c", "from importlib.resources import files; print(files('noida_db').joinpath('noida-db'))"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        found.unwrap_or(path)
    }

    /// Starts a broker and waits (at most 30 s) until it answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = KafkaBroker {
            child: None,
            port: free_port(),
            dir,
            binary: Self::binary(),
        };
        broker.restart();
        broker
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker as Ctrl-C would (it writes its data to disk first), killing it if it
    /// has not stopped within 10 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(&child, "CONT");
            self.signal(&child, "INT");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            if child.try_wait().ok().flatten().is_none() {
                self.signal(&child, "KILL");
            }
            let _ = child.wait();
        }
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing is answered.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            self.signal(child, "STOP");
        }
    }

    /// Thaws a paused broker.
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            self.signal(child, "CONT");
        }
    }

    /// Signals the broker's process group (the launcher script and the server itself).
    fn signal(&self, child: &std::process::Child, signal: &str) {
        let _ = std::process::Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Starts the broker again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("broker.log")).expect("log file");
        let child = std::process::Command::new(&self.binary)
            .process_group(0)
            .args(["start", "--only", "kafka", "--host", "127.0.0.1"])
            .arg("--kafka-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the Kafka broker `{}` ({e}): run `bash scripts/test.sh`, which installs it, or set WEIR_NOIDA",
                    self.binary.display()
                )
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if std::time::Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
                panic!(
                    "the Kafka broker did not listen on {} within 30 s; its log:\n{log}",
                    self.bootstrap()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `redis-server` (Debian's) on a free loopback port, without persistence, stopped when
/// dropped.
pub struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    /// Starts a server and waits (at most 10 s) until it answers `PING`.
    pub fn start() -> Self {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) is needed: run scripts/test.sh");
        let server = RedisServer { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while server.command(&["PING"]).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer on port {port} within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }

    /// `redis://127.0.0.1:PORT/DB`.
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Runs one command with `redis-cli` (an independent client) and returns its output
    /// lines (`--no-raw` off: plain values, one per line).
    pub fn cli(&self, db: u32, args: &[&str]) -> Vec<String> {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "-n", &db.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (Debian package redis-tools) is needed: run scripts/test.sh");
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    /// Everything in database `db` as sorted text lines (`key type contents`), gathered by
    /// one Lua script run through `redis-cli`. Left out: stream entry ids (arrival times) and
    /// weir's version bookkeeping (`__weir_*` fields and keys, which name runs and epochs).
    pub fn dump(&self, db: u32) -> Vec<String> {
        const DUMP: &str = r"
local out = {}
local keys = redis.call('KEYS', '*')
table.sort(keys)
for _, k in ipairs(keys) do
  if not string.find(k, ':__weir_', 1, true) then
    local t = redis.call('TYPE', k)['ok']
    local items = {}
    if t == 'hash' then
      local h = redis.call('HGETALL', k)
      for i = 1, #h, 2 do
        if h[i] ~= '__weir_version' then table.insert(items, h[i] .. '=' .. h[i + 1]) end
      end
    elseif t == 'string' then
      table.insert(items, redis.call('GET', k))
    elseif t == 'zset' then
      local z = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
      for i = 1, #z, 2 do table.insert(items, z[i] .. '=' .. z[i + 1]) end
    elseif t == 'stream' then
      for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do
        table.insert(items, table.concat(e[2], ' '))
      end
    end
    table.sort(items)
    table.insert(out, k .. ' ' .. t .. ' ' .. table.concat(items, ' | '))
  end
end
return table.concat(out, '\n')
";
        self.cli(db, &["EVAL", DUMP, "0"])
    }

    fn command(&self, args: &[&str]) -> Result<(), String> {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        (n > 0 && buf[0] == b'+')
            .then_some(())
            .ok_or_else(|| "no reply".to_string())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Iceberg table as PyIceberg (an independent implementation) reads it.
pub struct IcebergRead {
    /// The rows, timestamps as milliseconds, sorted.
    pub rows: Vec<serde_json::Value>,
    /// The snapshots in commit order: `{id, parent, summary}`.
    pub snapshots: Vec<serde_json::Value>,
    /// The partition spec: `{name, transform, source_id}` per field.
    pub spec: Vec<serde_json::Value>,
    /// The data files the current snapshot reads.
    pub files: Vec<String>,
}

impl IcebergRead {
    /// The rows as canonical JSON text (keys sorted), sorted: for comparing tables.
    pub fn canonical_rows(&self) -> Vec<String> {
        canonical(&self.rows)
    }
}

/// Rows as canonical JSON text (keys sorted), sorted.
pub fn canonical(rows: &[serde_json::Value]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            let sorted: std::collections::BTreeMap<&String, &serde_json::Value> =
                r.as_object().expect("a row").iter().collect();
            serde_json::to_string(&sorted).expect("JSON")
        })
        .collect();
    out.sort();
    out
}

/// An Iceberg REST catalog on a free loopback port (`py/rest_catalog.py`: the REST protocol in
/// front of PyIceberg's SQL catalog on `catalog_db`, named `catalog_name`), stopped on drop.
/// Tables it holds read back with [`read_iceberg`] on the same file and name.
pub struct RestCatalog {
    child: std::process::Child,
    port: u16,
}

impl RestCatalog {
    /// Starts the catalog and waits (at most 30 s) until it listens.
    pub fn start(catalog_db: &Path, catalog_name: &str, warehouse: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/rest_catalog.py");
        let port_file = catalog_db.with_extension("port");
        let _ = std::fs::remove_file(&port_file);
        let mut child = std::process::Command::new(python())
            .arg(&script)
            .arg(catalog_db)
            .args([catalog_name, warehouse])
            .arg(&port_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (the REST catalog): {e}", python()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                return RestCatalog { child, port };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the REST catalog exited at start: {status}");
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the REST catalog did not listen within 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for RestCatalog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3-protocol server (moto's `moto_server`, PyPI) on a free loopback port, stopped when
/// dropped. The binary is `$WEIR_MOTO_SERVER`, else the tools venv's (scripts/test.sh).
pub struct S3Server {
    child: std::process::Child,
    port: u16,
}

impl S3Server {
    /// Starts the server and waits (at most 30 s) until it listens.
    pub fn start() -> Self {
        let server = std::env::var("WEIR_MOTO_SERVER").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            format!("{home}/.cache/weir-tools/venv/bin/moto_server")
        });
        let port = free_port();
        let child = std::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{server}: {e} (scripts/test.sh installs moto[server])"));
        let server = S3Server { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }

    /// Creates `bucket` (an unsigned PUT, which moto accepts).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            c,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .expect("write");
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// The environment an S3 client of this server needs (`AWS_*`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "weir".into()),
            ("AWS_SECRET_ACCESS_KEY", "weir".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python with PyIceberg: `WEIR_PYTHON` (scripts/test.sh sets it) or the tools venv.
fn python() -> String {
    std::env::var("WEIR_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/weir-tools/venv/bin/python")
    })
}

/// Reads `table` (`namespace.table`) of the SQL catalog `catalog_db` (a SQLite file) named
/// `catalog_name`, with PyIceberg, in at most a minute.
pub fn read_iceberg(
    catalog_db: &Path,
    catalog_name: &str,
    warehouse: &str,
    table: &str,
) -> IcebergRead {
    read_iceberg_with(catalog_db, catalog_name, warehouse, table, &[])
}

/// [`read_iceberg`] with extra environment (`AWS_*` for an S3 warehouse, see
/// [`S3Server::env`]).
pub fn read_iceberg_with(
    catalog_db: &Path,
    catalog_name: &str,
    warehouse: &str,
    table: &str,
    env: &[(&str, String)],
) -> IcebergRead {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/read_iceberg.py");
    let child = std::process::Command::new(python())
        .arg(&script)
        .arg(catalog_db)
        .args([catalog_name, warehouse, table])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} (PyIceberg): {e}", python()));
    // Its output is read while it runs (a full pipe would stall it), on a thread of its own.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => out.expect("PyIceberg's output"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("PyIceberg did not answer within a minute");
        }
    };
    assert!(
        out.status.success(),
        "PyIceberg could not read {table}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("PyIceberg's JSON");
    let list = |key: &str| doc[key].as_array().cloned().unwrap_or_default();
    IcebergRead {
        rows: list("rows"),
        snapshots: list("snapshots"),
        spec: list("spec"),
        files: list("files")
            .iter()
            .map(|f| f.as_str().unwrap_or_default().to_string())
            .collect(),
    }
}
