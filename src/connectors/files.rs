//! Files.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::BoxError;
use crate::io::{
    FixedPartitionedSource, Source, SourceKind, SourceStatus, StatefulSourcePartition,
};

/// Reads the lines of a text file (without their line endings), in one partition named
/// by the path. The resume state is the byte offset of the next line.
///
/// A missing or unreadable file is an error naming the path when the flow starts; a
/// line that is not valid UTF-8 is an error naming the path and the line's byte offset.
///
/// ```no_run
/// use waxfast::connectors::files::FileSource;
/// let lines = FileSource::new("input.txt").batch_size(1000);
/// # let _ = lines;
/// ```
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    batch_size: usize,
}

impl FileSource {
    /// Reads `path`, 1000 lines per batch (Bytewax's default).
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileSource {
            path: path.as_ref().to_path_buf(),
            batch_size: 1000,
        }
    }

    /// Lines per batch (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

/// The partition of a [`FileSource`].
#[derive(Debug)]
pub struct FilePartition {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    batch_size: usize,
    line: Vec<u8>,
}

impl StatefulSourcePartition for FilePartition {
    type Item = String;
    type State = u64;

    fn next_batch(&mut self, batch: &mut Vec<String>) -> Result<SourceStatus, BoxError> {
        for _ in 0..self.batch_size {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
            if n == 0 {
                return Ok(SourceStatus::Eof);
            }
            let start = self.offset;
            self.offset += n as u64;
            let mut bytes = &self.line[..];
            if let Some(b) = bytes.strip_suffix(b"\n") {
                bytes = b.strip_suffix(b"\r").unwrap_or(b);
            }
            let text = std::str::from_utf8(bytes).map_err(|e| {
                format!(
                    "{}: invalid UTF-8 in the line at byte offset {} (at byte {} of that line)",
                    self.path.display(),
                    start,
                    e.valid_up_to()
                )
            })?;
            batch.push(text.to_owned());
        }
        Ok(SourceStatus::Active)
    }

    fn snapshot(&self) -> u64 {
        self.offset
    }
}

impl FixedPartitionedSource for FileSource {
    type Item = String;
    type Part = FilePartition;

    fn list_parts(&self) -> Vec<String> {
        vec![self.path.display().to_string()]
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume_state: Option<u64>,
    ) -> Result<FilePartition, BoxError> {
        let path = &self.path;
        if path.is_dir() {
            return Err(format!("{} is a directory, expected a file", path.display()).into());
        }
        let mut file =
            File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let offset = resume_state.unwrap_or(0);
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| format!("cannot seek in {}: {e}", path.display()))?;
        }
        Ok(FilePartition {
            path: path.clone(),
            reader: BufReader::with_capacity(1 << 20, file),
            offset,
            batch_size: self.batch_size,
            line: Vec::new(),
        })
    }
}

impl Source<String> for FileSource {
    fn into_kind(self) -> SourceKind<String> {
        SourceKind::fixed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(p: &mut FilePartition) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut b = Vec::new();
            let s = p.next_batch(&mut b).unwrap();
            out.extend(b);
            if s == SourceStatus::Eof {
                return out;
            }
        }
    }

    #[test]
    fn lines_crlf_last_line_without_newline_and_resume() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"one\r\ntwo\n\nthree").unwrap();
        let src = FileSource::new(f.path()).batch_size(2);
        let mut p = src.build_part("s", "x", None).unwrap();
        let mut first = Vec::new();
        p.next_batch(&mut first).unwrap();
        assert_eq!(first, vec!["one", "two"]);
        let pos = p.snapshot();
        assert_eq!(pos, 9);
        assert_eq!(read_all(&mut p), vec!["", "three"]);
        let mut resumed = src.build_part("s", "x", Some(pos)).unwrap();
        assert_eq!(read_all(&mut resumed), vec!["", "three"]);
    }

    #[test]
    fn invalid_utf8_names_path_and_offset() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"ok\nbad \xff here\n").unwrap();
        let mut p = FileSource::new(f.path())
            .build_part("s", "x", None)
            .unwrap();
        let mut b = Vec::new();
        let err = p.next_batch(&mut b).unwrap_err().to_string();
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(err.contains("byte offset 3"), "{err}");
    }

    #[test]
    fn missing_file_and_directory_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt");
        let err = FileSource::new(&missing)
            .build_part("s", "x", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.txt"), "{err}");
        let err = FileSource::new(dir.path())
            .build_part("s", "x", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
