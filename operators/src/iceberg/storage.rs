//! Iceberg's file I/O over weir's store: table metadata, manifests and Parquet data files go
//! through the same [`Store`] as checkpoints, so `file://` and `hdfs://` (feature `hdfs` of
//! weir-engine) warehouses work alike. iceberg-rust has no HDFS storage of its own; its
//! `Storage` and `StorageFactory` traits are public, and this is the adapter.
//!
//! An Iceberg path is a full URL (`file:///warehouse/db/t/metadata/v1.json`,
//! `hdfs://namenode:9000/warehouse/...`); a bare absolute path is local disk. One store is
//! opened per `scheme://authority` and reused. Writes are whole objects (a writer buffers and
//! puts on close), so a reader never sees half a file.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use weir_engine::store::Store;

/// Iceberg storage backed by weir's [`Store`]s.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoreStorage {
    /// Open stores by `scheme://authority/`.
    #[serde(skip)]
    stores: Arc<Mutex<HashMap<String, Store>>>,
}

/// Creates [`StoreStorage`] for catalogs (`with_storage_factory`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoreStorageFactory;

#[typetag::serde]
impl StorageFactory for StoreStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(StoreStorage::default()))
    }
}

fn error(op: &str, path: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{op} `{path}`: {message}"))
}

/// Splits an Iceberg path into the store root URL and the path under it.
fn split(path: &str) -> Result<(String, String)> {
    if let Some(rest) = path.strip_prefix("file://") {
        // file:///abs → /abs; file://abs (sloppy) → /abs
        return Ok(("file:///".into(), rest.trim_start_matches('/').to_string()));
    }
    if let Some(rest) = path.strip_prefix("file:") {
        return Ok(("file:///".into(), rest.trim_start_matches('/').to_string()));
    }
    if path.starts_with('/') {
        return Ok(("file:///".into(), path.trim_start_matches('/').to_string()));
    }
    let (scheme, rest) = path
        .split_once("://")
        .ok_or_else(|| error("resolve", path, "not a URL or absolute path"))?;
    let (authority, relative) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((format!("{scheme}://{authority}/"), relative.to_string()))
}

impl StoreStorage {
    /// The object store and location of an Iceberg path.
    fn resolve(&self, path: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let (root, relative) = split(path)?;
        let mut stores = self.stores.lock().expect("store cache poisoned");
        let store = match stores.get(&root) {
            Some(s) => s.clone(),
            None => {
                let s = Store::open(&root).map_err(|e| error("open", path, e))?;
                stores.insert(root, s.clone());
                s
            }
        };
        Ok((store.object_store().clone(), store.location(&relative)))
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for StoreStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (store, location) = self.resolve(path)?;
        match store.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(error("look up", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (store, location) = self.resolve(path)?;
        let meta = store
            .head(&location)
            .await
            .map_err(|e| error("look up", path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (store, location) = self.resolve(path)?;
        let result = store
            .get(&location)
            .await
            .map_err(|e| error("read", path, e))?;
        result.bytes().await.map_err(|e| error("read", path, e))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (store, location) = self.resolve(path)?;
        Ok(Box::new(ObjectRead {
            store,
            location,
            path: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (store, location) = self.resolve(path)?;
        store
            .put(&location, PutPayload::from(bs))
            .await
            .map(|_| ())
            .map_err(|e| error("write", path, e))
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (store, location) = self.resolve(path)?;
        Ok(Box::new(ObjectWrite {
            store,
            location,
            path: path.to_string(),
            parts: Vec::new(),
            closed: false,
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (store, location) = self.resolve(path)?;
        match store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(error("delete", path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (store, location) = self.resolve(path)?;
        let objects: Vec<Path> = store
            .list(Some(&location))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| error("list", path, e))?;
        for object in objects {
            match store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(error("delete", object.as_ref(), e)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Ranged reads of one object.
struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    location: Path,
    path: String,
}

#[async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.location, range)
            .await
            .map_err(|e| error("read", &self.path, e))
    }
}

/// A whole-object write: parts are buffered and put at once on close.
struct ObjectWrite {
    store: Arc<dyn ObjectStore>,
    location: Path,
    path: String,
    parts: Vec<Bytes>,
    closed: bool,
}

#[async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        if self.closed {
            return Err(error("write", &self.path, "already closed"));
        }
        self.parts.push(bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let payload = PutPayload::from_iter(std::mem::take(&mut self.parts));
        self.store
            .put(&self.location, payload)
            .await
            .map(|_| ())
            .map_err(|e| error("write", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_store_root_and_object() {
        let cases = [
            ("file:///tmp/wh/t/x.json", "file:///", "tmp/wh/t/x.json"),
            ("file:/tmp/wh/x", "file:///", "tmp/wh/x"),
            ("/tmp/wh/x", "file:///", "tmp/wh/x"),
            ("hdfs://nn:9000/wh/db/t", "hdfs://nn:9000/", "wh/db/t"),
            ("memory://bucket/a/b", "memory://bucket/", "a/b"),
        ];
        for (path, root, relative) in cases {
            assert_eq!(
                split(path).unwrap(),
                (root.to_string(), relative.to_string())
            );
        }
        assert!(split("relative/path").is_err());
    }

    #[test]
    fn files_round_trip_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let storage = StoreStorage::default();
        let path = format!("file://{}/wh/t/data/a.parquet", dir.path().display());
        weir_engine::io::block_on_for(std::time::Duration::from_secs(10), async {
            assert!(!storage.exists(&path).await.unwrap());
            let mut w = storage.writer(&path).await.unwrap();
            w.write(Bytes::from_static(b"hello ")).await.unwrap();
            // Nothing is visible before close.
            assert!(!storage.exists(&path).await.unwrap());
            w.write(Bytes::from_static(b"world")).await.unwrap();
            w.close().await.unwrap();
            assert_eq!(storage.metadata(&path).await.unwrap().size, 11);
            let r = storage.reader(&path).await.unwrap();
            assert_eq!(&r.read(6..11).await.unwrap()[..], b"world");
            assert_eq!(&storage.read(&path).await.unwrap()[..], b"hello world");
            let prefix = format!("file://{}/wh/t", dir.path().display());
            storage.delete_prefix(&prefix).await.unwrap();
            assert!(!storage.exists(&path).await.unwrap());
        })
        .unwrap();
    }
}
