//! Durable storage addressed by URL: where checkpoints (and sinks' staged files) live.
//!
//! One interface over [`object_store`]: `file:///abs/path` (local disk, the embedded default),
//! `memory://` (tests), `hdfs://namenode:port/path` through hdfs-native (cargo feature `hdfs`
//! of weir-engine), and `s3://bucket/prefix` through object_store's S3 client (feature `s3`;
//! configured from `AWS_*` variables, `AWS_ENDPOINT` for S3-compatible servers). Every write is atomic — a reader sees the whole object or none (local
//! disk writes a temporary file and renames it) — and [`Store::put_new`] creates an object only
//! if it does not exist yet (commit markers). Calls are synchronous for the dataflow's threads,
//! driven on a small shared tokio runtime, and bounded in time: an unreachable store is an
//! error after the timeout, never a hang.

use std::sync::Arc;

use crate::io::block_on_for;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// A storage operation that failed, naming the store and the object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store {url}: {op} `{path}`: {message}")]
pub struct StoreError {
    /// The store's URL.
    pub url: String,
    /// What was attempted (`write`, `read`, `list`, `delete`).
    pub op: &'static str,
    /// The object or prefix, relative to the store's root.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// A durable store rooted at a URL.
#[derive(Clone)]
pub struct Store {
    url: String,
    inner: Arc<dyn ObjectStore>,
    /// Prefix of every object (the URL's path, for stores rooted at a host).
    root: Path,
    timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// The default bound on one store call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Store {
    /// Opens the store at `url`: `file:///absolute/path`, `memory://`, or
    /// `hdfs://namenode:port/path` (with the `hdfs` feature).
    pub fn open(url: &str) -> Result<Store, StoreError> {
        let err = |message: String| StoreError {
            url: url.to_string(),
            op: "open",
            path: String::new(),
            message,
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            err(
                "expected file:///path, hdfs://namenode:port/path, s3://bucket/path or memory://"
                    .into(),
            )
        })?;
        let (inner, root): (Arc<dyn ObjectStore>, Path) = match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(err(format!(
                        "`{rest}` is not an absolute path (file:///abs/path)"
                    )));
                }
                std::fs::create_dir_all(rest)
                    .map_err(|e| err(format!("cannot create directory {rest}: {e}")))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(rest)
                    .map_err(|e| err(e.to_string()))?
                    .with_automatic_cleanup(true);
                (Arc::new(local), Path::default())
            }
            "memory" => (
                Arc::new(object_store::memory::InMemory::new()),
                Path::from(rest),
            ),
            "hdfs" | "viewfs" => Self::hdfs(url, rest).map_err(err)?,
            "s3" => Self::s3(rest).map_err(err)?,
            other => {
                return Err(err(format!(
                    "unknown scheme `{other}`: expected file, hdfs, s3 or memory"
                )))
            }
        };
        Ok(Store {
            url: url.to_string(),
            inner,
            root,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    #[cfg(feature = "hdfs")]
    fn hdfs(url: &str, rest: &str) -> Result<(Arc<dyn ObjectStore>, Path), String> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err("expected hdfs://namenode:port/path".into());
        }
        let scheme = &url[..url.find("://").expect("checked")];
        let _guard = crate::io::runtime().enter();
        let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
            .with_url(format!("{scheme}://{authority}"))
            .with_io_runtime(crate::io::runtime().handle().clone())
            .build()
            .map_err(|e| e.to_string())?;
        Ok((Arc::new(store), Path::from(path)))
    }

    /// `s3://bucket/prefix`, configured from the environment as the AWS tools are:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and for S3-compatible
    /// servers `AWS_ENDPOINT` (with `AWS_ALLOW_HTTP=true` for plain http).
    #[cfg(feature = "s3")]
    fn s3(rest: &str) -> Result<(Arc<dyn ObjectStore>, Path), String> {
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("expected s3://bucket/path".into());
        }
        // TLS through rustls with ring: installed once as the process's provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _guard = crate::io::runtime().enter();
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| e.to_string())?;
        Ok((Arc::new(store), Path::from(path)))
    }

    #[cfg(not(feature = "s3"))]
    fn s3(_rest: &str) -> Result<(Arc<dyn ObjectStore>, Path), String> {
        Err("this build has no S3 support: build weir with `--features s3`".into())
    }

    #[cfg(not(feature = "hdfs"))]
    fn hdfs(_url: &str, _rest: &str) -> Result<(Arc<dyn ObjectStore>, Path), String> {
        Err("this build has no HDFS support: build weir with `--features hdfs`".into())
    }

    /// A store whose calls give up after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Store {
        self.timeout = timeout;
        self
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object store underneath, for async callers that stream (Iceberg data files).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The location in [`Store::object_store`] of `relative`.
    pub fn location(&self, relative: &str) -> Path {
        self.path(relative)
    }

    fn path(&self, relative: &str) -> Path {
        let mut path = self.root.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// `relative` of an object path listed under the root.
    fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(root)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| full.to_string())
        }
    }

    fn call<T>(
        &self,
        op: &'static str,
        path: &str,
        future: impl std::future::Future<Output = Result<T, object_store::Error>> + Send,
    ) -> Result<T, StoreError>
    where
        T: Send,
    {
        let err = |message: String| StoreError {
            url: self.url.clone(),
            op,
            path: path.to_string(),
            message,
        };
        match block_on_for(self.timeout, future) {
            Some(result) => result.map_err(|e| err(e.to_string())),
            None => Err(err(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// Writes `bytes` at `path`, atomically, replacing what was there.
    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let location = self.path(path);
        self.call("write", path, async {
            self.inner
                .put(&location, PutPayload::from(bytes))
                .await
                .map(|_| ())
        })
    }

    /// Writes `chunks`, one after the other, at `path`, atomically (no copy into one buffer).
    pub fn put_chunks(&self, path: &str, chunks: Vec<Vec<u8>>) -> Result<(), StoreError> {
        let location = self.path(path);
        let payload: PutPayload = chunks.into_iter().map(bytes::Bytes::from).collect();
        self.call("write", path, async {
            self.inner.put(&location, payload).await.map(|_| ())
        })
    }

    /// Writes `bytes` at `path` only if nothing is there; false when something was.
    pub fn put_new(&self, path: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let location = self.path(path);
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.call("write", path, async {
            match self
                .inner
                .put_opts(&location, PutPayload::from(bytes), options)
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    /// The object at `path`, or `None` when there is none.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let location = self.path(path);
        self.call("read", path, async {
            match self.inner.get(&location).await {
                Ok(result) => Ok(Some(result.bytes().await?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// Every object under `prefix` (recursively): relative path and size, sorted by path.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let location = self.path(prefix);
        let mut objects = self.call("list", prefix, async {
            self.inner
                .list(Some(&location))
                .map_ok(|meta| (meta.location, meta.size))
                .try_collect::<Vec<_>>()
                .await
        })?;
        objects.sort();
        Ok(objects
            .into_iter()
            .map(|(path, size)| (self.relative(&path), size))
            .collect())
    }

    /// The names of the "directories" right under `prefix`, sorted.
    pub fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let location = self.path(prefix);
        let listing = self.call("list", prefix, async {
            self.inner.list_with_delimiter(Some(&location)).await
        })?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The local directory of `prefix` in a `file://` store.
    fn local_dir(&self, prefix: &str) -> Option<std::path::PathBuf> {
        let root = self.url.strip_prefix("file://")?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() || prefix.split('/').any(|p| p == ".." || p == ".") {
            return None;
        }
        Some(std::path::Path::new(root).join(prefix))
    }

    /// Deletes the object at `path` (nothing when there is none).
    pub fn delete(&self, path: &str) -> Result<(), StoreError> {
        let location = self.path(path);
        self.call("delete", path, async {
            match self.inner.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Deletes every object under `prefix`.
    pub fn delete_all(&self, prefix: &str) -> Result<(), StoreError> {
        if let Some(dir) = self.local_dir(prefix) {
            // Local disk: one directory removal instead of a listing and a call per file.
            return match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError {
                    url: self.url.clone(),
                    op: "delete",
                    path: prefix.to_string(),
                    message: e.to_string(),
                }),
            };
        }
        for (path, _) in self.list(prefix)? {
            self.delete(&path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> Vec<(Store, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let file = Store::open(&format!("file://{}/root", dir.path().display())).unwrap();
        let memory = Store::open("memory://some/prefix").unwrap();
        vec![(file, dir), (memory, tempfile::tempdir().unwrap())]
    }

    #[test]
    fn objects_are_written_read_listed_and_deleted() {
        for (store, _dir) in stores() {
            exercise(&store);
        }
    }

    /// Writes, reads, lists and deletes through `store`, as checkpoints do.
    fn exercise(store: &Store) {
        assert_eq!(store.get("a/b").unwrap(), None, "{store:?}");
        store.put("job/chk-1/x", b"one".to_vec()).unwrap();
        store.put("job/chk-1/y/z", b"two!".to_vec()).unwrap();
        store.put("job/chk-2/x", b"3".to_vec()).unwrap();
        store.put("job/chk-1/x", b"uno".to_vec()).unwrap();
        assert_eq!(store.get("job/chk-1/x").unwrap().unwrap(), b"uno");
        assert_eq!(
            store.list("job/chk-1").unwrap(),
            vec![
                ("job/chk-1/x".to_string(), 3),
                ("job/chk-1/y/z".to_string(), 4)
            ]
        );
        assert_eq!(store.list_dirs("job").unwrap(), vec!["chk-1", "chk-2"]);
        assert!(store.put_new("job/chk-2/_M", b"m".to_vec()).unwrap());
        assert!(!store.put_new("job/chk-2/_M", b"other".to_vec()).unwrap());
        assert_eq!(store.get("job/chk-2/_M").unwrap().unwrap(), b"m");
        store.delete_all("job/chk-1").unwrap();
        assert_eq!(store.list_dirs("job").unwrap(), vec!["chk-2"]);
        assert!(store.list("job/chk-1").unwrap().is_empty());
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        let e = Store::open("file://relative/path").unwrap_err();
        assert!(e.to_string().contains("not an absolute path"), "{e}");
        let e = Store::open("s4://x").unwrap_err();
        assert!(e.to_string().contains("unknown scheme `s4`"), "{e}");
        let e = Store::open("/tmp/x").unwrap_err();
        assert!(e.to_string().contains("expected file:///path"), "{e}");
        #[cfg(not(feature = "hdfs"))]
        {
            let e = Store::open("hdfs://nn:9000/weir").unwrap_err();
            assert!(e.to_string().contains("--features hdfs"), "{e}");
        }
        #[cfg(not(feature = "s3"))]
        {
            let e = Store::open("s3://bucket/weir").unwrap_err();
            assert!(e.to_string().contains("--features s3"), "{e}");
        }
    }

    /// An S3-protocol server (moto, from PyPI) on a free loopback port, stopped on drop.
    #[cfg(feature = "s3")]
    struct S3Server(std::process::Child, u16);

    #[cfg(feature = "s3")]
    impl S3Server {
        fn start() -> S3Server {
            let server = std::env::var("WEIR_MOTO_SERVER").unwrap_or_else(|_| {
                format!(
                    "{}/.cache/weir-tools/venv/bin/moto_server",
                    std::env::var("HOME").unwrap_or_default()
                )
            });
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = std::process::Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{server}: {e} (scripts/test.sh installs moto[server])")
                });
            let server = S3Server(child, port);
            let started = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "moto did not start"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            server
        }

        /// Creates `bucket` (one unsigned PUT, which moto accepts).
        fn create_bucket(&self, bucket: &str) {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(("127.0.0.1", self.1)).unwrap();
            write!(
                c,
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                self.1
            )
            .unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }

    #[cfg(feature = "s3")]
    impl Drop for S3Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[cfg(feature = "s3")]
    #[test]
    fn an_s3_store_behaves_as_the_local_one() {
        let server = S3Server::start();
        server.create_bucket("weir-test");
        for (key, value) in [
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", server.1)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "weir".into()),
            ("AWS_SECRET_ACCESS_KEY", "weir".into()),
            ("AWS_REGION", "us-east-1".into()),
        ] {
            std::env::set_var(key, value);
        }
        let store = Store::open("s3://weir-test/some/prefix")
            .unwrap()
            .with_timeout(Duration::from_secs(20));
        exercise(&store);
        // A bucket that is not there: a clear error naming the store, not a hang.
        let missing = Store::open("s3://no-such-bucket/x")
            .unwrap()
            .with_timeout(Duration::from_secs(20));
        let e = missing.put("a", b"b".to_vec()).unwrap_err();
        assert!(e.to_string().contains("s3://no-such-bucket/x"), "{e}");
    }

    #[cfg(feature = "hdfs")]
    #[test]
    fn an_unreachable_namenode_is_an_error_within_the_timeout() {
        // Nothing listens on port 1: the call must fail, not hang.
        let store = Store::open("hdfs://127.0.0.1:1/weir")
            .expect("opening does not connect yet")
            .with_timeout(Duration::from_secs(3));
        let started = std::time::Instant::now();
        let e = store.put("x", b"y".to_vec()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{e}");
        assert!(e.to_string().contains("hdfs://127.0.0.1:1/weir"), "{e}");
    }
}
