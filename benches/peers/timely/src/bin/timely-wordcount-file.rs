//! File wordcount in timely-dataflow 0.12: the same program as `waxfast wordcount:FILE`.
//! Each worker reads the lines that start in its byte range of the file (64 KiB buffered
//! reads), lower-cases them (ASCII in place, Unicode otherwise), counts words per batch
//! of `1 << 17` lines (the same combiner and batch size as waxfast's flow), exchanges
//! `(word, count)` by the word's hash, sums per word, and prints `word=count` lines at
//! the end.
//!
//! ```sh
//! timely-wordcount-file FILE -wW
//! ```

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};

use rustc_hash::{FxHashMap, FxHasher};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Operator, ToStream};
use waxfast_peers::{cores, pin, workers};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lines per batch: the same as waxfast's `wordcount` flow.
const BATCH: usize = 1 << 17;

/// The `(word, count)` pairs of one byte range, combined per batch of lines.
struct Words {
    reader: BufReader<File>,
    /// Bytes of the range not yet read (a line that starts inside it is read whole).
    left: i64,
    counts: std::vec::IntoIter<(String, u64)>,
    line: Vec<u8>,
}

impl Words {
    fn open(path: &str, start: u64, end: u64) -> Words {
        let mut f = File::open(path).expect("open the input file");
        let mut left = (end - start) as i64;
        if start > 0 {
            // Skip the line that started in the previous range.
            f.seek(SeekFrom::Start(start - 1)).expect("seek");
            let mut r = BufReader::with_capacity(64 << 10, f);
            let mut skip = Vec::new();
            let n = r.read_until(b'\n', &mut skip).expect("read");
            left -= n as i64 - 1;
            return Words { reader: r, left, counts: Vec::new().into_iter(), line: Vec::new() };
        }
        Words {
            reader: BufReader::with_capacity(64 << 10, f),
            left,
            counts: Vec::new().into_iter(),
            line: Vec::new(),
        }
    }

    fn refill(&mut self) -> bool {
        let mut counts: FxHashMap<String, u64> = FxHashMap::default();
        let mut add = |w: &str| match counts.get_mut(w) {
            Some(c) => *c += 1,
            None => {
                counts.insert(w.to_owned(), 1);
            }
        };
        let mut lines = 0;
        while lines < BATCH && self.left > 0 {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line).expect("read");
            if n == 0 {
                break;
            }
            self.left -= n as i64;
            lines += 1;
            let text = std::str::from_utf8_mut(&mut self.line).expect("UTF-8 text");
            if text.is_ascii() {
                text.make_ascii_lowercase();
                text.split_ascii_whitespace().for_each(&mut add);
            } else {
                text.to_lowercase().split_whitespace().for_each(&mut add);
            }
        }
        self.counts = counts.into_iter().collect::<Vec<_>>().into_iter();
        lines > 0
    }
}

impl Iterator for Words {
    type Item = (String, u64);
    fn next(&mut self) -> Option<(String, u64)> {
        loop {
            if let Some(x) = self.counts.next() {
                return Some(x);
            }
            if !self.refill() {
                return None;
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().cloned().expect("usage: timely-wordcount-file FILE -wW");
    let w = workers(&args);
    let size = std::fs::metadata(&path).expect("stat the input file").len();
    let cores = cores();
    let config = if w == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(w)
    };
    timely::execute(config, move |worker| {
        pin(&cores, worker.index());
        let (i, n) = (worker.index() as u64, worker.peers() as u64);
        let words = Words::open(&path, size * i / n, size * (i + 1) / n);
        worker.dataflow::<u64, _, _>(|scope| {
            words.to_stream(scope).sink(
                Exchange::new(|(w, _): &(String, u64)| {
                    let mut h = FxHasher::default();
                    w.hash(&mut h);
                    h.finish()
                }),
                "count",
                {
                    let mut totals: FxHashMap<String, u64> = FxHashMap::default();
                    let mut buf = Vec::new();
                    let mut done = false;
                    move |input| {
                        input.for_each(|_, data| {
                            data.swap(&mut buf);
                            for (w, c) in buf.drain(..) {
                                *totals.entry(w).or_insert(0) += c;
                            }
                        });
                        if input.frontier().is_empty() && !done {
                            done = true;
                            let mut all: Vec<(String, u64)> = totals.drain().collect();
                            all.sort_unstable();
                            let out = std::io::stdout();
                            let mut out = std::io::BufWriter::new(out.lock());
                            for (w, c) in all {
                                writeln!(out, "{w}={c}").expect("write stdout");
                            }
                        }
                    }
                },
            );
        });
    })
    .expect("timely runs");
}
