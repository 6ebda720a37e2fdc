//! The queries that join auctions with people or bids: q3 (local item suggestion),
//! q4 (average price per category) and q6 (average selling price by seller).
//!
//! q4 and q6 need each auction's winning bid, which SQL keeps up to date as bids
//! arrive (retracting the previous maximum); a dataflow over a bounded input knows it
//! once no more bids can come: here, at end of stream. The flows emit the queries'
//! final results, what the SQL view holds after the last event.

use nexmark::event::Event;
use serde::{Deserialize, Serialize};

use super::rows::{Q3, Q3_CATEGORY, Q3_STATES, Q4, Q6};
use crate::dataflow::Stream;
use crate::operators::{JoinEmit, JoinInsert, Retention, StatefulLogic};

/// A q3 input: a person from the selected states or an auction of category 10.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Q3Side {
    Person(u64, (String, String, String)),
    Auction(u64, u64),
}

/// q3: `SELECT P.name, P.city, P.state, A.id FROM auction A INNER JOIN person P ON
/// A.seller = P.id WHERE A.category = 10 AND P.state IN ('or', 'id', 'ca')`.
///
/// A [`join`](Stream::join) on the seller keeping every value (`Product`) and emitting
/// at end of stream (`Final`): rows with both sides are the inner join.
pub fn q3(events: &Stream<Event>) -> Stream<Q3> {
    let sides = events.filter_map("q3_select", |e| match e {
        Event::Person(p) if Q3_STATES.contains(&p.state.as_str()) => {
            Some(Q3Side::Person(p.id as u64, (p.name, p.city, p.state)))
        }
        Event::Auction(a) if a.category as u64 == Q3_CATEGORY => {
            Some(Q3Side::Auction(a.seller as u64, a.id as u64))
        }
        _ => None,
    });
    let split = sides.branch("q3_split", |s| matches!(s, Q3Side::Person(..)));
    let people = split.trues.filter_map("people", |s| match s {
        Q3Side::Person(id, p) => Some((id, p)),
        Q3Side::Auction(..) => None,
    });
    let auctions = split.falses.filter_map("auctions", |s| match s {
        Q3Side::Auction(seller, id) => Some((seller, id)),
        Q3Side::Person(..) => None,
    });
    people
        .join("q3_join", &auctions, JoinInsert::Product, JoinEmit::Final)
        .filter_map("q3_rows", |(_, row)| match row {
            (Some((name, city, state)), Some(id)) => Some(Q3 {
                name,
                city,
                state,
                id,
            }),
            _ => None,
        })
}

/// What reaches an auction's key: the auction itself, or a bid on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum AuctionEvent {
    Opened {
        date_time: u64,
        expires: u64,
        category: u64,
        seller: u64,
    },
    Bid {
        price: u64,
        date_time: u64,
    },
}

/// An auction's winning bid (the highest price, the earliest of equal prices) among
/// the bids with `A.dateTime <= B.dateTime <= A.expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Won {
    /// The auction's category.
    pub category: u64,
    /// The auction's seller.
    pub seller: u64,
    /// The winning price.
    pub price: u64,
    /// The winning bid's time.
    pub date_time: u64,
}

/// Per auction: the auction once seen, the bids that came before it, the best bid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WinningBid {
    /// (date_time, expires, category, seller)
    auction: Option<(u64, u64, u64, u64)>,
    /// Bids that arrived before their auction (price, time): workers generate their
    /// shares independently, and a bid may even come first in the sequence.
    early: Vec<(u64, u64)>,
    best: Option<(u64, u64)>,
}

impl WinningBid {
    fn offer(&mut self, price: u64, time: u64) {
        let Some((opened, expires, ..)) = self.auction else {
            self.early.push((price, time));
            return;
        };
        if opened <= time && time <= expires {
            let better = self
                .best
                .is_none_or(|(p, t)| price > p || (price == p && time < t));
            if better {
                self.best = Some((price, time));
            }
        }
    }
}

impl StatefulLogic<AuctionEvent> for WinningBid {
    type Out = Won;
    type State = WinningBid;

    fn on_item(&mut self, value: AuctionEvent, _emit: &mut Vec<Won>) -> Retention {
        match value {
            AuctionEvent::Opened {
                date_time,
                expires,
                category,
                seller,
            } => {
                self.auction = Some((date_time, expires, category, seller));
                for (price, time) in std::mem::take(&mut self.early) {
                    self.offer(price, time);
                }
            }
            AuctionEvent::Bid { price, date_time } => self.offer(price, date_time),
        }
        Retention::Retain
    }

    fn on_eof(&mut self, emit: &mut Vec<Won>) -> Retention {
        if let (Some((_, _, category, seller)), Some((price, date_time))) =
            (self.auction, self.best)
        {
            emit.push(Won {
                category,
                seller,
                price,
                date_time,
            });
        }
        Retention::Discard
    }

    fn snapshot(&self) -> WinningBid {
        self.clone()
    }
}

/// Every auction's winning bid, keyed by auction id, at end of stream.
pub fn winning_bids(events: &Stream<Event>) -> Stream<(u64, Won)> {
    events
        .filter_map("auction_events", |e| match e {
            Event::Auction(a) => Some((
                a.id as u64,
                AuctionEvent::Opened {
                    date_time: a.date_time,
                    expires: a.expires,
                    category: a.category as u64,
                    seller: a.seller as u64,
                },
            )),
            Event::Bid(b) => Some((
                b.auction as u64,
                AuctionEvent::Bid {
                    price: b.price as u64,
                    date_time: b.date_time,
                },
            )),
            Event::Person(_) => None,
        })
        .stateful("winning_bid", |resume: Option<WinningBid>| {
            resume.unwrap_or_default()
        })
}

/// q4: per category, `AVG` of its auctions' winning prices (integer, as `AVG` of a
/// `BIGINT`).
pub fn q4(events: &Stream<Event>) -> Stream<Q4> {
    winning_bids(events)
        .map("by_category", |(_, w)| (w.category, w.price))
        .fold_final(
            "average",
            || (0u64, 0u64),
            |(sum, n), price| (sum + price, n + 1),
        )
        .map("q4_rows", |(category, (sum, n))| Q4 {
            category,
            avg: sum / n,
        })
}

/// q6: per seller and closed auction (ordered by the winning bid's time, then auction
/// id), the average winning price over that auction and up to 10 before it (`ROWS
/// BETWEEN 10 PRECEDING AND CURRENT ROW`).
pub fn q6(events: &Stream<Event>) -> Stream<Q6> {
    winning_bids(events)
        .map("by_seller", |(auction, w)| {
            (w.seller, (w.date_time, auction, w.price))
        })
        .fold_final("closed", Vec::new, |mut all: Vec<(u64, u64, u64)>, c| {
            all.push(c);
            all
        })
        .flat_map("q6_rows", |(seller, mut closed)| {
            closed.sort_unstable();
            let avgs: Vec<Q6> = (0..closed.len())
                .map(|i| {
                    let last = &closed[i.saturating_sub(10)..=i];
                    let sum: u64 = last.iter().map(|c| c.2).sum();
                    Q6 {
                        seller,
                        avg: sum / last.len() as u64,
                    }
                })
                .collect();
            avgs
        })
}
