//! A cache of small, hot files: what nginx's `open_file_cache` does for
//! descriptors and metadata, done for the bytes too, and checked on every
//! use.
//!
//! A miss costs what serving a file costs anyway: resolve the path (one
//! `openat2`), `fstat`, `pread`, `close`. A hit costs one `statx` of the
//! file's canonical path, which must show the very same file unchanged
//! (device, inode, size, modification and change times, to the
//! nanosecond) before the cached bytes are sent. So an edited, replaced,
//! renamed, deleted or `chmod`ed file is read afresh on its next request;
//! nginx's cache, when turned on, trusts its entries for 60 s.
//!
//! Entries are keyed by the request path as sent, and are only made from
//! an answer [`super::path::resolve`] gave for that same path, so a hit
//! never serves what the path rules would refuse: the `statx` does not
//! follow a final symlink, and a file moved or linked out of the root is
//! no longer at its canonical path. Bounded: files up to [`MAX_FILE`],
//! [`MAX_BYTES`] in all, least recently used evicted first.
//!
//! Beside the bytes, an entry keeps the headers its answers take from the
//! file ([`FileHeaders`]), made once when it is cached rather than for
//! every answer: they depend only on what the stamp checks.

use std::fs::Metadata;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::header::HeaderValue;

use super::conditional::Validators;

/// The largest file cached.
pub const MAX_FILE: u64 = 128 * 1024;

/// All cached bytes together at most.
pub const MAX_BYTES: usize = 32 << 20;

/// Entries at most, whatever their size: bounds the keys' memory too.
const MAX_ENTRIES: usize = 4096;

/// What identifies one version of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// What a file's answers say of the file itself, as it is (no coding).
#[derive(Debug, Clone)]
pub struct FileHeaders {
    /// Its `Content-Type`.
    pub content_type: HeaderValue,
    /// Its `ETag` and `Last-Modified`.
    pub validators: Validators,
}

#[derive(Debug)]
struct Entry {
    path: Arc<Path>,
    stamp: Stamp,
    bytes: Bytes,
    headers: FileHeaders,
}

/// A cached file, checked just now to be current.
#[derive(Debug)]
pub struct Hit {
    /// The file's canonical path.
    pub path: Arc<Path>,
    /// Its metadata, as read just now.
    pub meta: Metadata,
    /// All of its bytes.
    pub bytes: Bytes,
    /// Its headers, made when it was cached.
    pub headers: FileHeaders,
}

/// The cache of one site, shared by its connections.
#[derive(Debug)]
pub struct FileCache {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    entries: lru::LruCache<String, Entry>,
    bytes: usize,
}

impl Default for FileCache {
    fn default() -> FileCache {
        FileCache {
            inner: Mutex::new(Inner {
                entries: lru::LruCache::new(
                    NonZeroUsize::new(MAX_ENTRIES).unwrap_or(NonZeroUsize::MIN),
                ),
                bytes: 0,
            }),
        }
    }
}

impl FileCache {
    /// The file that request path `raw` was answered with, if it is
    /// cached and still the same file, unchanged.
    pub fn get(&self, raw: &str) -> Option<Hit> {
        let (path, stamp, bytes, headers) = {
            let mut inner = self.inner.lock().ok()?;
            let entry = inner.entries.get(raw)?;
            let headers = entry.headers.clone();
            (
                entry.path.clone(),
                entry.stamp,
                entry.bytes.clone(),
                headers,
            )
        };
        // Outside the lock: the one system call of a hit.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() && Stamp::of(&meta) == stamp => Some(Hit {
                path,
                meta,
                bytes,
                headers,
            }),
            _ => {
                self.remove(raw);
                None
            }
        }
    }

    /// Remembers that `raw` was answered with the file at `path`, whose
    /// metadata (taken before `bytes` were read) is `meta`, and whose
    /// headers made from that metadata are `headers`.
    pub fn put(&self, raw: &str, path: &Path, meta: &Metadata, bytes: Bytes, headers: FileHeaders) {
        if bytes.len() as u64 > MAX_FILE || bytes.len() as u64 != meta.len() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let size = bytes.len();
        let entry = Entry {
            path: path.into(),
            stamp: Stamp::of(meta),
            bytes,
            headers,
        };
        if let Some((_, old)) = inner.entries.push(raw.to_owned(), entry) {
            inner.bytes -= old.bytes.len();
        }
        inner.bytes += size;
        while inner.bytes > MAX_BYTES {
            match inner.entries.pop_lru() {
                Some((_, old)) => inner.bytes -= old.bytes.len(),
                None => break,
            }
        }
    }

    fn remove(&self, raw: &str) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(old) = inner.entries.pop(raw)
        {
            inner.bytes -= old.bytes.len();
        }
    }

    /// How many files and bytes are cached.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap();
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("sockit-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn cache_file(cache: &FileCache, raw: &str, path: &std::path::Path) {
        let meta = std::fs::metadata(path).unwrap();
        let bytes = std::fs::read(path).unwrap();
        let headers = FileHeaders {
            content_type: HeaderValue::from_static("text/plain"),
            validators: Validators::of(&meta, ""),
        };
        cache.put(raw, path, &meta, bytes.into(), headers);
    }

    #[test]
    fn a_hit_is_the_same_file_unchanged() {
        let d = dir("hit");
        let file = d.0.join("a.txt");
        std::fs::write(&file, "one").unwrap();
        let cache = FileCache::default();
        assert!(cache.get("/a.txt").is_none());
        cache_file(&cache, "/a.txt", &file);
        assert_eq!(cache.get("/a.txt").unwrap().bytes, "one");

        // Rewritten, even to the same length: a miss, and gone.
        std::fs::write(&file, "two").unwrap();
        assert!(cache.get("/a.txt").is_none());
        assert_eq!(cache.size(), (0, 0));

        // Replaced by a symlink, or deleted: a miss.
        cache_file(&cache, "/a.txt", &file);
        std::fs::remove_file(&file).unwrap();
        std::fs::write(d.0.join("b.txt"), "two").unwrap();
        std::os::unix::fs::symlink(d.0.join("b.txt"), &file).unwrap();
        assert!(cache.get("/a.txt").is_none());
        std::fs::remove_file(&file).unwrap();
        assert!(cache.get("/a.txt").is_none());
    }

    #[test]
    fn a_chmod_is_a_miss() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = dir("chmod");
        let file = d.0.join("a.txt");
        std::fs::write(&file, "one").unwrap();
        let cache = FileCache::default();
        cache_file(&cache, "/a.txt", &file);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert!(cache.get("/a.txt").is_none());
    }

    #[test]
    fn bounded_by_bytes_least_recently_used_first() {
        let d = dir("bounded");
        let cache = FileCache::default();
        let big = vec![b'x'; MAX_FILE as usize];
        let files = MAX_BYTES / big.len() + 2;
        for i in 0..files {
            let file = d.0.join(format!("{i}.bin"));
            std::fs::write(&file, &big).unwrap();
            cache_file(&cache, &format!("/{i}"), &file);
            // The first stays in use, so it is never the least recent.
            assert!(cache.get("/0").is_some(), "{i}");
        }
        let (entries, bytes) = cache.size();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert_eq!(entries, MAX_BYTES / big.len());
        assert!(cache.get("/1").is_none());
        assert!(cache.get(&format!("/{}", files - 1)).is_some());

        // Too big, or not what the metadata says: not cached.
        let file = d.0.join("huge.bin");
        std::fs::write(&file, vec![0; MAX_FILE as usize + 1]).unwrap();
        cache_file(&cache, "/huge", &file);
        assert!(cache.get("/huge").is_none());
    }
}
