//! The windowed queries: q5 (hot items, sliding windows), q7 (highest bid per tumbling
//! window) and q8 (new users, a windowed join), on event time with [`EventClock`].
//!
//! Workers generate their shares of the sequence independently, so the events that
//! reach a window step are out of order by however far one worker runs ahead of
//! another; and a clock exists per key (Bytewax's model), its watermark following the
//! latest timestamp of that key's items, whichever worker they came from. Exchange
//! backpressure bounds how far workers of one process drift apart (a few tens of
//! seconds of event time at `-w8`), but between processes nothing small does. So each
//! query is built such that lateness cannot come from that drift:
//!
//! * q5 counts per auction *and generating worker* (a key's items then come from one
//!   worker, in timestamp order) and adds the workers' counts per window at end of
//!   stream;
//! * q7 reduces each batch to one partial per window, and gathers the partials keyed
//!   by window, stamped with the window's start, so that only time passing
//!   ([`Q7_WAIT`] of system time) or the end of input closes a window;
//! * q8's join waits [`Q8_WAIT`] of event time (6 M events), far more than any drift
//!   backpressure allows between its inputs.
//!
//! An item later than its watermark would be a wrong result, so instead of dropping it
//! into the `late` stream the flows fail, naming the step.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use nexmark::event::Event;
use serde::{Deserialize, Serialize};

use super::rows::{Q5, Q7, Q8};
use super::source::BASE_TIME_MS;
use super::{Q5_LENGTH_MS, Q5_SLIDE_MS, Q7_LENGTH_MS, Q8_LENGTH_MS};
use crate::dataflow::Stream;
use crate::operators::window::{
    EventClock, JoinSide, SlidingWindower, TumblingWindower, WindowOut,
};
use crate::operators::{JoinEmit, JoinInsert};
use crate::runtime::push::Data;

/// q5's wait: its keys see their items in timestamp order, so only a worker that
/// stalls for longer than this (system time) between two events could make one late.
pub const Q5_WAIT: TimeDelta = TimeDelta::seconds(10);
/// q7's wait: a window's partials all carry its start time, so one is late only if it
/// arrives this long (system time) after the window's first.
pub const Q7_WAIT: TimeDelta = TimeDelta::seconds(60);
/// q8's wait (event time).
pub const Q8_WAIT: TimeDelta = TimeDelta::minutes(10);

fn time(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The start (ms) of window `id` of windows `every` ms apart from [`BASE_TIME_MS`]
/// (ids of sliding windows that open before it are negative).
fn window_start(id: i64, every: u64) -> u64 {
    (BASE_TIME_MS as i64 + id * every as i64) as u64
}

fn millis(ms: u64) -> TimeDelta {
    TimeDelta::milliseconds(ms as i64)
}

/// `out.down`, failing the run if anything reaches `out.late`.
fn on_time<K: Data, V: Data, W: Data, U: Data>(
    step: &str,
    wait: TimeDelta,
    out: WindowOut<K, V, W>,
    rows: impl Fn((K, (i64, W))) -> U + Send + Sync + 'static,
) -> Stream<U> {
    let late = out.late.try_flat_map(step, move |(_, (window, _))| {
        Err::<Option<U>, String>(format!(
            "an event reached window {window} after the watermark had passed it (the clock \
             waits {}s); the result would be wrong",
            wait.num_seconds()
        ))
    });
    out.down.map("rows", rows).merge("checked", [&late])
}

/// q5: per sliding window (10 s, every 2 s), the auctions with the most bids.
///
/// `count_window` counts the bids per auction, generating worker and window; a second
/// step keyed by window adds up the workers' counts and, at end of stream, emits the
/// auctions with the highest count (ties all).
pub fn q5(events: &Stream<(u32, Event)>) -> Stream<Q5> {
    let bids = events.filter_map("bids", |(worker, e)| match e {
        Event::Bid(b) => Some(((b.auction as u64, worker), b.date_time)),
        _ => None,
    });
    let counts = bids.count_window(
        "count",
        EventClock::new(|b: &((u64, u32), u64)| time(b.1), Q5_WAIT),
        SlidingWindower::new(
            millis(Q5_LENGTH_MS),
            millis(Q5_SLIDE_MS),
            time(BASE_TIME_MS),
        ),
        |b: &((u64, u32), u64)| b.0,
    );
    on_time(
        "count_on_time",
        Q5_WAIT,
        counts,
        |((auction, _), (window, n))| (window, (auction, n)),
    )
    .fold_final(
        "per_window",
        HashMap::new,
        |mut counts: HashMap<u64, u64>, (auction, n)| {
            *counts.entry(auction).or_default() += n;
            counts
        },
    )
    .flat_map("q5_rows", |(window, counts)| {
        let starttime = window_start(window, Q5_SLIDE_MS);
        let num = counts.values().copied().max().unwrap_or(0);
        counts
            .into_iter()
            .filter(move |&(_, n)| n == num)
            .map(move |(auction, num)| Q5 {
                auction,
                num,
                starttime,
            })
    })
}

/// A partial result of q7 for one window: the highest price among some of its bids,
/// those bids at that price, and bids at exactly the window's end (which the SQL's
/// `BETWEEN` also matches against this window's highest price).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Top {
    /// The window's start (ms).
    start: u64,
    max: Option<u64>,
    bids: Vec<Q7>,
    at_end: Vec<Q7>,
}

impl Top {
    fn new(start: u64) -> Top {
        Top {
            start,
            max: None,
            bids: Vec::new(),
            at_end: Vec::new(),
        }
    }

    fn offer(&mut self, bid: Q7) {
        if self.max.is_none_or(|m| bid.price > m) {
            self.max = Some(bid.price);
            self.bids.clear();
        }
        if Some(bid.price) == self.max {
            self.bids.push(bid);
        }
    }

    fn merge(mut self, other: Top) -> Top {
        self.at_end.extend(other.at_end);
        if other.max > self.max {
            self.max = other.max;
            self.bids = other.bids;
        } else if other.max == self.max {
            self.bids.extend(other.bids);
        }
        self
    }

    fn rows(self) -> impl Iterator<Item = Q7> {
        let max = self.max;
        let at_end = self
            .at_end
            .into_iter()
            .filter(move |b| Some(b.price) == max);
        self.bids.into_iter().chain(at_end)
    }
}

/// Each window's [`Top`] over one batch of events: combined before the exchange, so
/// about one partial per window and batch crosses workers instead of every bid.
fn tops(batch: Vec<Event>) -> Vec<(u64, Top)> {
    let mut tops: Vec<Top> = Vec::new();
    let slot = |start: u64, tops: &mut Vec<Top>| match tops.iter().position(|t| t.start == start) {
        Some(i) => i,
        None => {
            tops.push(Top::new(start));
            tops.len() - 1
        }
    };
    for e in batch {
        let Event::Bid(b) = e else { continue };
        let start = b.date_time - b.date_time % Q7_LENGTH_MS;
        let row = Q7 {
            auction: b.auction as u64,
            price: b.price as u64,
            bidder: b.bidder as u64,
            date_time: b.date_time,
            extra: b.extra,
        };
        if b.date_time % Q7_LENGTH_MS == 0 && start >= Q7_LENGTH_MS {
            let i = slot(start - Q7_LENGTH_MS, &mut tops);
            tops[i].at_end.push(row.clone());
        }
        let i = slot(start, &mut tops);
        tops[i].offer(row);
    }
    tops.into_iter().map(|t| (t.start, t)).collect()
}

/// q7: the bids at the highest price of their 10 s tumbling window.
///
/// Each batch is reduced to one partial per window ([`tops`]); a `reduce_window` of
/// the same windows keyed by window merges the partials and emits each window's bids
/// when it closes.
pub fn q7(events: &Stream<Event>) -> Stream<Q7> {
    let partials = events.flat_map_batch("partials", tops).reduce_window(
        "max",
        EventClock::new(|t: &Top| time(t.start), Q7_WAIT),
        TumblingWindower::new(millis(Q7_LENGTH_MS), time(BASE_TIME_MS)),
        Top::merge,
    );
    on_time("max_on_time", Q7_WAIT, partials, |(_, (_, top))| top)
        .flat_map("q7_rows", |top| top.rows())
}

/// q8: people who opened an auction in the 10 s tumbling window they registered in.
///
/// A `join_window` of people (by id) and auctions (by seller) that emits once per
/// person and window, when both sides are there (`First`, `Complete`).
pub fn q8(events: &Stream<Event>) -> Stream<Q8> {
    let split = events
        .filter("people_and_auctions", |e| !matches!(e, Event::Bid(_)))
        .branch("split", |e| matches!(e, Event::Person(_)));
    let people = split.trues.filter_map("people", |e| match e {
        Event::Person(p) => Some((p.id as u64, (p.name, p.date_time))),
        _ => None,
    });
    let sellers = split.falses.filter_map("sellers", |e| match e {
        Event::Auction(a) => Some((a.seller as u64, a.date_time)),
        _ => None,
    });
    type Side = JoinSide<(String, u64), u64>;
    let joined = people.join_window(
        "join",
        &sellers,
        EventClock::new(
            |s: &Side| match s {
                JoinSide::Left((_, t)) | JoinSide::Right(t) => time(*t),
            },
            Q8_WAIT,
        ),
        TumblingWindower::new(millis(Q8_LENGTH_MS), time(BASE_TIME_MS)),
        JoinInsert::First,
        JoinEmit::Complete,
        false,
    );
    on_time("join_on_time", Q8_WAIT, joined, |(id, (window, row))| {
        (id, window, row)
    })
    .filter_map("q8_rows", |(id, window, (person, _))| {
        person.map(|(name, _)| Q8 {
            id,
            name,
            starttime: window_start(window, Q8_LENGTH_MS),
        })
    })
}
