//! Measures the two ways `FileSource` could read a file's lines: buffered reads (what
//! it does: a 64 KiB `BufReader`, `read_until(b'\n')`, UTF-8 check, one `String` per
//! line) and a memory map (memmap2: find each newline in the mapped bytes, UTF-8 check,
//! one `String` per line). Both hand out owned lines, as a source must.
//!
//! ```sh
//! cargo run --release --example read_lines -- FILE [ROUNDS]
//! ```
//! Prints GB/s per method and round, interleaved; used for the "Files" section of
//! BENCHMARKS.md.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::time::Instant;

fn buffered(path: &str) -> (usize, usize) {
    let mut r = BufReader::with_capacity(64 << 10, File::open(path).expect("open"));
    let mut buf = Vec::new();
    let (mut lines, mut bytes) = (0, 0);
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).expect("read");
        if n == 0 {
            break;
        }
        let line = String::from_utf8(buf.clone()).expect("utf-8");
        bytes += line.len();
        lines += 1;
        std::hint::black_box(line);
    }
    (lines, bytes)
}

fn mapped(path: &str) -> (usize, usize) {
    let f = File::open(path).expect("open");
    // SAFETY: the file is not modified while mapped (a benchmark input nobody writes);
    // a concurrent truncation would fault, which is why FileSource does not map files.
    let map = unsafe { memmap2::Mmap::map(&f) }.expect("mmap");
    let (mut lines, mut bytes) = (0, 0);
    let mut rest: &[u8] = &map;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let line = std::str::from_utf8(&rest[..end]).expect("utf-8").to_owned();
        bytes += line.len();
        lines += 1;
        std::hint::black_box(line);
        rest = &rest[end..];
    }
    (lines, bytes)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: read_lines FILE [ROUNDS]");
    let rounds: usize = args.next().map_or(3, |r| r.parse().expect("ROUNDS"));
    for round in 1..=rounds {
        for (name, f) in [("buffered", buffered as fn(&str) -> _), ("mmap", mapped)] {
            let t = Instant::now();
            let (lines, bytes) = f(&path);
            let s = t.elapsed().as_secs_f64();
            println!(
                "round {round} {name:8} {lines} lines {:.3} s {:.3} GB/s",
                s,
                bytes as f64 / s / 1e9
            );
        }
    }
}
