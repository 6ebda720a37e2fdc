//! The Nexmark flows against independent single-loop computations of the same queries
//! (`flows::nexmark::reference`, plain Rust collections) over the same generated
//! events: the `waxfast` binary's printed rows, as a multiset, at `-w1`, `-w2`, `-w8`
//! and `-p2`.

mod util;

use util::{run_with_timeout, stderr, stdout, waxfast};
use waxfast::flows::nexmark::{reference, rows, source};

/// The shapes every query runs at: worker threads, and two processes of one worker.
const SHAPES: [&[&str]; 4] = [&["-w1"], &["-w2"], &["-w8"], &["-p2", "-w1"]];

/// Runs `nexmark:{query},{events}` at every shape and compares its sorted lines with
/// `want`'s rows; `least` is how many rows the reference must at least produce (so a
/// query that selects nothing cannot pass by printing nothing).
fn check<R: std::fmt::Display>(
    query: &str,
    events: u64,
    least: usize,
    want: impl FnOnce(Box<dyn Iterator<Item = nexmark::event::Event>>, &mut dyn FnMut(R)),
) {
    let mut expected = Vec::new();
    want(Box::new(source::events(events)), &mut |r: R| {
        expected.push(r.to_string())
    });
    expected.sort_unstable();
    assert!(
        expected.len() >= least,
        "{query}: the reference gave only {} rows over {events} events",
        expected.len()
    );
    let flow = format!("nexmark:{query},{events}");
    for shape in SHAPES {
        let o = run_with_timeout(waxfast().arg(&flow).args(shape).arg("--no-pin"));
        assert!(o.status.success(), "{flow} {shape:?}: {}", stderr(&o));
        let mut got: Vec<String> = stdout(&o).lines().map(String::from).collect();
        got.sort_unstable();
        if got != expected {
            let first = got
                .iter()
                .zip(&expected)
                .position(|(g, e)| g != e)
                .unwrap_or(got.len().min(expected.len()));
            panic!(
                "{flow} {shape:?}: {} rows, the reference {}; first difference at sorted row {first}: \
                 got {:?}, expected {:?}",
                got.len(),
                expected.len(),
                got.get(first),
                expected.get(first)
            );
        }
    }
}

#[test]
fn q0_passes_every_bid_through() {
    check("q0", 100_000, 90_000, |e, out| reference::q0(e, out));
}

#[test]
fn q1_converts_every_bid_price() {
    check("q1", 100_000, 90_000, |e, out| reference::q1(e, out));
}

#[test]
fn q2_selects_the_bids_on_every_123rd_auction() {
    check("q2", 200_000, 100, |e, out| reference::q2(e, out));
}

#[test]
fn q3_joins_local_sellers_with_their_auctions() {
    check("q3", 300_000, 100, |e, out| reference::q3(e, out));
}

#[test]
fn q4_averages_winning_prices_per_category() {
    check("q4", 300_000, 5, |e, out| reference::q4(e, out));
}

#[test]
fn q5_finds_the_hot_items_of_every_sliding_window() {
    check("q5", 1_000_000, 40, |e, out| reference::q5(e, out));
}

#[test]
fn q6_averages_each_sellers_last_closed_auctions() {
    check("q6", 300_000, 1000, |e, out| reference::q6(e, out));
}

#[test]
fn q7_finds_the_highest_bids_of_every_tumbling_window() {
    check("q7", 1_000_000, 10, |e, out| reference::q7(e, out));
}

#[test]
fn q8_finds_people_who_sold_in_the_window_they_joined() {
    check("q8", 1_000_000, 1000, |e, out| reference::q8(e, out));
}

#[test]
fn q14_labels_the_bids_in_its_price_range() {
    check("q14", 100_000, 1000, |e, out| reference::q14(e, out));
}

#[test]
fn q21_extracts_channel_ids() {
    check("q21", 100_000, 1000, |e, out| reference::q21(e, out));
}

#[test]
fn q22_splits_urls_into_directories() {
    check("q22", 100_000, 90_000, |e, out| reference::q22(e, out));
}

#[test]
fn bad_arguments_are_usage_errors_naming_the_argument() {
    for (arg, says) in [
        ("nexmark", "needs a query"),
        ("nexmark:q99", "unknown query \"q99\""),
        ("nexmark:q1,ten", "EVENTS \"ten\""),
        ("nexmark:q1,10,file", "SINK \"file\""),
        ("nexmark:q1,10,null,x", "unexpected argument \"x\""),
    ] {
        let o = run_with_timeout(waxfast().arg(arg));
        assert_eq!(o.status.code(), Some(2), "{arg}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{arg}: {}", stderr(&o));
    }
}

#[test]
fn the_null_sink_counts_the_rows_and_prints_a_summary() {
    let o = run_with_timeout(waxfast().args(["nexmark:q2,200000,null", "-w2", "--no-pin"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let mut rows = 0;
    reference::q2(source::events(200_000), |_: rows::Q2| rows += 1);
    let summary = stderr(&o);
    assert!(
        summary.contains("nexmark_q2: records=200000 workers=2")
            && summary.contains(&format!("outputs={rows} ")),
        "{summary}"
    );
}
