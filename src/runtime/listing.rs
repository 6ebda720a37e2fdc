//! The partitions of every fixed-partitioned input and output, listed once per process
//! before its workers start.
//!
//! Every worker of the process builds from this one list (so a file that changes while
//! the workers start cannot give two workers two different lists), and the processes of
//! a cluster compare theirs in the handshake: partition assignment is a pure function of
//! the list, so two processes that list different partitions would each skip the
//! partitions they believe the other owns, and the run would lose data with exit 0.

use std::sync::Arc;

use crate::dataflow::Plan;
use crate::error::{Error, Result};
use crate::net::hello::PartSummary;

/// The longest partition name a summary quotes.
const QUOTE: usize = 160;

/// Each fixed-partitioned step's partition names, in declaration order.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    steps: Vec<(Arc<str>, Arc<Vec<String>>)>,
}

impl Listing {
    /// Lists every fixed-partitioned step of `plan`; the first that cannot be listed
    /// is an error naming its step.
    pub(crate) fn of(plan: &Plan) -> Result<Listing> {
        let mut steps = Vec::with_capacity(plan.listers.len());
        for (id, lister) in &plan.listers {
            let names = (lister.0)().map_err(|e| Error::in_step(id.to_string(), e))?;
            steps.push((id.clone(), Arc::new(names)));
        }
        Ok(Listing { steps })
    }

    /// The partitions of step `id`, if it is fixed-partitioned.
    pub(crate) fn parts(&self, id: &str) -> Option<Arc<Vec<String>>> {
        self.steps
            .iter()
            .find(|(s, _)| &**s == id)
            .map(|(_, p)| p.clone())
    }

    /// What the handshake compares: per step, the count, a digest of the names, and
    /// the first name (to say what differs).
    pub(crate) fn summary(&self) -> Vec<PartSummary> {
        self.steps
            .iter()
            .map(|(id, names)| {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                for n in names.iter() {
                    h.update(&(n.len() as u64).to_le_bytes());
                    h.update(n.as_bytes());
                }
                let first = names
                    .first()
                    .map_or(String::new(), |n| n.chars().take(QUOTE).collect::<String>());
                PartSummary {
                    step: id.to_string(),
                    count: names.len() as u64,
                    digest: h.digest(),
                    first,
                }
            })
            .collect()
    }
}
