"""Nexmark queries on Bytewax 0.21.1, over events written as JSON lines by
`cargo bench --bench nexmark_cost -- --bench --events N --dump PATH` (the same events
waxfast's flows generate), counted by a discarding sink that prints waxfast's summary
line. Written after waxfast's flows (src/flows/nexmark), with Bytewax's operators.

python -m bytewax.run "nexmark:flow('q5', 'events.jsonl', 200000)" -w2
"""

import json
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.connectors.files import FileSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, SlidingWindower, TumblingWindower

from _bench import Counting, Stats

BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
STATES = ("or", "id", "ca")


def ms(t):
    return BASE + timedelta(milliseconds=t - 1_704_067_200_000)


def bids(events):
    return op.filter_map("bids", events, lambda e: e.get("Bid"))


def q0(events):
    return op.map("q0", bids(events), lambda b: (b["auction"], b["bidder"], b["price"], b["date_time"], b["extra"]))


def q1(events):
    return op.map("q1", bids(events), lambda b: (b["auction"], b["bidder"], b["price"] * 908 / 1000, b["date_time"], b["extra"]))


def q2(events):
    return op.filter_map("q2", bids(events), lambda b: (b["auction"], b["price"]) if b["auction"] % 123 == 0 else None)


def q14(events):
    def row(b):
        price = b["price"] * 908
        if not (1_000_000_000 < price < 50_000_000_000):
            return None
        hour = (b["date_time"] // 3_600_000) % 24
        kind = "dayTime" if 8 <= hour <= 18 else "nightTime" if hour <= 6 or hour >= 20 else "otherTime"
        return (b["auction"], b["bidder"], price / 1000, kind, b["date_time"], b["extra"], b["extra"].count("c"))
    return op.filter_map("q14", bids(events), row)


def q21(events):
    import re
    named = {"apple": "0", "google": "1", "facebook": "2", "baidu": "3"}
    pat = re.compile(r"(&|^)channel_id=([^&]*)")

    def row(b):
        cid = named.get(b["channel"].lower())
        if cid is None:
            m = pat.search(b["url"])
            if m is None:
                return None
            cid = m.group(2)
        return (b["auction"], b["bidder"], b["price"], b["channel"], cid)
    return op.filter_map("q21", bids(events), row)


def q22(events):
    def row(b):
        parts = b["url"].split("/")
        d = [parts[i] if i < len(parts) else "" for i in (3, 4, 5)]
        return (b["auction"], b["bidder"], b["price"], b["channel"], *d)
    return op.map("q22", bids(events), row)


def q3(events):
    people = op.filter_map("people", events, lambda e: (str(e["Person"]["id"]), (e["Person"]["name"], e["Person"]["city"], e["Person"]["state"]))
                           if "Person" in e and e["Person"]["state"] in STATES else None)
    auctions = op.filter_map("auctions", events, lambda e: (str(e["Auction"]["seller"]), e["Auction"]["id"])
                             if "Auction" in e and e["Auction"]["category"] == 10 else None)
    joined = op.join("join", people, auctions, insert_mode="product", emit_mode="final")
    return op.filter_map("q3", joined, lambda kv: (*kv[1][0], kv[1][1]) if kv[1][0] is not None and kv[1][1] is not None else None)


def winning(events):
    def keyed(e):
        if "Auction" in e:
            a = e["Auction"]
            return (str(a["id"]), ("a", a["date_time"], a["expires"], a["category"], a["seller"]))
        if "Bid" in e:
            b = e["Bid"]
            return (str(b["auction"]), ("b", b["price"], b["date_time"]))
        return None

    def fold(acc, v):
        if v[0] == "a":
            acc["a"] = v
        else:
            acc["bids"].append(v)
        return acc

    def best(kv):
        acc = kv[1]
        a = acc["a"]
        if a is None:
            return None
        valid = [(p, -t) for (_, p, t) in acc["bids"] if a[1] <= t <= a[2]]
        if not valid:
            return None
        p, t = max(valid)
        return (kv[0], a[3], a[4], p, -t)
    folded = op.fold_final("winning", op.filter_map("keyed", events, keyed), lambda: {"a": None, "bids": []}, fold)
    return op.filter_map("best", folded, best)


def q4(events):
    w = op.map("by_category", winning(events), lambda x: (str(x[1]), x[3]))
    avg = op.fold_final("avg", w, lambda: (0, 0), lambda s, p: (s[0] + p, s[1] + 1))
    return op.map("q4", avg, lambda kv: (kv[0], kv[1][0] // kv[1][1]))


def q6(events):
    w = op.map("by_seller", winning(events), lambda x: (str(x[2]), (x[4], int(x[0]), x[3])))
    closed = op.fold_final("closed", w, list, lambda acc, c: acc + [c])

    def rows(kv):
        c = sorted(kv[1])
        return [(kv[0], sum(r[2] for r in c[max(0, i - 10):i + 1]) // len(c[max(0, i - 10):i + 1])) for i in range(len(c))]
    return op.flat_map("q6", closed, rows)


def q5(events):
    b = op.filter_map("bids5", events, lambda e: (str(e["Bid"]["auction"]), e["Bid"]["date_time"]) if "Bid" in e else None)
    counts = win.count_window("count", b, EventClock(lambda x: ms(x[1]), timedelta(seconds=10)),
                              SlidingWindower(timedelta(seconds=10), timedelta(seconds=2), BASE), lambda x: x[0])
    per_window = op.map("by_window", counts.down, lambda kv: (str(kv[1][0]), (kv[0], kv[1][1])))
    top = op.fold_final("top", per_window, list, lambda acc, c: acc + [c])

    def rows(kv):
        n = max(c for _, c in kv[1])
        return [(a, c, kv[0]) for a, c in kv[1] if c == n]
    return op.flat_map("q5", top, rows)


def q7(events):
    b = op.filter_map("bids7", events, lambda e: ("all", e["Bid"]) if "Bid" in e else None)

    def fold(acc, x):
        if x["price"] > acc[0]:
            return (x["price"], [x])
        if x["price"] == acc[0]:
            acc[1].append(x)
        return acc
    tops = win.fold_window("max", b, EventClock(lambda x: ms(x["date_time"]), timedelta(seconds=60)),
                           TumblingWindower(timedelta(seconds=10), BASE), lambda: (0, []), fold,
                           lambda a, c: a if a[0] >= c[0] else c)
    return op.flat_map("q7", tops.down, lambda kv: [(x["auction"], x["price"], x["bidder"], x["date_time"], x["extra"]) for x in kv[1][1][1]])


def q8(events):
    people = op.filter_map("people8", events, lambda e: (str(e["Person"]["id"]), (e["Person"]["name"], e["Person"]["date_time"])) if "Person" in e else None)
    sellers = op.filter_map("sellers8", events, lambda e: (str(e["Auction"]["seller"]), e["Auction"]["date_time"]) if "Auction" in e else None)

    def ts(v):
        return ms(v[1] if isinstance(v, tuple) else v)
    joined = win.join_window("join", EventClock(ts, timedelta(minutes=10)), TumblingWindower(timedelta(seconds=10), BASE),
                             people, sellers, insert_mode="first", emit_mode="complete")
    return op.map("q8", joined.down, lambda kv: (kv[0], kv[1][1][0][0], kv[1][0]))


QUERIES = {"q0": q0, "q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5, "q6": q6, "q7": q7, "q8": q8,
           "q14": q14, "q21": q21, "q22": q22}


def flow(query, path, events):
    stats = Stats(f"bytewax_nexmark_{query}", events)
    stats.start()
    f = Dataflow(f"nexmark_{query}")
    lines = op.input("inp", f, FileSource(path))
    parsed = op.map("parse", lines, json.loads)
    op.output("out", QUERIES[query](parsed), Counting(stats))
    return f
