//! The lock of a recovery directory: one run per process id at a time.
//!
//! Each process of a run holds an exclusive `flock` on `DIR/lock-{process id}` from
//! before it reads the partitions until its snapshot writer has stopped, so a second
//! run on the same directory is refused at once, naming the lock file and the pid that
//! holds it. The processes of one cluster share the directory and lock one file each.
//! The kernel drops the lock when its holder dies (even by SIGKILL), so no cleanup step
//! is ever needed; the file itself stays, holding the last holder's pid.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file of process `proc_id`.
pub(crate) fn lock_path(dir: &Path, proc_id: usize) -> PathBuf {
    dir.join(format!("lock-{proc_id}"))
}

/// Takes the lock of process `proc_id` of `processes` on `dir` (which must exist), and
/// checks that no process of a run with more processes still holds a higher one.
pub(crate) fn acquire(dir: &Path, proc_id: usize, processes: usize) -> Result<DirLock, Error> {
    let path = lock_path(dir, proc_id);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            Error::Recovery(format!(
                "cannot create the lock file {}: {e} (the recovery directory must be writable)",
                path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(held(dir, &path, &mut file)),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::Recovery(format!(
                "cannot lock {}: {e}",
                path.display()
            )))
        }
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(|e| Error::Recovery(format!("cannot write {}: {e}", path.display())))?;
    // A run with more processes that is still going (some of its processes alive)
    // would write into the same partitions: its higher lock files are held.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(q) = name
                .to_str()
                .and_then(|n| n.strip_prefix("lock-"))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if q < processes {
                continue;
            }
            if let Ok(mut other) = File::open(entry.path()) {
                if let Err(std::fs::TryLockError::WouldBlock) = other.try_lock() {
                    return Err(held(dir, &entry.path(), &mut other));
                }
            }
        }
    }
    Ok(DirLock { _file: file, path })
}

fn held(dir: &Path, path: &Path, file: &mut File) -> Error {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let holder = match text.trim().parse::<u32>() {
        Ok(pid) => format!("process {pid}"),
        Err(_) => "another process (it has not written its pid yet)".to_string(),
    };
    Error::Recovery(format!(
        "the recovery directory {} is in use: {} is locked by {holder}. Two runs on one directory would mix their snapshots: wait for that run to end, or stop it",
        dir.display(),
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_of_the_same_process_id_is_refused_naming_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), 0, 1).unwrap();
        let e = acquire(dir.path(), 0, 1).unwrap_err().to_string();
        assert!(e.contains("lock-0"), "{e}");
        assert!(
            e.contains(&format!("process {}", std::process::id())),
            "{e}"
        );
        // Another process id of the same cluster is free.
        let other = acquire(dir.path(), 1, 2).unwrap();
        // A run of one process while process 1 of a two-process run holds its lock.
        drop(first);
        let e = acquire(dir.path(), 0, 1).unwrap_err().to_string();
        assert!(e.contains("lock-1"), "{e}");
        drop(other);
        let again = acquire(dir.path(), 0, 1).unwrap();
        assert_eq!(again.path(), lock_path(dir.path(), 0));
    }
}
