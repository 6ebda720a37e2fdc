//! CSV files.
//!
//! [`CsvSource`] reads a CSV file with a header row, either as [`CsvRow`]s (header names
//! to text values) or, through serde, as any type that implements `Deserialize`. It is
//! Bytewax's `CSVSource`: one partition named by the path, resumable by byte offset.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use csv::{ByteRecord, StringRecord};
use serde::de::DeserializeOwned;

use crate::error::BoxError;
use crate::io::{
    FixedPartitionedSource, Source, SourceKind, SourceStatus, StatefulSourcePartition,
};
use crate::runtime::push::Data;

/// One row of a CSV file: the header names with this row's values, in header order.
///
/// Cheap to clone apart from the values themselves: every row of a file shares one
/// copy of the header.
///
/// ```
/// # use std::io::Write;
/// use waxfast::connectors::csv::CsvSource;
/// use waxfast::io::{FixedPartitionedSource, StatefulSourcePartition};
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("people.csv");
/// # std::fs::write(&path, "name,age\nada,36\n").unwrap();
/// let source = CsvSource::new(&path);
/// let mut part = source.build_part("inp", &source.list_parts().unwrap()[0], None).unwrap();
/// let mut rows = Vec::new();
/// part.next_batch(&mut rows).unwrap();
/// assert_eq!(rows[0].get("name"), Some("ada"));
/// assert_eq!(rows[0].get("age"), Some("36"));
/// assert_eq!(rows[0].get("email"), None);
/// assert_eq!(rows[0].iter().collect::<Vec<_>>(), vec![("name", "ada"), ("age", "36")]);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CsvRow {
    headers: Arc<StringRecord>,
    values: StringRecord,
}

impl CsvRow {
    /// The value in the column named `column` (the first such column if the header
    /// repeats a name), or `None` if the header has no such column.
    pub fn get(&self, column: &str) -> Option<&str> {
        let i = self.headers.iter().position(|h| h == column)?;
        self.values.get(i)
    }

    /// The value in column `index` (0-based), in header order.
    pub fn get_index(&self, index: usize) -> Option<&str> {
        self.values.get(index)
    }

    /// The values past the header's columns, in a row with more fields than the
    /// header (only with [`CsvSource::flexible`]): what Python's `DictReader` puts under
    /// its `restkey`. Empty for other rows.
    ///
    /// ```
    /// use waxfast::connectors::csv::CsvSource;
    /// use waxfast::io::{FixedPartitionedSource, StatefulSourcePartition};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("ragged.csv");
    /// std::fs::write(&path, "a,b\n1\n1,2,3,4\n").unwrap();
    /// let source = CsvSource::new(&path).flexible();
    /// let mut part = source.build_part("inp", &source.list_parts().unwrap()[0], None).unwrap();
    /// let mut rows = Vec::new();
    /// part.next_batch(&mut rows).unwrap();
    /// assert_eq!((rows[0].get("a"), rows[0].get("b")), (Some("1"), None)); // DictReader: None
    /// assert_eq!(rows[1].extra().collect::<Vec<_>>(), vec!["3", "4"]);
    /// ```
    pub fn extra(&self) -> impl Iterator<Item = &str> {
        self.values.iter().skip(self.headers.len())
    }

    /// The header names, in file order.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.headers.iter()
    }

    /// The values, in header order.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter()
    }

    /// `(header, value)` pairs, in header order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().zip(self.values.iter())
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the row has no columns (only for a file with an empty header).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for CsvRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Turns a raw record into an item; the error says what is wrong, without a location.
type Decode<T> = fn(&mut ByteRecord, &Arc<StringRecord>) -> Result<T, String>;

fn decode_row(record: &mut ByteRecord, headers: &Arc<StringRecord>) -> Result<CsvRow, String> {
    match StringRecord::from_byte_record(std::mem::take(record)) {
        Ok(values) => Ok(CsvRow {
            headers: headers.clone(),
            values,
        }),
        Err(e) => {
            let field = e.utf8_error().field();
            Err(format!(
                "invalid UTF-8 in field {}{}",
                field + 1,
                column_name(headers, field as u64)
            ))
        }
    }
}

fn decode_typed<T: DeserializeOwned>(
    record: &mut ByteRecord,
    headers: &Arc<StringRecord>,
) -> Result<T, String> {
    record
        .deserialize(Some(headers.as_byte_record()))
        .map_err(|e| match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                Some(field) => format!(
                    "cannot deserialize field {}{}: {}",
                    field + 1,
                    column_name(headers, field),
                    err.kind()
                ),
                None => format!("cannot deserialize the row: {}", err.kind()),
            },
            _ => format!("cannot deserialize the row: {e}"),
        })
}

/// ` ("name")` for a 0-based field index, or nothing past the header.
fn column_name(headers: &StringRecord, field: u64) -> String {
    usize::try_from(field)
        .ok()
        .and_then(|i| headers.get(i))
        .map(|h| format!(" ({h:?})"))
        .unwrap_or_default()
}

/// Reads a CSV file with a header row, in one partition named by the path.
///
/// [`CsvSource::new`] yields a [`CsvRow`] per record; [`CsvSource::typed`] deserializes
/// each record into your type with serde, matching struct fields to header names. The
/// resume state is the byte offset of the next record: a resumed run reads the header
/// from the start of the file, then seeks to the offset.
///
/// Errors name the file: a missing or unreadable file, a directory, or a header that is
/// not UTF-8 fail when the partition is built, before any output; a row with a different
/// number of fields than the header, a row that does not deserialize, and a value that
/// is not UTF-8 fail the run with the file and the row's line number.
///
/// ```
/// use serde::Deserialize;
/// use waxfast::Dataflow;
/// use waxfast::connectors::csv::CsvSource;
/// use waxfast::connectors::testing::TestingSink;
///
/// #[derive(Debug, Clone, PartialEq, Deserialize)]
/// struct Trade { symbol: String, price: f64 }
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("trades.csv");
/// std::fs::write(&path, "symbol;price\nAAPL;187.5\nMSFT;410\n").unwrap();
/// let flow = Dataflow::new("trades");
/// let (sink, out) = TestingSink::new();
/// flow.input("inp", CsvSource::typed::<Trade>(&path).delimiter(b';'))
///     .output("out", sink);
/// waxfast::run_main(&flow).unwrap();
/// assert_eq!(out.take(), vec![
///     Trade { symbol: "AAPL".into(), price: 187.5 },
///     Trade { symbol: "MSFT".into(), price: 410.0 },
/// ]);
/// ```
pub struct CsvSource<T = CsvRow> {
    path: PathBuf,
    dialect: Dialect,
    batch_size: usize,
    decode: Decode<T>,
    _item: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for CsvSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsvSource")
            .field("path", &self.path)
            .field("dialect", &self.dialect)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl<T> Clone for CsvSource<T> {
    fn clone(&self) -> Self {
        CsvSource {
            path: self.path.clone(),
            dialect: self.dialect,
            batch_size: self.batch_size,
            decode: self.decode,
            _item: PhantomData,
        }
    }
}

impl CsvSource<CsvRow> {
    /// Reads `path` as [`CsvRow`]s: comma-delimited, 1000 rows per batch (Bytewax's
    /// default).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self::with_decode(path, decode_row)
    }

    /// Reads `path` deserializing each row into `T` (fields matched by header name).
    pub fn typed<T: DeserializeOwned>(path: impl AsRef<Path>) -> CsvSource<T> {
        CsvSource::with_decode(path, decode_typed::<T>)
    }
}

impl<T> CsvSource<T> {
    fn with_decode(path: impl AsRef<Path>, decode: Decode<T>) -> Self {
        CsvSource {
            path: path.as_ref().to_path_buf(),
            dialect: Dialect::default(),
            batch_size: 1000,
            decode,
            _item: PhantomData,
        }
    }

    /// The field delimiter (default `b','`; `b'\t'` for TSV; Python's `delimiter`).
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.dialect.delimiter = delimiter;
        self
    }

    /// The quote character (default `b'"'`; Python's `quotechar`).
    pub fn quote(mut self, quote: u8) -> Self {
        self.dialect.quote = quote;
        self
    }

    /// An escape character inside quoted fields (default none; Python's `escapechar`).
    /// Python also honours it outside quotes; the `csv` crate used here does not.
    pub fn escape(mut self, escape: u8) -> Self {
        self.dialect.escape = Some(escape);
        self
    }

    /// Whether two quote characters in a quoted field stand for one (default `true`;
    /// Python's `doublequote`).
    pub fn double_quote(mut self, yes: bool) -> Self {
        self.dialect.double_quote = yes;
        self
    }

    /// Whether quote characters are special at all (default `true`; `false` is
    /// Python's `quoting=csv.QUOTE_NONE`).
    pub fn quoting(mut self, yes: bool) -> Self {
        self.dialect.quoting = yes;
        self
    }

    /// Accepts rows with fewer or more fields than the header, as Python's
    /// `DictReader` (so Bytewax's `CSVSource`) does: a missing column reads as `None`
    /// ([`CsvRow::get`]), extra values are in [`CsvRow::extra`], and a typed row's
    /// missing `Option` fields are `None`. Without it such a row fails the run, naming
    /// the file and line: a ragged row is more often a broken file than a wish.
    pub fn flexible(mut self) -> Self {
        self.dialect.flexible = true;
        self
    }

    /// Rows per batch (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

/// How a CSV file is written: Python's `csv` dialect parameters that the `csv` crate
/// supports (`skipinitialspace` is not among them), and whether rows may be ragged.
#[derive(Debug, Clone, Copy)]
struct Dialect {
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
    double_quote: bool,
    quoting: bool,
    flexible: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            delimiter: b',',
            quote: b'"',
            escape: None,
            double_quote: true,
            quoting: true,
            flexible: false,
        }
    }
}

/// The partition of a [`CsvSource`].
pub struct CsvPartition<T> {
    path: PathBuf,
    reader: csv::Reader<File>,
    headers: Arc<StringRecord>,
    record: ByteRecord,
    /// Byte offset of the next record: the resume state.
    offset: u64,
    batch_size: usize,
    decode: Decode<T>,
    /// An error found after rows of the same batch, reported on the next call.
    failed: Option<BoxError>,
}

impl<T> fmt::Debug for CsvPartition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsvPartition")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .finish()
    }
}

impl<T> CsvPartition<T> {
    /// `path: line N: what`, with the line of the record starting at `record_start`.
    fn row_error(&self, record_start: Option<&csv::Position>, what: &str) -> BoxError {
        match record_start {
            Some(pos) => {
                let line = line_of(&self.path, pos.byte()).unwrap_or(pos.line());
                format!("{}: line {line}: {what}", self.path.display()).into()
            }
            None => format!("{}: {what}", self.path.display()).into(),
        }
    }

    fn read_error(&self, e: csv::Error) -> BoxError {
        match e.kind() {
            csv::ErrorKind::UnequalLengths {
                pos,
                expected_len,
                len,
            } => self.row_error(
                pos.as_ref(),
                &format!(
                    "the row has {len} field{}, but the header has {expected_len}",
                    if *len == 1 { "" } else { "s" }
                ),
            ),
            csv::ErrorKind::Io(io) => format!("cannot read {}: {io}", self.path.display()).into(),
            _ => self.row_error(e.position(), &e.to_string()),
        }
    }
}

/// The 1-based line on which the record that the CSV reader started at `byte` begins.
///
/// The reader's own line count is not used: it is relative after a seek, it counts a
/// record from before the blank lines it skips, and it is one short after a CRLF line
/// ending (the record's position then points at the `\n`). This is only called on an
/// error, so reading the file's prefix again costs nothing that matters.
fn line_of(path: &Path, byte: u64) -> Option<u64> {
    let mut reader = BufReader::new(File::open(path).ok()?);
    let (mut line, mut pos) = (1u64, 0u64);
    loop {
        let buf = reader.fill_buf().ok()?;
        if buf.is_empty() {
            return Some(line);
        }
        if pos < byte {
            let take = buf
                .len()
                .min(usize::try_from(byte - pos).unwrap_or(usize::MAX));
            line += buf[..take].iter().filter(|&&b| b == b'\n').count() as u64;
            pos += take as u64;
            reader.consume(take);
        } else {
            // Skip the line endings of blank lines the reader passes over.
            let ends = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n');
            let (mut n, mut newlines) = (0, 0u64);
            for &b in ends {
                n += 1;
                newlines += u64::from(b == b'\n');
            }
            line += newlines;
            if n < buf.len() {
                return Some(line);
            }
            reader.consume(n);
        }
    }
}

impl<T: Send + 'static> StatefulSourcePartition for CsvPartition<T> {
    type Item = T;
    type State = u64;

    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let before = batch.len();
        for _ in 0..self.batch_size {
            let step = match self.reader.read_byte_record(&mut self.record) {
                Ok(true) => {
                    let start = self.record.position().cloned();
                    (self.decode)(&mut self.record, &self.headers)
                        .map_err(|what| self.row_error(start.as_ref(), &what))
                }
                Ok(false) => return Ok(SourceStatus::Eof),
                Err(e) => Err(self.read_error(e)),
            };
            match step {
                Ok(item) => {
                    batch.push(item);
                    self.offset = self.reader.position().byte();
                }
                // Deliver the rows before the bad one first; fail on the next call.
                Err(e) if batch.len() > before => {
                    self.failed = Some(e);
                    return Ok(SourceStatus::Active);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(SourceStatus::Active)
    }

    fn snapshot(&self) -> u64 {
        self.offset
    }
}

impl<T: Send + 'static> FixedPartitionedSource for CsvSource<T> {
    type Item = T;
    type Part = CsvPartition<T>;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        Ok(vec![self.path.display().to_string()])
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume_state: Option<u64>,
    ) -> Result<CsvPartition<T>, BoxError> {
        let path = &self.path;
        if path.is_dir() {
            return Err(format!("{} is a directory, expected a CSV file", path.display()).into());
        }
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let d = self.dialect;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(d.delimiter)
            .quote(d.quote)
            .escape(d.escape)
            .double_quote(d.double_quote)
            .quoting(d.quoting)
            .flexible(d.flexible)
            .buffer_capacity(1 << 16)
            .from_reader(file);
        let header_bytes = reader
            .byte_headers()
            .map_err(|e| format!("cannot read the header of {}: {e}", path.display()))?
            .clone();
        let headers = StringRecord::from_byte_record(header_bytes).map_err(|e| {
            format!(
                "{}: line {}: invalid UTF-8 in header field {}",
                path.display(),
                line_of(path, 0).unwrap_or(1),
                e.utf8_error().field() + 1
            )
        })?;
        let mut offset = reader.position().byte();
        if let Some(resume) = resume_state.filter(|&r| r > offset) {
            // The position's line is only used as a fallback; see `line_of`.
            let mut pos = csv::Position::new();
            pos.set_byte(resume).set_line(1);
            reader
                .seek(pos)
                .map_err(|e| format!("cannot seek to byte {resume} in {}: {e}", path.display()))?;
            offset = resume;
        }
        Ok(CsvPartition {
            path: path.clone(),
            reader,
            headers: Arc::new(headers),
            record: ByteRecord::new(),
            offset,
            batch_size: self.batch_size,
            decode: self.decode,
            failed: None,
        })
    }
}

impl<T: Data> Source<T> for CsvSource<T> {
    fn into_kind(self) -> SourceKind<T> {
        SourceKind::fixed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn write(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    fn read_all<T: Send + 'static>(p: &mut CsvPartition<T>) -> Result<Vec<T>, String> {
        let mut out = Vec::new();
        loop {
            match p.next_batch(&mut out) {
                Ok(SourceStatus::Eof) => return Ok(out),
                Ok(SourceStatus::Active) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn pairs(rows: &[CsvRow]) -> Vec<Vec<(String, String)>> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn rows_keep_header_order_and_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "a.csv",
            b"\xef\xbb\xbfz,a,m\r\n1,\"two, with comma\",3\r\n\r\n4,\"multi\nline\",6\r\n",
        );
        let src = CsvSource::new(&path);
        assert_eq!(src.list_parts().unwrap(), vec![path.display().to_string()]);
        let rows = read_all(&mut src.build_part("s", "p", None).unwrap()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].headers().collect::<Vec<_>>(), vec!["z", "a", "m"]);
        assert_eq!(rows[0].get("a"), Some("two, with comma"));
        assert_eq!(rows[1].get("a"), Some("multi\nline"));
        assert_eq!(rows[1].get_index(2), Some("6"));
        assert_eq!(rows[1].get("missing"), None);
        assert_eq!(
            format!("{:?}", rows[0]),
            r#"{"z": "1", "a": "two, with comma", "m": "3"}"#
        );
    }

    #[test]
    fn delimiter_batch_size_and_resume_from_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "t.tsv", b"k\tv\na\t1\nb\t2\nc\t3\n");
        let src = CsvSource::new(&path).delimiter(b'\t').batch_size(2);
        let mut p = src.build_part("s", "p", None).unwrap();
        assert_eq!(p.snapshot(), 4, "before any row: just past the header");
        let mut first = Vec::new();
        assert_eq!(p.next_batch(&mut first).unwrap(), SourceStatus::Active);
        assert_eq!(first.len(), 2);
        let pos = p.snapshot();
        assert_eq!(pos, 12);
        let rest = read_all(&mut p).unwrap();
        let resumed = read_all(&mut src.build_part("s", "p", Some(pos)).unwrap()).unwrap();
        assert_eq!(pairs(&rest), pairs(&resumed));
        assert_eq!(resumed[0].get("k"), Some("c"));
        assert_eq!(resumed[0].get("v"), Some("3"));
        // A resume state inside the header starts at the first row, never at the header.
        let all = read_all(&mut src.build_part("s", "p", Some(0)).unwrap()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].get("k"), Some("a"));
    }

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Rec {
        name: String,
        n: u32,
    }

    #[test]
    fn typed_rows_by_header_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "t.csv", b"n,name\n1,x\n2,y\n");
        let src = CsvSource::typed::<Rec>(&path);
        let rows = read_all(&mut src.build_part("s", "p", None).unwrap()).unwrap();
        assert_eq!(
            rows,
            vec![
                Rec {
                    name: "x".into(),
                    n: 1
                },
                Rec {
                    name: "y".into(),
                    n: 2
                }
            ]
        );
    }

    #[test]
    fn wrong_field_count_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        // Line 5 is the bad row: blank lines and a quoted newline come before it.
        let path = write(&dir, "bad.csv", b"a,b\n\"1\n1\",2\n\n3,4,5\n");
        let mut p = CsvSource::new(&path).build_part("s", "p", None).unwrap();
        let mut b = Vec::new();
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert_eq!(
            b.len(),
            1,
            "the good row before the bad one is delivered first"
        );
        let err = p.next_batch(&mut b).unwrap_err().to_string();
        assert_eq!(b.len(), 1);
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 5:"), "{err}");
        assert!(err.contains("3 fields, but the header has 2"), "{err}");
    }

    #[test]
    fn line_numbers_survive_crlf_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "crlf.csv", b"a,b\r\n1,2\r\n3,4\r\n\r\n5\r\n");
        let src = CsvSource::new(&path).batch_size(1);
        let mut p = src.build_part("s", "p", None).unwrap();
        let mut b = Vec::new();
        p.next_batch(&mut b).unwrap();
        let pos = p.snapshot();
        let err = read_all(&mut p).unwrap_err();
        assert!(err.contains("line 5:"), "{err}");
        let err = read_all(&mut src.build_part("s", "p", Some(pos)).unwrap()).unwrap_err();
        assert!(err.contains("line 5:"), "after resume: {err}");
    }

    #[test]
    fn typed_row_that_does_not_deserialize_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "t.csv", b"name,n\nx,1\ny,lots\n");
        let mut p = CsvSource::typed::<Rec>(&path)
            .build_part("s", "p", None)
            .unwrap();
        let err = read_all(&mut p).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 3:"), "{err}");
        assert!(err.contains("field 2 (\"n\")"), "{err}");
    }

    #[test]
    fn invalid_utf8_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "u.csv", b"a,b\nok,1\nbad \xff,2\n");
        let err =
            read_all(&mut CsvSource::new(&path).build_part("s", "p", None).unwrap()).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains("line 3: invalid UTF-8 in field 1 (\"a\")"),
            "{err}"
        );
        let err = read_all(
            &mut CsvSource::typed::<(String, u32)>(&path)
                .build_part("s", "p", None)
                .unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("line 3:"), "typed: {err}");
        let path = write(&dir, "h.csv", b"a,\xfe\n1,2\n");
        let err = CsvSource::new(&path)
            .build_part("s", "p", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("h.csv: line 1: invalid UTF-8 in header field 2"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_and_directory_fail_when_built() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.csv");
        let err = CsvSource::new(&missing)
            .build_part("s", "p", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot open") && err.contains("nope.csv"),
            "{err}"
        );
        let err = CsvSource::new(dir.path())
            .build_part("s", "p", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn empty_file_and_header_only_file_have_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        for data in [&b""[..], b"a,b\n", b"a,b"] {
            let path = write(&dir, "e.csv", data);
            let rows = read_all(&mut CsvSource::new(&path).build_part("s", "p", None).unwrap());
            assert_eq!(rows.unwrap().len(), 0, "{data:?}");
        }
    }
}
