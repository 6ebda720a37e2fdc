//! A port of Bytewax's `examples/wordcount.py`: lower-case, tokenize with the regex
//! `[^\s!,.?":;0-9]+`, count per word, print `('word', count)` as Bytewax does.
//!
//! ```sh
//! cargo run --example wordcount -- tests/bytewax_outputs/examples/sample_data/wordcount.txt
//! ```
//!
//! (The built-in `waxfast wordcount:PATH` is a different program: it splits on
//! whitespace and prints `word=count`.) Bytewax's output for its sample file is
//! `tests/bytewax_outputs/wordcount_w1.txt`; `tests/bytewax_parity.rs` compares.

use waxfast::connectors::files::FileSource;
use waxfast::connectors::stdio::StdOutSink;
use waxfast::{run_main, Dataflow};

/// `re.findall(r'[^\s!,.?":;0-9]+', line)`: the runs of characters that are neither
/// whitespace nor one of `!,.?":;` nor an ASCII digit.
fn tokenize(line: String) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || "!,.?\":;0123456789".contains(c))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

fn main() -> Result<(), waxfast::Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/sample_data/wordcount.txt".to_string());
    let flow = Dataflow::new("wordcount");
    let stream = flow.input("inp", FileSource::new(path));
    let stream = stream.map("lower", |line: String| line.to_lowercase());
    let stream = stream.flat_map("tokenize", tokenize);
    let count_stream = stream.count_final("count", |word: String| word);
    count_stream.output("out", StdOutSink::repr());
    run_main(&flow)
}
