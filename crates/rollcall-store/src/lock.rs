//! The data directory's lock: one process at a time writes a store.
//!
//! Two monitors on one data directory would each judge the fleet, write transitions the
//! other never made, and hand out the same incident ids, so one's real page is taken for a
//! duplicate of the other's. An exclusive `flock` on `rollcall.lock`, held for the life of
//! the process, refuses the second one. The kernel releases it when the process dies, even
//! by SIGKILL, so a crash never leaves a stale lock behind. The file holds the holder's pid
//! only to name it in the refusal.

use super::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock file's name under the data directory.
pub const LOCK_FILE_NAME: &str = "rollcall.lock";

/// Held while it lives; dropping it (or the process ending) releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the data directory's lock, or says which process holds it. Never waits.
    pub fn acquire(data_dir: &Path) -> Result<DirLock, StoreError> {
        let path = data_dir.join(LOCK_FILE_NAME);
        let io = |error: std::io::Error| StoreError::Io { path: path.clone(), error };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(StoreError::Locked { dir: data_dir.to_path_buf(), holder });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file })
    }
}
