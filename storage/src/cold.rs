//! The cold tier: chunk files moved whole, unchanged, to an object store (S3 in production, a
//! local directory by default) and read from there by byte ranges.
//!
//! Objects are named `<prefix>/chunks/<table id>/<chunk id>.chunk`. Storage's threads are not
//! async, so [`ColdStore`] owns a small tokio runtime and waits on it; a read is one ranged GET
//! per span of nearby blocks, through the local block cache (`cold/cache.rs`). Moves and the
//! sweep of leftovers are in `cold/tier.rs`.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig};

use crate::config::{ColdStoreConfig, StorageConfig};
use crate::error::{Error, Result};
use crate::model::{ChunkId, TableId};

pub(crate) mod cache;
pub(crate) mod tier;

/// Blocks closer than this are fetched in one GET, the bytes between them read and dropped.
const SPAN_GAP_BYTES: u64 = 1 << 20;
/// How long one request to the store may take, and how long its retries may go on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests made to the cold store, for `/metrics` and the tiering benchmark.
#[derive(Debug, Default)]
pub struct ColdMetrics {
    pub gets: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub puts: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    /// Chunks moved to the cold store.
    pub chunks_moved: AtomicU64,
    /// Reads of cold blocks answered from the local cache.
    pub cache_hits: AtomicU64,
}

/// The object store of the cold tier.
#[derive(Debug)]
pub(crate) struct ColdStore {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
    /// `s3://bucket/prefix` or the directory, for messages.
    pub(crate) url: String,
    /// The directory of a local store.
    local_dir: Option<std::path::PathBuf>,
    pub(crate) cache: cache::BlockCache,
    pub(crate) metrics: ColdMetrics,
}

impl ColdStore {
    /// The store `config` names, with its cache under `<data_dir>/cold-cache`.
    pub(crate) fn open(config: &StorageConfig) -> Result<Self> {
        let fail = |what: &str, e: &dyn std::fmt::Display| Error::InvalidRequest(format!("cold store: {what}: {e}"));
        let local_dir = match &config.cold_store {
            ColdStoreConfig::Local(dir) => Some(dir.clone().unwrap_or_else(|| config.data_dir.join("cold"))),
            ColdStoreConfig::S3(_) => None,
        };
        let (store, prefix, url): (Arc<dyn ObjectStore>, &str, String) = match &config.cold_store {
            ColdStoreConfig::Local(dir) => {
                let dir = dir.clone().unwrap_or_else(|| config.data_dir.join("cold"));
                std::fs::create_dir_all(&dir).map_err(crate::error::io_err("create directory", &dir))?;
                let local = LocalFileSystem::new_with_prefix(&dir).map_err(|e| fail("directory", &e))?;
                (Arc::new(local), "", dir.display().to_string())
            }
            ColdStoreConfig::S3(s3) => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket).with_allow_http(s3.allow_http);
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
                }
                if let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    builder = builder.with_access_key_id(key).with_secret_access_key(secret);
                }
                let client = ClientOptions::new().with_timeout(REQUEST_TIMEOUT).with_allow_http(s3.allow_http);
                let retry = RetryConfig { retry_timeout: RETRY_TIMEOUT, ..RetryConfig::default() };
                let built = builder.with_client_options(client).with_retry(retry).build().map_err(|e| fail("S3", &e))?;
                (Arc::new(built), s3.prefix.as_str(), format!("s3://{}/{}", s3.bucket, s3.prefix))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("isobar-cold")
            .enable_all()
            .build()
            .map_err(crate::error::io_err("start the cold store's runtime", &config.data_dir))?;
        let cache = cache::BlockCache::open(&config.data_dir.join("cold-cache"), config.cold_cache_bytes_max)?;
        let prefix = ObjectPath::parse(prefix.trim_matches('/')).map_err(|e| fail("prefix", &e))?;
        Ok(Self { store, prefix, runtime, url, local_dir, cache, metrics: ColdMetrics::default() })
    }

    /// Where chunk `id` of `table` lives in the store.
    pub(crate) fn key(&self, table: TableId, id: ChunkId) -> ObjectPath {
        self.chunks_prefix().join(table.0.to_string()).join(format!("{:016x}.chunk", id.0))
    }

    /// The chunk a key names, if it is one.
    fn chunk_of(key: &ObjectPath) -> Option<(TableId, ChunkId)> {
        let mut parts: Vec<_> = key.parts().collect();
        let file = parts.pop()?;
        let table = parts.pop()?;
        let id = u64::from_str_radix(file.as_ref().strip_suffix(".chunk")?, 16).ok()?;
        Some((TableId(table.as_ref().parse().ok()?), ChunkId(id)))
    }

    fn chunks_prefix(&self) -> ObjectPath {
        self.prefix.clone().join("chunks")
    }

    /// The name of object `key` in messages.
    pub(crate) fn describe(&self, key: &ObjectPath) -> std::path::PathBuf {
        self.name(key).into()
    }

    fn name(&self, key: &ObjectPath) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), key)
    }

    /// Runs `work` on the store's runtime and waits for it: callable from any thread. On a
    /// worker of a multi-threaded runtime (a query's scan), the wait tells that runtime, which
    /// hands the worker's other tasks to another thread meanwhile: a slow store holds up the
    /// reads of cold chunks, not the queries of hot ones.
    fn run<T: Send + 'static>(&self, work: impl Future<Output = object_store::Result<T>> + Send + 'static) -> Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        let wait = || rx.recv().map_err(|_| Error::Closed);
        let on_worker =
            tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let done = if on_worker { tokio::task::block_in_place(wait) } else { wait() };
        done?.map_err(|e| Error::ColdStore(e.to_string()))
    }

    /// Uploads `bytes` as `key` unless the key exists: a move interrupted after its upload left
    /// the same bytes there (chunk ids are never given again), which [`Self::check`] confirms.
    pub(crate) fn upload(&self, key: &ObjectPath, bytes: Vec<u8>) -> Result<()> {
        let (store, key, len) = (Arc::clone(&self.store), key.clone(), bytes.len() as u64);
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let put = async move {
            match store.put_opts(&key, PutPayload::from(bytes), options).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        };
        self.run(put)?;
        self.metrics.puts.fetch_add(1, Ordering::Relaxed);
        self.metrics.bytes_uploaded.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Where file `file` of table `table`'s lake day `date` goes:
    /// `<prefix>/lake/<table>/date=<date>/<file>`.
    pub(crate) fn lake_key(&self, table: &str, date: &str, file: &str) -> ObjectPath {
        self.prefix.clone().join("lake").join(table).join(format!("date={date}")).join(file)
    }

    /// Writes `bytes` as `key`, replacing what is there.
    pub(crate) fn put(&self, key: &ObjectPath, bytes: Vec<u8>) -> Result<()> {
        let (store, key, len) = (Arc::clone(&self.store), key.clone(), bytes.len() as u64);
        self.run(async move { store.put(&key, PutPayload::from(bytes)).await.map(drop) })?;
        self.metrics.puts.fetch_add(1, Ordering::Relaxed);
        self.metrics.bytes_uploaded.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Checks that `key` holds `size_bytes` bytes ending with `tail` (the chunk's footer and
    /// trailer, which hold the checksums of everything before them).
    pub(crate) fn check(&self, key: &ObjectPath, size_bytes: u64, tail: &[u8]) -> Result<()> {
        let (store, k) = (Arc::clone(&self.store), key.clone());
        let meta = self.run(async move { store.head(&k).await })?;
        if meta.size != size_bytes {
            return Err(Error::ColdStore(format!("{} holds {} bytes, not the chunk's {size_bytes}", self.name(key), meta.size)));
        }
        let stored = self.get_range(key, size_bytes - tail.len() as u64..size_bytes)?;
        if stored != tail {
            return Err(Error::ColdStore(format!("{} does not end as the chunk does", self.name(key))));
        }
        Ok(())
    }

    /// One GET of `range` of `key`.
    pub(crate) fn get_range(&self, key: &ObjectPath, range: Range<u64>) -> Result<Vec<u8>> {
        let (store, k, len) = (Arc::clone(&self.store), key.clone(), range.end - range.start);
        let bytes = self.run(async move { store.get_range(&k, range).await })?;
        self.metrics.gets.fetch_add(1, Ordering::Relaxed);
        self.metrics.bytes_fetched.fetch_add(len, Ordering::Relaxed);
        Ok(bytes.to_vec())
    }

    /// The bytes of `ranges` (sorted by start, not overlapping) of `key`: one GET per span of
    /// ranges less than [`SPAN_GAP_BYTES`] apart.
    pub(crate) fn get_ranges(&self, key: &ObjectPath, ranges: &[Range<u64>]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(ranges.len());
        let mut i = 0;
        while i < ranges.len() {
            let mut j = i + 1;
            while j < ranges.len() && ranges[j].start <= ranges[j - 1].end + SPAN_GAP_BYTES {
                j += 1;
            }
            let span = ranges[i].start..ranges[j - 1].end;
            let bytes = self.get_range(key, span.clone())?;
            for r in &ranges[i..j] {
                let (from, to) = ((r.start - span.start) as usize, (r.end - span.start) as usize);
                out.push(bytes.get(from..to).ok_or_else(|| Error::ColdStore(format!("{}: short read", self.name(key))))?.to_vec());
            }
            i = j;
        }
        Ok(out)
    }

    /// Deletes `key` in the background; a failure leaves an object the sweep removes later.
    pub(crate) fn delete_later(&self, key: ObjectPath) {
        let store = Arc::clone(&self.store);
        self.runtime.spawn(async move {
            let _ = store.delete(&key).await;
        });
    }

    /// Every chunk object in the store, with its key.
    pub(crate) fn list_chunks(&self) -> Result<Vec<(ObjectPath, TableId, ChunkId)>> {
        use futures::TryStreamExt;
        let (store, prefix) = (Arc::clone(&self.store), self.chunks_prefix());
        let metas = self.run(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })?;
        Ok(metas.into_iter().filter_map(|m| Self::chunk_of(&m.location).map(|(t, c)| (m.location, t, c))).collect())
    }

    /// Deletes what uploads to a local store left when they were interrupted: the store writes
    /// an object as `<name>#<n>` and renames it, and lists neither such files nor leftovers.
    pub(crate) fn remove_staged_uploads(&self) -> Result<usize> {
        let Some(dir) = &self.local_dir else { return Ok(0) };
        let chunks = dir.join(self.chunks_prefix().as_ref());
        let mut removed = 0;
        for table in std::fs::read_dir(&chunks).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(table.path()).into_iter().flatten().flatten() {
                if file.file_name().to_string_lossy().contains('#') {
                    std::fs::remove_file(file.path()).map_err(crate::error::io_err("remove an interrupted upload", file.path()))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every object of the lake, with its table and its `date=` value.
    pub(crate) fn list_lake(&self) -> Result<Vec<(ObjectPath, String, String)>> {
        use futures::TryStreamExt;
        let (store, prefix) = (Arc::clone(&self.store), self.prefix.clone().join("lake"));
        let metas = self.run(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })?;
        let parse = |key: &ObjectPath| {
            let mut parts: Vec<String> = key.parts().map(|p| p.as_ref().to_owned()).collect();
            parts.pop()?;
            let date = parts.pop()?.strip_prefix("date=")?.to_owned();
            Some((parts.pop()?, date))
        };
        Ok(metas.into_iter().filter_map(|m| parse(&m.location).map(|(table, date)| (m.location, table, date))).collect())
    }

    /// Deletes `key` and waits.
    pub(crate) fn delete(&self, key: &ObjectPath) -> Result<()> {
        let (store, k) = (Arc::clone(&self.store), key.clone());
        self.run(async move {
            match store.delete(&k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}
