//! The stateless queries: q0 (pass-through), q1 (currency conversion), q2 (selection),
//! q14 (calculation), q21 (channel ids), q22 (url directories). Each is one step on
//! the worker that generated the event: no exchange.

use nexmark::event::Event;

use super::rows::{Q0, Q1, Q14, Q2, Q21, Q22};
use crate::dataflow::Stream;

/// q0: `SELECT auction, bidder, price, dateTime, extra FROM bid`.
pub fn q0(events: &Stream<Event>) -> Stream<Q0> {
    events.filter_map("q0", |e| match e {
        Event::Bid(b) => Some(Q0::of(b)),
        _ => None,
    })
}

/// q1: q0 with `0.908 * price`.
pub fn q1(events: &Stream<Event>) -> Stream<Q1> {
    events.filter_map("q1", |e| match e {
        Event::Bid(b) => Some(Q1::of(b)),
        _ => None,
    })
}

/// q2: `SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`.
pub fn q2(events: &Stream<Event>) -> Stream<Q2> {
    events.filter_map("q2", |e| match e {
        Event::Bid(b) => Q2::of(&b),
        _ => None,
    })
}

/// q14: bids between 10 000 and 500 000 euros, with a time-of-day label and the `c`s
/// in their padding.
pub fn q14(events: &Stream<Event>) -> Stream<Q14> {
    events.filter_map("q14", |e| match e {
        Event::Bid(b) => Q14::of(b),
        _ => None,
    })
}

/// q21: bids with a channel id (named channels' fixed ids, else the url's parameter).
pub fn q21(events: &Stream<Event>) -> Stream<Q21> {
    events.filter_map("q21", |e| match e {
        Event::Bid(b) => Q21::of(b),
        _ => None,
    })
}

/// q22: bids with the first three directories of their url.
pub fn q22(events: &Stream<Event>) -> Stream<Q22> {
    events.filter_map("q22", |e| match e {
        Event::Bid(b) => Some(Q22::of(b)),
        _ => None,
    })
}
