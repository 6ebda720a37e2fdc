//! Sources and sinks: the traits connectors implement, with Bytewax's shapes.
//!
//! * A [`FixedPartitionedSource`] has a fixed, named set of partitions
//!   ([`list_parts`](FixedPartitionedSource::list_parts)); each is read by exactly one
//!   worker, and each can snapshot its position so a resumed run continues from it.
//! * A [`DynamicSource`] builds one stateless partition on every worker.
//! * A [`FixedPartitionedSink`] takes keyed items `(K, V)`; the key picks the partition
//!   and each partition lives on one worker and can snapshot its state.
//! * A [`DynamicSink`] builds one stateless partition on every worker.
//!
//! A connector type implements one of these traits and then [`Source`] or [`Sink`] with
//! a one-line body (`SourceKind::fixed(self)`, `SinkKind::dynamic(self)`, ...), which is
//! what `Dataflow::input` and `Stream::output` accept.

pub mod gauge;
mod sink;
mod source;

pub use sink::{
    DynamicSink, FixedPartitionedSink, Sink, SinkKind, StatefulSinkPartition,
    StatelessSinkPartition,
};
pub use source::{
    DynamicSource, FixedPartitionedSource, Source, SourceKind, SourceStatus,
    StatefulSourcePartition, StatelessSourcePartition,
};

pub(crate) use sink::ErasedSinkPart;
pub(crate) use source::ErasedSourcePart;

/// Assigns fixed partitions to workers as Bytewax does: partitions visible to the fewest
/// workers are placed first, each on the visible worker holding the fewest partitions so
/// far, ties going to the lowest worker index. `visible[p]` lists the workers that can
/// see partition `p`; the result gives the owning worker of each partition.
pub fn assign_partitions(visible: &[Vec<usize>], worker_count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..visible.len()).collect();
    order.sort_by_key(|&p| visible[p].len()); // stable: list order breaks ties
    let mut load = vec![0usize; worker_count];
    let mut owner = vec![usize::MAX; visible.len()];
    for p in order {
        let w = visible[p]
            .iter()
            .copied()
            .filter(|&w| w < worker_count)
            .min_by_key(|&w| (load[w], w))
            .unwrap_or(p % worker_count.max(1));
        load[w] += 1;
        owner[p] = w;
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_parts_three_workers_matches_bytewax() {
        // outputs/partition_assign_demo_w3.txt: W0 gets p0,p3; W1 p1,p4; W2 p2.
        let all = vec![vec![0, 1, 2]; 5];
        assert_eq!(assign_partitions(&all, 3), vec![0, 1, 2, 0, 1]);
    }

    #[test]
    fn scarce_partitions_first() {
        // p0 visible everywhere, p1 only on worker 0: p1 is placed first, on 0,
        // so p0 goes to the emptier worker 1.
        let vis = vec![vec![0, 1], vec![0]];
        assert_eq!(assign_partitions(&vis, 2), vec![1, 0]);
    }

    #[test]
    fn single_worker_owns_everything() {
        let vis = vec![vec![0]; 4];
        assert_eq!(assign_partitions(&vis, 1), vec![0; 4]);
    }
}
