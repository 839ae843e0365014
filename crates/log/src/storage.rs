//! The I/O layer. The log never calls `std::fs` directly: it goes through
//! [`Storage`], so tests can put a fault-injecting disk ([`FaultyStorage`])
//! under the real code.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One open file. All methods take `&self` so a file can be shared by the
/// writer and any number of readers.
// `len` is a file's size in bytes, not a collection's count.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync + std::fmt::Debug {
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()>;
    /// Reads as much as is there, up to `buffer.len()`; returns the count.
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, buffer: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: data and the metadata needed to read it back.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, size_bytes: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    /// Writes zeros over `[offset, offset + len_bytes)` so that later writes
    /// there change no file metadata, and starts writing them back without
    /// waiting. Only ever called past the data.
    fn preallocate(&self, offset: u64, len_bytes: u64) -> io::Result<()>;
}

pub trait Storage: Send + Sync + std::fmt::Debug {
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Creates a new file; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (created, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiskStorage;

#[derive(Debug)]
struct DiskFile(File);

impl StorageFile for DiskFile {
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buffer, offset)
    }
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buffer.len() {
            match self.0.read_at(&mut buffer[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
    fn write_all_at(&self, buffer: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buffer, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, size_bytes: u64) -> io::Result<()> {
        self.0.set_len(size_bytes)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn preallocate(&self, offset: u64, len_bytes: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut done = 0;
        while done < len_bytes {
            let n = (len_bytes - done).min(ZEROS.len() as u64);
            self.0.write_all_at(&ZEROS[..n as usize], offset + done)?;
            done += n;
        }
        start_write_back(&self.0, offset, len_bytes)
    }
}

/// Starts writing `[offset, offset + len_bytes)` back to the disk without
/// waiting, so it happens while the writer is idle rather than inside the
/// next commit's fdatasync.
#[cfg(target_os = "linux")]
fn start_write_back(file: &File, offset: u64, len_bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor this file owns.
    let result = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as i64, len_bytes as i64, libc::SYNC_FILE_RANGE_WRITE)
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere the next fdatasync writes the zeros back.
#[cfg(not(target_os = "linux"))]
fn start_write_back(_file: &File, _offset: u64, _len_bytes: u64) -> io::Result<()> {
    Ok(())
}

impl Storage for DiskStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        Ok(Arc::new(DiskFile(file)))
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(Arc::new(DiskFile(file)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// What [`FaultyStorage`] does to the next matching operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next `write_all_at` fails with EIO and writes nothing.
    WriteError,
    /// The next `write_all_at` writes only the first half, then fails with EIO.
    ShortWrite,
    /// Every `write_all_at` fails with ENOSPC until the fault is cleared.
    NoSpace,
    /// The next `sync_data` fails with EIO.
    SyncError,
}

/// A disk that injects faults on command, for tests of the code above it.
/// Operations pass through to [`DiskStorage`] unless a fault is armed.
#[derive(Debug, Clone, Default)]
pub struct FaultyStorage {
    state: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    armed: Mutex<Option<Fault>>,
    syncs: AtomicU64,
    writes: AtomicU64,
}

impl FaultyStorage {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn arm(&self, fault: Fault) {
        *self.state.armed.lock().unwrap() = Some(fault);
    }
    pub fn clear(&self) {
        *self.state.armed.lock().unwrap() = None;
    }
    /// How many `sync_data` calls reached the disk.
    pub fn sync_count(&self) -> u64 {
        self.state.syncs.load(Ordering::Relaxed)
    }
    pub fn write_count(&self) -> u64 {
        self.state.writes.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    state: Arc<FaultState>,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5) // EIO
}
fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC
}

impl StorageFile for FaultyFile {
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buffer, offset)
    }
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buffer, offset)
    }
    fn write_all_at(&self, buffer: &[u8], offset: u64) -> io::Result<()> {
        let mut armed = self.state.armed.lock().unwrap();
        match *armed {
            Some(Fault::WriteError) => {
                *armed = None;
                Err(eio())
            }
            Some(Fault::ShortWrite) => {
                *armed = None;
                self.inner.write_all_at(&buffer[..buffer.len() / 2], offset)?;
                Err(eio())
            }
            Some(Fault::NoSpace) => Err(enospc()),
            _ => {
                self.state.writes.fetch_add(1, Ordering::Relaxed);
                self.inner.write_all_at(buffer, offset)
            }
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut armed = self.state.armed.lock().unwrap();
        if *armed == Some(Fault::SyncError) {
            *armed = None;
            return Err(eio());
        }
        self.state.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }
    fn set_len(&self, size_bytes: u64) -> io::Result<()> {
        self.inner.set_len(size_bytes)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    /// Never faulted: armed faults are for the data writes and syncs the
    /// tests aim at, and the log treats a failed preallocation as harmless.
    fn preallocate(&self, offset: u64, len_bytes: u64) -> io::Result<()> {
        self.inner.preallocate(offset, len_bytes)
    }
}

impl FaultyStorage {
    fn wrap(&self, inner: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        Arc::new(FaultyFile { inner, state: self.state.clone() })
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        DiskStorage.create_dir_all(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        DiskStorage.list_dir(dir)
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(DiskStorage.open(path, writable)?))
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        if *self.state.armed.lock().unwrap() == Some(Fault::NoSpace) {
            return Err(enospc());
        }
        Ok(self.wrap(DiskStorage.create_new(path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        DiskStorage.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        DiskStorage.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        DiskStorage.sync_dir(dir)
    }
}

/// `dir/<20-digit base position>.seg`: names sort in log order.
pub fn segment_path(dir: &Path, base_position: u64) -> PathBuf {
    dir.join(format!("{base_position:020}.seg"))
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Takes an exclusive advisory lock on `dir/LOCK`, held while the returned
/// file lives: two processes writing one log would corrupt it.
pub fn lock_directory(dir: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join("LOCK"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}
