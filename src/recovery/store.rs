//! Recovery partitions: SQLite files `part-{i}.sqlite3` in the recovery directory.
//!
//! Every query of the recovery tier is here; the rest of the crate sees partitions
//! through [`Partition`]'s methods. Epochs are stored as SQLite integers (`i64`), with
//! [`EOF_EPOCH`] as `i64::MAX`.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::base::epoch::{Epoch, EOF_EPOCH};
use crate::error::Error;

/// What the `format` entry of a partition's `meta` table says.
pub(crate) const FORMAT: &str = "waxfast-recovery-1";

/// How long a writer waits for another process's lock on a partition.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE execs (
    ex INTEGER PRIMARY KEY,
    worker_count INTEGER NOT NULL,
    resume_from INTEGER NOT NULL,
    first_epoch INTEGER NOT NULL
);
CREATE TABLE fronts (
    ex INTEGER NOT NULL,
    worker INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    PRIMARY KEY (ex, worker)
) WITHOUT ROWID;
CREATE TABLE snaps (
    step_id TEXT NOT NULL,
    state_key BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    ex INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    state BLOB,
    PRIMARY KEY (step_id, state_key, epoch)
) WITHOUT ROWID;
";

fn to_sql(e: Epoch) -> i64 {
    i64::try_from(e).unwrap_or(i64::MAX)
}

fn from_sql(e: i64) -> Epoch {
    if e == i64::MAX {
        EOF_EPOCH
    } else {
        e.max(0) as Epoch
    }
}

/// The file of partition `i`.
pub(crate) fn part_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("part-{i}.sqlite3"))
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Recovery(format!("{}: {what}: {e}", path.display()))
}

/// `waxfast recovery init DIR COUNT`: creates `DIR` (if needed) and `COUNT` empty
/// partitions in it. Refuses a directory that already holds partitions.
pub fn init(dir: &Path, count: usize) -> Result<(), Error> {
    if count == 0 {
        return Err(Error::Recovery(
            "the partition count must be at least 1".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| err(dir, "cannot create the directory", e))?;
    if let Some(existing) = list_parts(dir)?.first() {
        return Err(Error::Recovery(format!(
            "{} already holds recovery partitions ({}): use an empty directory, or delete them to start afresh",
            dir.display(),
            existing.display()
        )));
    }
    for i in 0..count {
        let path = part_path(dir, i);
        // Built under a temporary name and renamed, so a partition file is never
        // half-made.
        let tmp = dir.join(format!(".part-{i}.sqlite3.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let conn = Connection::open(&tmp).map_err(|e| err(&tmp, "cannot create", e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| err(&tmp, "cannot create the tables", e))?;
        conn.execute_batch(&format!(
            "INSERT INTO meta VALUES ('format', '{FORMAT}');
             INSERT INTO meta VALUES ('part_index', {i});
             INSERT INTO meta VALUES ('part_count', {count});"
        ))
        .map_err(|e| err(&tmp, "cannot write", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| err(&tmp, "cannot set WAL mode", e))?;
        drop(conn);
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, "cannot create", e))?;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The `part-*.sqlite3` files of `dir`, sorted.
fn list_parts(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir, "cannot read the directory", e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err(dir, "cannot read the directory", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") && name.ends_with(".sqlite3") {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// One open recovery partition.
pub(crate) struct Partition {
    pub(crate) path: PathBuf,
    pub(crate) conn: Connection,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({})", self.path.display())
    }
}

/// One execution's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Execution {
    pub(crate) ex: u64,
    pub(crate) worker_count: usize,
    pub(crate) resume_from: Epoch,
    pub(crate) first_epoch: Epoch,
}

/// Checks that `dir` is a directory (before it is locked and read). `flag` names the
/// option that gave it, for messages.
pub(crate) fn check_dir(dir: &Path, flag: &str) -> Result<(), Error> {
    let init_hint = format!(
        "create it with `waxfast recovery init {} COUNT`",
        dir.display()
    );
    let meta = std::fs::metadata(dir).map_err(|e| {
        Error::Recovery(format!(
            "{flag}: the recovery directory {} cannot be used ({e}); {init_hint}",
            dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(Error::Recovery(format!(
            "{flag}: {} is not a directory; {init_hint}",
            dir.display()
        )));
    }
    Ok(())
}

/// Opens every partition of `dir`, checking that it is a complete, initialised set.
/// `flag` names the option that gave the directory, for messages.
pub(crate) fn open_all(dir: &Path, flag: &str) -> Result<Vec<Partition>, Error> {
    check_dir(dir, flag)?;
    let init_hint = format!(
        "create it with `waxfast recovery init {} COUNT`",
        dir.display()
    );
    let files = list_parts(dir)?;
    if files.is_empty() {
        return Err(Error::Recovery(format!(
            "{flag}: {} holds no recovery partitions (part-*.sqlite3): it was not initialised; {init_hint}",
            dir.display()
        )));
    }
    let mut parts: Vec<Option<Partition>> = Vec::new();
    let mut count: Option<(usize, PathBuf)> = None;
    for path in files {
        // SQLite opens a file it may not write read-only, and then fails with errors
        // that look like corruption: name the real problem first.
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            return Err(Error::Recovery(format!(
                "{}: cannot open the recovery partition for writing: {e}",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| err(&path, "cannot open the recovery partition", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| err(&path, "cannot open the recovery partition", e))?;
        let bad = |e: &dyn std::fmt::Display| {
            Error::Recovery(format!(
                "{}: not a waxfast recovery partition, or corrupt ({e}); make a new directory with `waxfast recovery init`",
                path.display()
            ))
        };
        let get = |name: &str| -> Result<Option<rusqlite::types::Value>, Error> {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| bad(&e))
        };
        match get("format")? {
            Some(rusqlite::types::Value::Text(f)) if f == FORMAT => {}
            other => return Err(bad(&format!("format is {other:?}, expected {FORMAT:?}"))),
        }
        let int = |v: Option<rusqlite::types::Value>, what: &str| match v {
            Some(rusqlite::types::Value::Integer(i)) if i >= 0 => Ok(i as usize),
            other => Err(bad(&format!("{what} is {other:?}"))),
        };
        let index = int(get("part_index")?, "part_index")?;
        let n = int(get("part_count")?, "part_count")?;
        match &count {
            None => count = Some((n, path.clone())),
            Some((c, first)) if *c != n => {
                return Err(Error::Recovery(format!(
                    "{} says there are {n} partitions but {} says {c}: the directory mixes partitions of two `recovery init`s",
                    path.display(),
                    first.display()
                )))
            }
            Some(_) => {}
        }
        if path != part_path(dir, index) {
            return Err(bad(&format!(
                "it holds partition {index}, which belongs in {}",
                part_path(dir, index).display()
            )));
        }
        if parts.len() <= index {
            parts.resize_with(index + 1, || None);
        }
        parts[index] = Some(Partition { path, conn });
    }
    let (n, _) = count.expect("at least one partition was read");
    parts.resize_with(n.max(parts.len()), || None);
    let mut out = Vec::new();
    for (i, p) in parts.into_iter().enumerate() {
        match p {
            Some(p) if i < n => out.push(p),
            Some(p) => {
                return Err(Error::Recovery(format!(
                    "{}: partition {i} is beyond the partition count {n}",
                    p.path.display()
                )))
            }
            None => {
                return Err(Error::Recovery(format!(
                    "recovery partition {i} of {n} is missing: {} (restore it from a backup, or start afresh with a new directory)",
                    part_path(dir, i).display()
                )))
            }
        }
    }
    Ok(out)
}

impl Partition {
    fn fail(&self, what: &str, e: rusqlite::Error) -> Error {
        err(&self.path, what, e)
    }

    /// The flow that used this partition (name, step-graph fingerprint), if any has.
    pub(crate) fn flow(&self) -> Result<Option<(String, u64)>, Error> {
        let name: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'flow'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.fail("cannot read", e))?;
        let fp: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE name = 'fingerprint'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail("cannot read", e))?;
        Ok(name.map(|n| (n, fp.unwrap_or(0) as u64)))
    }

    pub(crate) fn executions(&self) -> Result<Vec<Execution>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT ex, worker_count, resume_from, first_epoch FROM execs ORDER BY ex")
            .map_err(|e| self.fail("cannot read", e))?;
        let rows = st
            .query_map([], |r| {
                Ok(Execution {
                    ex: r.get::<_, i64>(0)? as u64,
                    worker_count: r.get::<_, i64>(1)? as usize,
                    resume_from: from_sql(r.get(2)?),
                    first_epoch: from_sql(r.get(3)?),
                })
            })
            .map_err(|e| self.fail("cannot read", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.fail("cannot read", e))
    }

    /// The fronts of execution `ex`: (worker, epoch).
    pub(crate) fn fronts(&self, ex: u64) -> Result<Vec<(usize, Epoch)>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT worker, epoch FROM fronts WHERE ex = ?1")
            .map_err(|e| self.fail("cannot read", e))?;
        let rows = st
            .query_map([ex as i64], |r| {
                Ok((r.get::<_, i64>(0)? as usize, from_sql(r.get(1)?)))
            })
            .map_err(|e| self.fail("cannot read", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.fail("cannot read", e))
    }

    /// The largest finite epoch of any snapshot or front.
    pub(crate) fn max_epoch(&self) -> Result<Epoch, Error> {
        let q = "SELECT max(e) FROM (
                    SELECT max(epoch) AS e FROM snaps WHERE epoch < 9223372036854775807
                    UNION ALL SELECT max(epoch) FROM fronts WHERE epoch < 9223372036854775807
                    UNION ALL SELECT max(first_epoch) FROM execs)";
        let m: Option<i64> = self
            .conn
            .query_row(q, [], |r| r.get(0))
            .map_err(|e| self.fail("cannot read", e))?;
        Ok(m.map_or(0, from_sql))
    }

    /// Records execution `exec` and the flow, and deletes what older executions wrote
    /// after `exec.resume_from`.
    pub(crate) fn begin(&mut self, exec: &Execution, flow: &str, fp: u64) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| err(&self.path, "cannot write", e))?;
        tx.execute(
            "INSERT OR REPLACE INTO meta VALUES ('flow', ?1), ('fingerprint', ?2)",
            params![flow, fp as i64],
        )
        .and_then(|_| {
            tx.execute(
                "INSERT OR IGNORE INTO execs VALUES (?1, ?2, ?3, ?4)",
                params![
                    exec.ex as i64,
                    exec.worker_count as i64,
                    to_sql(exec.resume_from),
                    to_sql(exec.first_epoch)
                ],
            )
        })
        .and_then(|_| {
            tx.execute(
                "DELETE FROM snaps WHERE ex < ?1 AND epoch > ?2",
                params![exec.ex as i64, to_sql(exec.resume_from)],
            )
        })
        .and_then(|_| tx.commit())
        .map_err(|e| err(&self.path, "cannot write", e))
    }

    /// Deletes every snapshot that a snapshot with epoch <= `upto` supersedes, and the
    /// discards that then shadow nothing.
    pub(crate) fn collect_garbage(&mut self, upto: Epoch) -> Result<usize, Error> {
        let upto = to_sql(upto);
        let tx = self
            .conn
            .transaction()
            .map_err(|e| err(&self.path, "cannot write", e))?;
        let n = tx
            .execute(
                "DELETE FROM snaps WHERE epoch < ?1 AND EXISTS (
                    SELECT 1 FROM snaps AS s2 WHERE s2.step_id = snaps.step_id
                    AND s2.state_key = snaps.state_key
                    AND s2.epoch > snaps.epoch AND s2.epoch <= ?1)",
                [upto],
            )
            .and_then(|a| {
                tx.execute(
                    "DELETE FROM snaps WHERE state IS NULL AND epoch <= ?1 AND NOT EXISTS (
                        SELECT 1 FROM snaps AS s2 WHERE s2.step_id = snaps.step_id
                        AND s2.state_key = snaps.state_key AND s2.epoch < snaps.epoch)",
                    [upto],
                )
                .map(|b| a + b)
            })
            .map_err(|e| err(&self.path, "cannot collect garbage in", e))?;
        tx.commit()
            .map_err(|e| err(&self.path, "cannot write", e))?;
        Ok(n)
    }

    /// Writes snapshot rows and workers' fronts of execution `ex` in one transaction.
    pub(crate) fn write(
        &mut self,
        ex: u64,
        rows: &[super::RowRef<'_>],
        fronts: &[(usize, Epoch)],
    ) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| err(&self.path, "cannot write", e))?;
        {
            let mut snap = tx
                .prepare_cached(
                    "INSERT INTO snaps VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT DO UPDATE SET ex = excluded.ex, kind = excluded.kind,
                     state = excluded.state",
                )
                .map_err(|e| err(&self.path, "cannot write", e))?;
            for r in rows {
                snap.execute(params![
                    &**r.step,
                    r.key,
                    to_sql(r.epoch),
                    ex as i64,
                    r.kind as i64,
                    r.state
                ])
                .map_err(|e| err(&self.path, "cannot write", e))?;
            }
            let mut front = tx
                .prepare_cached("INSERT OR REPLACE INTO fronts VALUES (?1, ?2, ?3)")
                .map_err(|e| err(&self.path, "cannot write", e))?;
            for &(w, e) in fronts {
                front
                    .execute(params![ex as i64, w as i64, to_sql(e)])
                    .map_err(|e| err(&self.path, "cannot write", e))?;
            }
        }
        tx.commit().map_err(|e| err(&self.path, "cannot write", e))
    }

    /// WAL with `synchronous=NORMAL`: a commit survives a crash of the process; a power
    /// loss may lose the last commits of a file, which only moves the resume point back
    /// (each file holds a worker's front with the rows it covers).
    pub(crate) fn tune_for_writing(&self) -> Result<(), Error> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .and_then(|_| self.conn.pragma_update(None, "cache_size", -32768))
            .map_err(|e| err(&self.path, "cannot configure", e))
    }
}

/// One row of [`Latest`]: step id, key, state (`None`: a discard), epoch, kind.
type RowView<'a> = (&'a str, &'a [u8], Option<&'a [u8]>, i64, u8);

/// The latest row per (step, key) of one partition, in key order, packed.
#[derive(Default)]
struct Latest {
    /// Step ids in order of appearance (rows are sorted by step first).
    steps: Vec<String>,
    /// (index into `steps`, end of key in `bytes`, end of state, epoch, kind, has state)
    rows: Vec<(u32, u32, u32, i64, u8, bool)>,
    bytes: Vec<u8>,
}

impl Latest {
    fn row(&self, i: usize) -> RowView<'_> {
        let (step, key_end, state_end, epoch, kind, has) = self.rows[i];
        let start = if i == 0 {
            0
        } else {
            self.rows[i - 1].2 as usize
        };
        let key = &self.bytes[start..key_end as usize];
        let state = has.then(|| &self.bytes[key_end as usize..state_end as usize]);
        (&self.steps[step as usize], key, state, epoch, kind)
    }
}

/// Reads the latest row with epoch <= `upto` of every (step, key) of one partition.
fn read_latest(p: &Partition, upto: Epoch) -> Result<Latest, Error> {
    let fail = |e: rusqlite::Error| err(&p.path, "cannot read", e);
    let mut st = p
        .conn
        .prepare(
            "SELECT step_id, state_key, epoch, kind, state FROM snaps WHERE epoch <= ?1
             ORDER BY step_id, state_key, epoch",
        )
        .map_err(fail)?;
    let mut rows = st.query([to_sql(upto)]).map_err(fail)?;
    let mut out = Latest::default();
    let mut key_start = 0usize;
    while let Some(r) = rows.next().map_err(fail)? {
        let step = r
            .get_ref(0)
            .and_then(|v| v.as_str().map_err(Into::into))
            .map_err(fail)?;
        let key = r
            .get_ref(1)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(fail)?;
        let epoch: i64 = r.get(2).map_err(fail)?;
        let kind = r.get::<_, i64>(3).map_err(fail)? as u8;
        let state = r
            .get_ref(4)
            .and_then(|v| v.as_blob_or_null().map_err(Into::into))
            .map_err(fail)?;
        let same_step = out.steps.last().is_some_and(|s| s == step);
        let same_key = same_step
            && out
                .rows
                .last()
                .is_some_and(|&(_, key_end, ..)| &out.bytes[key_start..key_end as usize] == key);
        if same_key {
            // A later epoch of the same key: replace the last row's state.
            let (_, key_end, ..) = *out.rows.last().expect("checked");
            out.bytes.truncate(key_end as usize);
        } else {
            if !same_step {
                out.steps.push(step.to_string());
            }
            key_start = out.bytes.len();
            out.bytes.extend_from_slice(key);
            out.rows.push((
                (out.steps.len() - 1) as u32,
                out.bytes.len() as u32,
                0,
                0,
                0,
                false,
            ));
        }
        out.bytes.extend_from_slice(state.unwrap_or_default());
        let last = out.rows.last_mut().expect("pushed above");
        last.2 = out.bytes.len() as u32;
        last.3 = epoch;
        last.4 = kind;
        last.5 = state.is_some();
    }
    Ok(out)
}

/// Calls `visit(step_id, kind, key, state)` for the latest snapshot with epoch <= `upto`
/// of every (step, key) that has state, over all partitions. A key's rows live in one
/// partition (the writer routes them by key), but the partitions are merged as if they
/// could be anywhere: the latest row wins, so a key is never loaded twice. Partitions
/// are read in parallel, one thread each.
pub(crate) fn load_latest(
    parts: &mut [Partition],
    upto: Epoch,
    mut visit: impl FnMut(&str, u8, &[u8], &[u8]),
) -> Result<(), Error> {
    let latest: Vec<Latest> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter_mut()
            .map(|p| scope.spawn(move || read_latest(p, upto)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect::<Result<Vec<_>, Error>>()
    })?;
    let mut next = vec![0usize; latest.len()];
    loop {
        // The smallest (step, key) among the partitions' next rows.
        let Some(min) = latest
            .iter()
            .zip(&next)
            .filter(|(l, &i)| i < l.rows.len())
            .map(|(l, &i)| {
                let (step, key, ..) = l.row(i);
                (step, key)
            })
            .min()
        else {
            return Ok(());
        };
        let mut best: Option<RowView<'_>> = None;
        for (l, i) in latest.iter().zip(next.iter_mut()) {
            if *i < l.rows.len() {
                let row = l.row(*i);
                if (row.0, row.1) == min {
                    *i += 1;
                    if best.is_none_or(|b| row.3 > b.3) {
                        best = Some(row);
                    }
                }
            }
        }
        if let Some((step, key, Some(state), _, kind)) = best {
            visit(step, kind, key, state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::{kind, Rows};
    use std::sync::Arc;

    fn exec(ex: u64) -> Execution {
        Execution {
            ex,
            worker_count: 1,
            resume_from: 0,
            first_epoch: 1,
        }
    }

    fn put(
        p: &mut Partition,
        ex: u64,
        step: &Arc<str>,
        key: &str,
        epoch: Epoch,
        state: Option<u8>,
    ) {
        let mut rows = Rows::default();
        rows.push(
            step,
            kind::KEY,
            epoch,
            |b| b.extend_from_slice(key.as_bytes()),
            |b| {
                b.extend(state);
                Ok(state.is_some())
            },
        )
        .unwrap();
        let refs: Vec<_> = rows.iter().collect();
        p.write(ex, &refs, &[]).unwrap();
    }

    fn latest(parts: &mut [Partition], upto: Epoch) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        load_latest(parts, upto, |_, _, k, s| {
            out.push((String::from_utf8(k.to_vec()).unwrap(), s.to_vec()))
        })
        .unwrap();
        out
    }

    /// Regression: a key whose rows are in two partitions (written by different
    /// workers before and after a rescale) was loaded twice, once per partition.
    #[test]
    fn a_key_in_two_partitions_loads_once_with_its_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), 2).unwrap();
        let mut parts = open_all(dir.path(), "-r").unwrap();
        let step: Arc<str> = "f.s".into();
        put(&mut parts[0], 0, &step, "a", 3, Some(1));
        put(&mut parts[1], 1, &step, "a", 7, Some(2));
        put(&mut parts[0], 0, &step, "b", 3, Some(5));
        put(&mut parts[1], 1, &step, "b", 7, None);
        put(&mut parts[1], 1, &step, "c", 9, Some(8));
        assert_eq!(
            latest(&mut parts, 7),
            vec![("a".into(), vec![2])],
            "b discarded at 7"
        );
        assert_eq!(
            latest(&mut parts, 5),
            vec![("a".into(), vec![1]), ("b".into(), vec![5])]
        );
        assert_eq!(latest(&mut parts, EOF_EPOCH).len(), 2);
    }

    #[test]
    fn garbage_collection_keeps_the_latest_row_up_to_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), 1).unwrap();
        let mut parts = open_all(dir.path(), "-r").unwrap();
        let step: Arc<str> = "f.s".into();
        for e in 1..=5 {
            put(&mut parts[0], 0, &step, "a", e, Some(e as u8));
        }
        put(&mut parts[0], 0, &step, "b", 2, Some(9));
        put(&mut parts[0], 0, &step, "b", 3, None);
        // Up to 3: a@1, a@2 go (a@3 supersedes them); b@2 goes, then its discard too.
        assert_eq!(parts[0].collect_garbage(3).unwrap(), 4);
        assert_eq!(latest(&mut parts, 3), vec![("a".into(), vec![3])]);
        assert_eq!(latest(&mut parts, 5), vec![("a".into(), vec![5])]);
    }

    #[test]
    fn begin_deletes_what_workers_wrote_after_the_resume_point() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), 1).unwrap();
        let mut parts = open_all(dir.path(), "-r").unwrap();
        let step: Arc<str> = "f.s".into();
        put(&mut parts[0], 0, &step, "a", 2, Some(1));
        put(&mut parts[0], 0, &step, "a", 6, Some(2));
        let next = Execution {
            resume_from: 4,
            first_epoch: 7,
            ..exec(1)
        };
        parts[0].begin(&next, "f", 1).unwrap();
        assert_eq!(latest(&mut parts, EOF_EPOCH), vec![("a".into(), vec![1])]);
        assert_eq!(parts[0].executions().unwrap(), vec![next]);
        assert_eq!(parts[0].flow().unwrap(), Some(("f".into(), 1)));
    }

    #[test]
    fn init_refuses_a_directory_with_partitions_and_a_zero_count() {
        let dir = tempfile::tempdir().unwrap();
        assert!(init(dir.path(), 0).is_err());
        init(dir.path(), 2).unwrap();
        let e = init(dir.path(), 2).unwrap_err().to_string();
        assert!(e.contains("already holds recovery partitions"), "{e}");
        // A partition whose count disagrees with the others' is named.
        std::fs::remove_file(part_path(dir.path(), 1)).unwrap();
        let other = tempfile::tempdir().unwrap();
        init(other.path(), 3).unwrap();
        std::fs::copy(part_path(other.path(), 1), part_path(dir.path(), 1)).unwrap();
        let e = open_all(dir.path(), "-r").unwrap_err().to_string();
        assert!(
            e.contains("part-1.sqlite3") && e.contains("3 partitions"),
            "{e}"
        );
    }
}
