//! What the server sends: the Prometheus text exposition (`/metrics`) and the
//! dashboard's JSON (`/status`), both read from the workers' cells.
//!
//! Metrics that mean what Bytewax's mean keep Bytewax's names (`bytewax_item_inp_count`,
//! `bytewax_inp_part_next_batch_duration_seconds`, ...), so dashboards made for Bytewax
//! read them; the rest are `waxfast_*`.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{json, Value};

use super::metrics::{Counter, Histogram, WorkerCells, ABSENT};
use super::{lock, Observer, SAMPLE_EVERY};
use crate::base::epoch::EOF_EPOCH;

/// A label value, escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn ns_to_s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `ns` nanoseconds as decimal seconds, exactly (`500000` is `0.0005`).
fn secs_text(ns: u64) -> String {
    let (s, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:09}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

/// Writes one histogram's series; `scale` turns recorded units into the metric's
/// (1e-9 for nanoseconds recorded, seconds exposed).
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram, scale: f64) {
    let mut cum = 0;
    for (i, b) in h.buckets.iter().enumerate() {
        cum += b.get();
        let le = match h.bounds.get(i) {
            Some(&v) if scale == 1.0 => v.to_string(),
            Some(&v) => secs_text(v),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cum}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum.get() as f64 * scale);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count.get());
}

/// The Prometheus text exposition of every worker's cells.
/// One sample of `name` per worker and step, for the steps where `value` has one.
fn per_step(
    out: &mut String,
    name: &str,
    workers: &[Arc<WorkerCells>],
    label: &dyn Fn(&WorkerCells, usize) -> String,
    value: impl Fn(&super::metrics::StepCells) -> Option<String>,
) {
    for w in workers {
        for (s, c) in w.steps.iter().enumerate() {
            if let Some(v) = value(c) {
                let _ = writeln!(out, "{name}{{{}}} {v}", label(w, s));
            }
        }
    }
}

pub(crate) fn prometheus(obs: &Observer) -> String {
    let workers = obs.workers();
    let samples = lock(&obs.samples).clone();
    let mut out = String::with_capacity(16 << 10);
    let step_label = |w: &WorkerCells, s: usize| {
        format!(
            "step_id=\"{}\",worker_index=\"{}\"",
            esc(&obs.step_ids[s]),
            w.index
        )
    };

    // Partition histograms, as Bytewax's (plus part_id).
    let parts: Vec<(Arc<WorkerCells>, Vec<Arc<super::metrics::PartCells>>)> = workers
        .iter()
        .map(|w| (w.clone(), lock(&w.parts).clone()))
        .collect();
    // Dynamic partitions have no name: they are the worker's.
    let part_label = |w: &WorkerCells, p: &super::metrics::PartCells| match p.part.as_str() {
        "" => step_label(w, p.step),
        name => format!("{},part_id=\"{}\"", step_label(w, p.step), esc(name)),
    };
    for (name, help, input, size) in [
        (
            "bytewax_inp_part_next_batch_duration_seconds",
            "`next_batch` duration in seconds",
            true,
            false,
        ),
        (
            "bytewax_inp_part_next_batch_size",
            "`next_batch` batch size",
            true,
            true,
        ),
        (
            "bytewax_out_part_write_batch_duration_seconds",
            "`write_batch` duration in seconds",
            false,
            false,
        ),
    ] {
        header(&mut out, name, "histogram", help);
        for (w, ps) in &parts {
            for p in ps.iter().filter(|p| p.input == input) {
                let (h, scale) = if size {
                    (&p.size, 1.0)
                } else {
                    (&p.duration, 1e-9)
                };
                histogram(&mut out, name, &part_label(w, p), h, scale);
            }
        }
    }

    // Items in and out of every step.
    type Get = fn(&super::metrics::StepCells) -> &Counter;
    let step_counters: [(&str, &str, Get); 2] = [
        (
            "bytewax_item_inp_count_total",
            "number of items this step has ingested",
            |c| &c.items_in,
        ),
        (
            "bytewax_item_out_count_total",
            "number of items this step has emitted",
            |c| &c.items_out,
        ),
    ];
    for (name, help, get) in step_counters {
        header(&mut out, name, "counter", help);
        per_step(&mut out, name, &workers, &step_label, |c| {
            Some(get(c).get().to_string())
        });
    }

    header(
        &mut out,
        "waxfast_step_busy_seconds_total",
        "counter",
        "time the worker spent in this step (sampled every 10 ms)",
    );
    for (wi, w) in workers.iter().enumerate() {
        for s in 0..w.steps.len() {
            let n = samples
                .in_step
                .get(wi)
                .and_then(|v| v.get(s))
                .copied()
                .unwrap_or(0);
            let secs = n as f64 * SAMPLE_EVERY.as_secs_f64();
            let _ = writeln!(
                out,
                "waxfast_step_busy_seconds_total{{{}}} {secs}",
                step_label(w, s)
            );
        }
    }
    header(
        &mut out,
        "waxfast_step_backpressured_seconds_total",
        "counter",
        "time this step's exchange held the worker's inputs back, or an input was not polled because of it",
    );
    per_step(
        &mut out,
        "waxfast_step_backpressured_seconds_total",
        &workers,
        &step_label,
        |c| Some(ns_to_s(c.backpressured_ns.get()).to_string()),
    );

    // Gauges a worker publishes every 100 ms.
    header(
        &mut out,
        "waxfast_step_frontier",
        "gauge",
        "the step's input frontier: the oldest epoch that may still arrive (+Inf at end of stream)",
    );
    per_step(
        &mut out,
        "waxfast_step_frontier",
        &workers,
        &step_label,
        |c| {
            let f = c.frontier.get();
            Some(if f == EOF_EPOCH || f == ABSENT {
                "+Inf".to_string()
            } else {
                f.to_string()
            })
        },
    );
    type GetG = fn(&super::metrics::StepCells) -> &Counter;
    let gauges: [(&str, &str, GetG); 4] = [
        (
            "waxfast_step_live_keys",
            "keys holding state in this keyed step on this worker",
            |c| &c.live_keys,
        ),
        (
            "waxfast_window_open_windows",
            "windows open in this window step on this worker (over all its keys)",
            |c| &c.open_windows,
        ),
        (
            "waxfast_exchange_ring_messages",
            "messages waiting in this worker's inbound rings of the step's exchange",
            |c| &c.ring_backlog,
        ),
        (
            "waxfast_exchange_overflow_messages",
            "messages in this worker's overflow queues of the step's exchange (full rings)",
            |c| &c.overflow_backlog,
        ),
    ];
    for (name, help, get) in gauges {
        header(&mut out, name, "gauge", help);
        per_step(&mut out, name, &workers, &step_label, |c| {
            let v = get(c).get();
            (v != ABSENT).then(|| v.to_string())
        });
    }

    header(
        &mut out,
        "waxfast_window_watermark_seconds",
        "gauge",
        "the furthest watermark of this window step's keys on this worker, in seconds since the Unix epoch",
    );
    per_step(
        &mut out,
        "waxfast_window_watermark_seconds",
        &workers,
        &step_label,
        |c| {
            let v = c.watermark_ns.get();
            (v != ABSENT).then(|| (v as i64 as f64 / 1e9).to_string())
        },
    );

    // The worker loop.
    type GetT = fn(&super::metrics::LoopTime) -> &Counter;
    let times: [(&str, &str, GetT); 4] = [
        (
            "waxfast_worker_busy_seconds_total",
            "time in scheduling rounds that moved data",
            |t| &t.busy_ns,
        ),
        (
            "waxfast_worker_idle_seconds_total",
            "time in rounds that found nothing to do (spinning or yielding)",
            |t| &t.idle_ns,
        ),
        (
            "waxfast_worker_parked_seconds_total",
            "time parked, waiting for a peer or a deadline",
            |t| &t.parked_ns,
        ),
        (
            "waxfast_worker_backpressured_seconds_total",
            "time in rounds whose inputs were held back by a backlogged exchange",
            |t| &t.backpressured_ns,
        ),
    ];
    for (name, help, get) in times {
        header(&mut out, name, "counter", help);
        for w in &workers {
            let _ = writeln!(
                out,
                "{name}{{worker_index=\"{}\"}} {}",
                w.index,
                ns_to_s(get(&w.time).get())
            );
        }
    }
    header(
        &mut out,
        "waxfast_worker_rounds_total",
        "counter",
        "scheduling rounds",
    );
    for w in &workers {
        let _ = writeln!(
            out,
            "waxfast_worker_rounds_total{{worker_index=\"{}\"}} {}",
            w.index,
            w.time.rounds.get()
        );
    }
    header(
        &mut out,
        "waxfast_worker_epoch",
        "gauge",
        "the worker's current epoch",
    );
    for w in &workers {
        let _ = writeln!(
            out,
            "waxfast_worker_epoch{{worker_index=\"{}\"}} {}",
            w.index,
            w.time.epoch.get()
        );
    }
    if let Some(stats) = obs.snapshots.get() {
        let r = std::sync::atomic::Ordering::Relaxed;
        let commits = stats.commits.load(r);
        header(
            &mut out,
            "waxfast_snapshot_commit_duration_seconds",
            "histogram",
            "time to commit a batch of snapshot rows into the recovery partitions",
        );
        let mut cumulative = 0;
        for (i, le) in crate::recovery::COMMIT_BUCKETS.iter().enumerate() {
            cumulative += stats.buckets[i].load(r);
            let _ = writeln!(
                out,
                "waxfast_snapshot_commit_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "waxfast_snapshot_commit_duration_seconds_bucket{{le=\"+Inf\"}} {commits}"
        );
        let _ = writeln!(
            out,
            "waxfast_snapshot_commit_duration_seconds_sum {}",
            ns_to_s(stats.nanos.load(r))
        );
        let _ = writeln!(
            out,
            "waxfast_snapshot_commit_duration_seconds_count {commits}"
        );
        for (name, help, v) in [
            (
                "waxfast_snapshot_rows_total",
                "snapshot rows committed",
                stats.rows.load(r),
            ),
            (
                "waxfast_snapshot_bytes_total",
                "encoded bytes of the snapshot rows committed (keys and states)",
                stats.bytes.load(r),
            ),
        ] {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
        header(
            &mut out,
            "waxfast_snapshot_committed_epoch",
            "gauge",
            "the epoch every worker of this run has committed (the resume point)",
        );
        let _ = writeln!(
            out,
            "waxfast_snapshot_committed_epoch {}",
            stats.committed_epoch.load(r)
        );
    }
    if let Some((signal, addresses, me)) = obs.net.get() {
        let peers: Vec<usize> = (0..addresses.len()).filter(|p| p != me).collect();
        let peer = |p: usize| format!("peer=\"{p}\",peer_address=\"{}\"", esc(&addresses[p]));
        type Read = fn(&crate::net::io::PeerTraffic) -> u64;
        let counters: [(&str, &str, Read); 4] = [
            (
                "waxfast_peer_sent_bytes_total",
                "bytes written to a peer process's connection",
                |t| t.sent_bytes.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "waxfast_peer_sent_frames_total",
                "frames written to a peer process's connection",
                |t| t.sent_frames.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "waxfast_peer_received_bytes_total",
                "bytes read from a peer process's connection",
                |t| t.recv_bytes.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "waxfast_peer_received_frames_total",
                "frames read from a peer process's connection",
                |t| t.recv_frames.load(std::sync::atomic::Ordering::Relaxed),
            ),
        ];
        for (name, help, get) in counters {
            header(&mut out, name, "counter", help);
            for &p in &peers {
                let _ = writeln!(out, "{name}{{{}}} {}", peer(p), get(&signal.traffic[p]));
            }
        }
        header(
            &mut out,
            "waxfast_peer_queued_bytes",
            "gauge",
            "bytes of frames waiting to be written to a peer process (the outbound budget's count)",
        );
        for &p in &peers {
            let _ = writeln!(
                out,
                "waxfast_peer_queued_bytes{{{}}} {}",
                peer(p),
                signal.queued_bytes(p)
            );
        }
    }
    // Connectors' gauges (a Kafka partition's consumer lag).
    let mut last = "";
    for g in crate::io::gauge::live() {
        if g.name() != last {
            header(&mut out, g.name(), "gauge", g.help());
            last = g.name();
        }
        let labels: Vec<String> = g
            .labels()
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
            .collect();
        let _ = writeln!(out, "{}{{{}}} {}", g.name(), labels.join(","), g.get());
    }
    header(
        &mut out,
        "waxfast_uptime_seconds",
        "gauge",
        "seconds since this process's run started",
    );
    let _ = writeln!(
        out,
        "waxfast_uptime_seconds {}",
        obs.started.elapsed().as_secs_f64()
    );
    out
}

/// The dashboard's JSON: cumulative counts per step and worker, with the time they
/// were read; the page turns differences into rates.
pub(crate) fn status(obs: &Observer) -> Value {
    let workers = obs.workers();
    let samples = lock(&obs.samples).clone();
    let steps: Vec<Value> = (0..obs.step_ids.len())
        .map(|s| {
            let per: Vec<Value> = workers
                .iter()
                .enumerate()
                .map(|(wi, w)| {
                    let c = &w.steps[s];
                    let f = c.frontier.get();
                    json!({
                        "worker_index": w.index,
                        "items_in": c.items_in.get(),
                        "items_out": c.items_out.get(),
                        "busy_samples": samples.in_step.get(wi).and_then(|v| v.get(s)).copied().unwrap_or(0),
                        "backpressured_s": ns_to_s(c.backpressured_ns.get()),
                        "frontier": if f == EOF_EPOCH { Value::Null } else { json!(f) },
                        "live_keys": (c.live_keys.get() != ABSENT).then(|| c.live_keys.get()),
                        "overflow": (c.overflow_backlog.get() != ABSENT).then(|| c.overflow_backlog.get()),
                    })
                })
                .collect();
            json!({
                "step_id": &*obs.step_ids[s],
                "op_type": obs.step_kinds[s],
                "workers": per,
            })
        })
        .collect();
    let ws: Vec<Value> = workers
        .iter()
        .enumerate()
        .map(|(wi, w)| {
            json!({
                "worker_index": w.index,
                "samples": samples.total.get(wi).copied().unwrap_or(0),
                "busy_s": ns_to_s(w.time.busy_ns.get()),
                "idle_s": ns_to_s(w.time.idle_ns.get()),
                "parked_s": ns_to_s(w.time.parked_ns.get()),
                "backpressured_s": ns_to_s(w.time.backpressured_ns.get()),
                "epoch": w.time.epoch.get(),
                "rounds": w.time.rounds.get(),
            })
        })
        .collect();
    json!({
        "flow_id": obs.graph.flow_id,
        "uptime_s": obs.started.elapsed().as_secs_f64(),
        "sample_period_s": SAMPLE_EVERY.as_secs_f64(),
        "steps": steps,
        "workers": ws,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_bounds_are_exact_decimals() {
        assert_eq!(super::secs_text(500_000), "0.0005");
        assert_eq!(super::secs_text(1_000), "0.000001");
        assert_eq!(super::secs_text(7_500_000_000), "7.5");
        assert_eq!(super::secs_text(10_000_000_000), "10");
        assert_eq!(super::secs_text(0), "0");
    }
}
