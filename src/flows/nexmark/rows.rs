//! What each Nexmark query emits, one type per query, printed as comma-separated
//! fields (the columns of the query's `SELECT`, in order), and the per-row expressions
//! of the stateless queries (shared by the flows and the reference loops: they are the
//! queries' definitions).

use std::fmt;

use nexmark::event::Bid;
use serde::{Deserialize, Serialize};

/// A bid's pass-through columns (q0): `auction, bidder, price, dateTime, extra`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q0 {
    /// The auction bid on.
    pub auction: u64,
    /// Who bid.
    pub bidder: u64,
    /// The price, in cents.
    pub price: u64,
    /// When (ms since the Unix epoch).
    pub date_time: u64,
    /// The bid's padding.
    pub extra: String,
}

impl Q0 {
    /// The row of `bid`.
    pub fn of(bid: Bid) -> Q0 {
        Q0 {
            auction: bid.auction as u64,
            bidder: bid.bidder as u64,
            price: bid.price as u64,
            date_time: bid.date_time,
            extra: bid.extra,
        }
    }
}

/// A price times 0.908 (q1's dollars to euros), exactly: in thousandths of a cent,
/// printed with three decimals (Flink's `DECIMAL(23, 3)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Euros(pub u64);

impl Euros {
    /// `0.908 * price`.
    pub fn of(price: u64) -> Euros {
        Euros(price * 908)
    }
}

impl fmt::Display for Euros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// q1: a bid with its price converted: `auction, bidder, 0.908 * price, dateTime, extra`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q1 {
    /// The auction bid on.
    pub auction: u64,
    /// Who bid.
    pub bidder: u64,
    /// The price in euros.
    pub price: Euros,
    /// When (ms since the Unix epoch).
    pub date_time: u64,
    /// The bid's padding.
    pub extra: String,
}

impl Q1 {
    /// The row of `bid`.
    pub fn of(bid: Bid) -> Q1 {
        Q1 {
            auction: bid.auction as u64,
            bidder: bid.bidder as u64,
            price: Euros::of(bid.price as u64),
            date_time: bid.date_time,
            extra: bid.extra,
        }
    }
}

/// q2: `auction, price` of the bids on every 123rd auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q2 {
    /// The auction bid on.
    pub auction: u64,
    /// The price, in cents.
    pub price: u64,
}

impl Q2 {
    /// The row of `bid`, if q2 selects it (`MOD(auction, 123) = 0`).
    pub fn of(bid: &Bid) -> Option<Q2> {
        bid.auction.is_multiple_of(123).then_some(Q2 {
            auction: bid.auction as u64,
            price: bid.price as u64,
        })
    }
}

/// q3: `name, city, state` of a seller and the `id` of their auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q3 {
    /// The seller's name.
    pub name: String,
    /// The seller's city.
    pub city: String,
    /// The seller's state.
    pub state: String,
    /// The auction.
    pub id: u64,
}

/// The states q3 selects. The crate generates them lower-case (`az,ca,id,or,wa,wy`);
/// Flink's query compares with `'OR'`, `'ID'`, `'CA'` against its own upper-case
/// generator.
pub const Q3_STATES: [&str; 3] = ["or", "id", "ca"];

/// The category q3 selects.
pub const Q3_CATEGORY: u64 = 10;

/// q4: a category and the average winning price of its auctions (`AVG` of a `BIGINT`:
/// an integer, rounded towards zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q4 {
    /// The category.
    pub category: u64,
    /// The average of its auctions' highest valid bids, in cents.
    pub avg: u64,
}

/// q5: an auction with the most bids of a sliding window (ties all reported), its bid
/// count, and the window's start (ms; not in Flink's sink, printed so rows of different
/// windows stay apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q5 {
    /// The auction.
    pub auction: u64,
    /// Its bids in the window.
    pub num: u64,
    /// The window's start (ms since the Unix epoch).
    pub starttime: u64,
}

/// q6: a seller and the average winning price of their last closed auctions (this one
/// and up to 10 before it, by the winning bid's time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q6 {
    /// The seller.
    pub seller: u64,
    /// The average, in cents (integer, rounded towards zero).
    pub avg: u64,
}

/// q7: a bid with the highest price of its 10 s window: `auction, price, bidder,
/// dateTime, extra`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q7 {
    /// The auction bid on.
    pub auction: u64,
    /// The price, in cents.
    pub price: u64,
    /// Who bid.
    pub bidder: u64,
    /// When (ms since the Unix epoch).
    pub date_time: u64,
    /// The bid's padding.
    pub extra: String,
}

/// q8: a person who opened an auction in the 10 s window they registered in:
/// `id, name, starttime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q8 {
    /// The person.
    pub id: u64,
    /// Their name.
    pub name: String,
    /// The window's start (ms since the Unix epoch).
    pub starttime: u64,
}

/// q14: bids priced between 10 000 and 500 000 euros, with a time-of-day label and the
/// number of `c`s in their padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q14 {
    /// The auction bid on.
    pub auction: u64,
    /// Who bid.
    pub bidder: u64,
    /// The price in euros.
    pub price: Euros,
    /// `dayTime`, `nightTime` or `otherTime` (by the hour, UTC).
    pub bid_time_type: String,
    /// When (ms since the Unix epoch).
    pub date_time: u64,
    /// The bid's padding.
    pub extra: String,
    /// `c`s in `extra`.
    pub c_counts: u64,
}

impl Q14 {
    /// The row of `bid`, if q14 selects it (`1000000 < 0.908 * price < 50000000`).
    pub fn of(bid: Bid) -> Option<Q14> {
        let price = Euros::of(bid.price as u64);
        if price.0 <= 1_000_000_000 || price.0 >= 50_000_000_000 {
            return None;
        }
        let hour = (bid.date_time / 3_600_000) % 24;
        let bid_time_type = match hour {
            8..=18 => "dayTime",
            0..=6 | 20..=23 => "nightTime",
            _ => "otherTime",
        };
        let c_counts = bid.extra.bytes().filter(|&b| b == b'c').count() as u64;
        Some(Q14 {
            auction: bid.auction as u64,
            bidder: bid.bidder as u64,
            price,
            bid_time_type: bid_time_type.to_string(),
            date_time: bid.date_time,
            extra: bid.extra,
            c_counts,
        })
    }
}

/// q21: bids with a channel id: `auction, bidder, price, channel, channel_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q21 {
    /// The auction bid on.
    pub auction: u64,
    /// Who bid.
    pub bidder: u64,
    /// The price, in cents.
    pub price: u64,
    /// The channel.
    pub channel: String,
    /// `0`..`3` for the four named channels, else the url's `channel_id` parameter.
    pub channel_id: String,
}

/// `REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)`: the value of the first
/// `channel_id=` at the start of `url` or after a `&`, up to the next `&`.
pub fn channel_id_param(url: &str) -> Option<&str> {
    const NAME: &str = "channel_id=";
    let mut from = 0;
    while let Some(at) = url[from..].find(NAME).map(|i| from + i) {
        if at == 0 || url.as_bytes()[at - 1] == b'&' {
            let value = &url[at + NAME.len()..];
            return Some(value.split('&').next().unwrap_or(value));
        }
        from = at + 1;
    }
    None
}

impl Q21 {
    /// The row of `bid`, if q21 selects it (a named channel or a `channel_id`).
    pub fn of(bid: Bid) -> Option<Q21> {
        let named = match bid.channel.to_lowercase().as_str() {
            "apple" => Some("0"),
            "google" => Some("1"),
            "facebook" => Some("2"),
            "baidu" => Some("3"),
            _ => None,
        };
        let channel_id = named.or_else(|| channel_id_param(&bid.url))?.to_string();
        Some(Q21 {
            auction: bid.auction as u64,
            bidder: bid.bidder as u64,
            price: bid.price as u64,
            channel: bid.channel,
            channel_id,
        })
    }
}

/// q22: a bid with the first three directories of its url: `auction, bidder, price,
/// channel, dir1, dir2, dir3` (`SPLIT_INDEX(url, '/', 3..=5)`; empty when the url has
/// fewer parts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q22 {
    /// The auction bid on.
    pub auction: u64,
    /// Who bid.
    pub bidder: u64,
    /// The price, in cents.
    pub price: u64,
    /// The channel.
    pub channel: String,
    /// The url's parts 3, 4 and 5 when split on `/`.
    pub dirs: [String; 3],
}

impl Q22 {
    /// The row of `bid`.
    pub fn of(bid: Bid) -> Q22 {
        let mut parts = bid.url.split('/').skip(3);
        let mut next = || parts.next().unwrap_or_default().to_string();
        let dirs = [next(), next(), next()];
        Q22 {
            auction: bid.auction as u64,
            bidder: bid.bidder as u64,
            price: bid.price as u64,
            channel: bid.channel,
            dirs,
        }
    }
}

macro_rules! comma_separated {
    ($($T:ident { $($f:ident),+ }),+ $(,)?) => {$(
        impl fmt::Display for $T {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut sep = "";
                $(
                    write!(f, "{sep}{}", self.$f)?;
                    #[allow(unused_assignments)]
                    { sep = ","; }
                )+
                Ok(())
            }
        }
    )+};
}

comma_separated!(
    Q0 {
        auction,
        bidder,
        price,
        date_time,
        extra
    },
    Q1 {
        auction,
        bidder,
        price,
        date_time,
        extra
    },
    Q2 { auction, price },
    Q3 {
        name,
        city,
        state,
        id
    },
    Q4 { category, avg },
    Q5 {
        auction,
        num,
        starttime
    },
    Q6 { seller, avg },
    Q7 {
        auction,
        price,
        bidder,
        date_time,
        extra
    },
    Q8 {
        id,
        name,
        starttime
    },
    Q14 {
        auction,
        bidder,
        price,
        bid_time_type,
        date_time,
        extra,
        c_counts
    },
    Q21 {
        auction,
        bidder,
        price,
        channel,
        channel_id
    },
);

impl fmt::Display for Q22 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [d1, d2, d3] = &self.dirs;
        write!(
            f,
            "{},{},{},{},{d1},{d2},{d3}",
            self.auction, self.bidder, self.price, self.channel
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_id_is_the_first_parameter_at_the_start_or_after_an_ampersand() {
        let url = "https://www.nexmark.com/a/b/c/item.htm?query=1&channel_id=1234&x=2";
        assert_eq!(channel_id_param(url), Some("1234"));
        assert_eq!(channel_id_param("channel_id=7"), Some("7"));
        assert_eq!(channel_id_param("x=1&mychannel_id=5"), None);
        assert_eq!(channel_id_param("mychannel_id=5&channel_id=6"), Some("6"));
        assert_eq!(channel_id_param("a&channel_id="), Some(""));
        assert_eq!(
            channel_id_param("https://www.nexmark.com/a/b/c/item.htm?query=1"),
            None
        );
    }

    #[test]
    fn euros_are_exact_to_three_decimals() {
        assert_eq!(Euros::of(1).to_string(), "0.908");
        assert_eq!(Euros::of(1000).to_string(), "908.000");
        assert_eq!(Euros::of(12345).to_string(), "11209.260");
    }

    #[test]
    fn q22_splits_the_url_on_slashes() {
        let bid = Bid {
            auction: 1,
            bidder: 2,
            price: 3,
            channel: "Google".into(),
            url: "https://www.nexmark.com/xx/y_z/abc/item.htm?query=1".into(),
            date_time: 0,
            extra: String::new(),
        };
        assert_eq!(Q22::of(bid).to_string(), "1,2,3,Google,xx,y_z,abc");
    }

    #[test]
    fn q14_labels_the_hour_of_day() {
        let at = |hour: u64| Bid {
            auction: 1,
            bidder: 2,
            price: 2_000_000,
            channel: String::new(),
            url: String::new(),
            date_time: hour * 3_600_000 + 59_000,
            extra: "cxc".into(),
        };
        let label = |h| Q14::of(at(h)).unwrap().bid_time_type;
        assert_eq!(label(8), "dayTime");
        assert_eq!(label(18), "dayTime");
        assert_eq!(label(19), "otherTime");
        assert_eq!(label(7), "otherTime");
        assert_eq!(label(20), "nightTime");
        assert_eq!(label(6), "nightTime");
        assert_eq!(Q14::of(at(9)).unwrap().c_counts, 2);
        let cheap = Bid {
            price: 1_101_321,
            ..at(9)
        }; // 0.908 * price = 999999.468
        assert!(Q14::of(cheap).is_none());
    }
}
