//! Each Nexmark query as one single-threaded loop over the events, with plain Rust
//! collections and no waxfast operator: written straight from the query's SQL, for the
//! tests to compare the flows with, and as the COST baseline the benchmark measures
//! the flows against (`benches/nexmark_cost.rs`).
//!
//! Every function reads the events in sequence order and calls `out` once per result
//! row. Queries whose SQL result only exists once the input ends (the joins with
//! aggregates, q4-q6) emit their rows after the last event, as the flows do.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use nexmark::event::{Auction, Bid, Event};

use super::rows::*;
use super::{Q5_LENGTH_MS, Q5_SLIDE_MS, Q7_LENGTH_MS, Q8_LENGTH_MS};

fn bids(events: impl IntoIterator<Item = Event>) -> impl Iterator<Item = Bid> {
    events.into_iter().filter_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

/// q0: every bid's columns.
pub fn q0(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q0)) {
    bids(events).for_each(|b| out(Q0::of(b)));
}

/// q1: every bid, its price in euros.
pub fn q1(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q1)) {
    bids(events).for_each(|b| out(Q1::of(b)));
}

/// q2: bids on auctions whose id is a multiple of 123.
pub fn q2(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q2)) {
    bids(events).filter_map(|b| Q2::of(&b)).for_each(&mut out);
}

/// q14: bids in a price range, labelled.
pub fn q14(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q14)) {
    bids(events).filter_map(Q14::of).for_each(&mut out);
}

/// q21: bids with a channel id.
pub fn q21(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q21)) {
    bids(events).filter_map(Q21::of).for_each(&mut out);
}

/// q22: bids with their url's directories.
pub fn q22(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q22)) {
    bids(events).for_each(|b| out(Q22::of(b)));
}

/// q3: auctions of category 10 joined with their sellers from Oregon, Idaho or
/// California. An inner join of two streams: each row is emitted when its second side
/// arrives.
pub fn q3(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q3)) {
    let mut sellers: HashMap<u64, (String, String, String)> = HashMap::new();
    let mut waiting: HashMap<u64, Vec<u64>> = HashMap::new();
    for e in events {
        match e {
            Event::Person(p) if Q3_STATES.contains(&p.state.as_str()) => {
                let id = p.id as u64;
                for auction in waiting.remove(&id).unwrap_or_default() {
                    out(Q3 {
                        name: p.name.clone(),
                        city: p.city.clone(),
                        state: p.state.clone(),
                        id: auction,
                    });
                }
                sellers.insert(id, (p.name, p.city, p.state));
            }
            Event::Auction(a) if a.category as u64 == Q3_CATEGORY => {
                let seller = a.seller as u64;
                match sellers.get(&seller) {
                    Some((name, city, state)) => out(Q3 {
                        name: name.clone(),
                        city: city.clone(),
                        state: state.clone(),
                        id: a.id as u64,
                    }),
                    None => waiting.entry(seller).or_default().push(a.id as u64),
                }
            }
            _ => {}
        }
    }
}

/// The winning (highest) bid of one auction: `B.dateTime BETWEEN A.dateTime AND
/// A.expires`, the highest price, the earliest of equal prices.
#[derive(Debug, Default)]
struct Auctioned {
    auction: Option<Auction>,
    /// Bids seen before the auction (price, time).
    early: Vec<(u64, u64)>,
    /// The best valid bid so far (price, time).
    best: Option<(u64, u64)>,
}

impl Auctioned {
    fn offer(&mut self, price: u64, time: u64) {
        let Some(a) = &self.auction else {
            self.early.push((price, time));
            return;
        };
        if a.date_time <= time && time <= a.expires {
            let better = match self.best {
                None => true,
                Some((p, t)) => price > p || (price == p && time < t),
            };
            if better {
                self.best = Some((price, time));
            }
        }
    }
}

/// Every auction's winning bid, after the last event, in auction id order.
fn winning_bids(events: impl IntoIterator<Item = Event>) -> BTreeMap<u64, (Auction, u64, u64)> {
    let mut auctions: HashMap<u64, Auctioned> = HashMap::new();
    for e in events {
        match e {
            Event::Auction(a) => {
                let state = auctions.entry(a.id as u64).or_default();
                state.auction = Some(a);
                for (price, time) in std::mem::take(&mut state.early) {
                    state.offer(price, time);
                }
            }
            Event::Bid(b) => auctions
                .entry(b.auction as u64)
                .or_default()
                .offer(b.price as u64, b.date_time),
            Event::Person(_) => {}
        }
    }
    auctions
        .into_iter()
        .filter_map(|(id, s)| Some((id, (s.auction?, s.best?.0, s.best?.1))))
        .collect()
}

/// q4: per category, the average of its auctions' winning prices.
pub fn q4(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q4)) {
    let mut per_category: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (auction, price, _) in winning_bids(events).into_values() {
        let (sum, n) = per_category.entry(auction.category as u64).or_default();
        *sum += price;
        *n += 1;
    }
    for (category, (sum, n)) in per_category {
        out(Q4 {
            category,
            avg: sum / n,
        });
    }
}

/// q6: per seller and closed auction (by the winning bid's time, then auction id), the
/// average winning price of that auction and up to 10 before it.
pub fn q6(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q6)) {
    let mut per_seller: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for (id, (auction, price, time)) in winning_bids(events) {
        per_seller
            .entry(auction.seller as u64)
            .or_default()
            .push((time, id, price));
    }
    for (seller, mut closed) in per_seller {
        closed.sort_unstable();
        for i in 0..closed.len() {
            let rows = &closed[i.saturating_sub(10)..=i];
            let sum: u64 = rows.iter().map(|r| r.2).sum();
            out(Q6 {
                seller,
                avg: sum / rows.len() as u64,
            });
        }
    }
}

/// q5: per sliding window (10 s every 2 s), the auctions with the most bids.
pub fn q5(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q5)) {
    let mut counts: HashMap<(u64, u64), u64> = HashMap::new();
    for b in bids(events) {
        // Windows [s, s + 10 s) with s a multiple of 2 s that hold the bid.
        let last = b.date_time - b.date_time % Q5_SLIDE_MS;
        let mut start = last;
        while start + Q5_LENGTH_MS > b.date_time {
            *counts.entry((start, b.auction as u64)).or_default() += 1;
            match start.checked_sub(Q5_SLIDE_MS) {
                Some(s) => start = s,
                None => break,
            }
        }
    }
    let mut max: HashMap<u64, u64> = HashMap::new();
    for (&(start, _), &n) in &counts {
        let m = max.entry(start).or_default();
        *m = (*m).max(n);
    }
    for ((starttime, auction), num) in counts {
        if num >= max[&starttime] {
            out(Q5 {
                auction,
                num,
                starttime,
            });
        }
    }
}

/// q7: the bids priced at their 10 s window's highest price, with the SQL's bounds
/// `B.dateTime BETWEEN window_end - 10 s AND window_end` (both inclusive, so a bid at
/// exactly a window's end also matches that window).
pub fn q7(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q7)) {
    // Per window start: the highest price and the bids in [start, end] at that price
    // so far (a bid at `end` is also in the next window, where it counts towards the max).
    let mut windows: HashMap<u64, (u64, Vec<Bid>)> = HashMap::new();
    let mut at_ends: Vec<Bid> = Vec::new();
    for b in bids(events) {
        let start = b.date_time - b.date_time % Q7_LENGTH_MS;
        let (max, top) = windows.entry(start).or_insert((0, Vec::new()));
        let price = b.price as u64;
        if price > *max {
            *max = price;
            top.clear();
        }
        if price == *max {
            top.push(b.clone());
        }
        if b.date_time % Q7_LENGTH_MS == 0 && start > 0 {
            at_ends.push(b);
        }
    }
    for b in at_ends {
        let end = b.date_time;
        if let Some((max, top)) = windows.get_mut(&(end - Q7_LENGTH_MS)) {
            if b.price as u64 == *max {
                top.push(b);
            }
        }
    }
    for (_, top) in windows.into_values() {
        for b in top {
            out(Q7 {
                auction: b.auction as u64,
                price: b.price as u64,
                bidder: b.bidder as u64,
                date_time: b.date_time,
                extra: b.extra,
            });
        }
    }
}

/// q8: people who opened an auction in the 10 s tumbling window they registered in.
pub fn q8(events: impl IntoIterator<Item = Event>, mut out: impl FnMut(Q8)) {
    let mut people: HashMap<(u64, u64), String> = HashMap::new();
    let mut sellers: HashMap<(u64, u64), ()> = HashMap::new();
    for e in events {
        match e {
            Event::Person(p) => {
                let start = p.date_time - p.date_time % Q8_LENGTH_MS;
                people.insert((p.id as u64, start), p.name);
            }
            Event::Auction(a) => {
                let start = a.date_time - a.date_time % Q8_LENGTH_MS;
                sellers.insert((a.seller as u64, start), ());
            }
            Event::Bid(_) => {}
        }
    }
    for ((id, starttime), name) in people {
        if let Entry::Occupied(_) = sellers.entry((id, starttime)) {
            out(Q8 {
                id,
                name,
                starttime,
            });
        }
    }
}
