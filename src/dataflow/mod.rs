//! The blueprint: a [`Dataflow`] is a DAG of named steps over typed [`Stream`]s.
//!
//! Building a flow only records steps; nothing runs. Each step carries a build closure
//! that instantiates it on one worker, so that every worker can build the same flow.
//! This module knows nothing of threads, rings or sockets.

use std::any::Any;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) use crate::base::key::bytes_eq;
pub use crate::base::key::Key;

use crate::base::push::Data;
use crate::error::{Error, Result};
use crate::io::Source;
use crate::runtime::build::BuildCtx;

/// Index of a stream within its flow.
pub(crate) type StreamId = usize;

/// Instantiates a step on one worker.
pub(crate) type BuildFn = Box<dyn Fn(&mut BuildCtx) -> Result<()> + Send + Sync>;

/// Checks, before a resumed run starts, the partition states a snapshot saved for an
/// input step (given its step id and the `(partition, encoded state)` pairs).
pub(crate) type ResumeCheck = Box<
    dyn Fn(&str, &[(String, Vec<u8>)]) -> std::result::Result<(), crate::BoxError> + Send + Sync,
>;

/// Index of an exchange channel within its flow.
pub(crate) type ChannelId = usize;

/// Lists the partitions of a fixed-partitioned source or sink (called once per process,
/// before the workers start; see `runtime::listing`).
#[derive(Clone)]
pub(crate) struct PartLister(pub(crate) Arc<ListFn>);

/// The function behind a [`PartLister`].
pub(crate) type ListFn =
    dyn Fn() -> std::result::Result<Vec<String>, crate::error::BoxError> + Send + Sync;

impl std::fmt::Debug for PartLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartLister")
    }
}

/// An exchange channel as the blueprint knows it: its id (its index in the flow) and
/// how its batches cross a process boundary (a `Codec<B>` of the channel's batch type,
/// type-erased). Which rings or connections carry it is the transport's business
/// (`transport::threads::Allocator`, `transport::Remote`).
pub(crate) type ChannelCodec = Arc<dyn Any + Send + Sync>;

/// What part a step plays, for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Input,
    Output,
    Operator,
}

/// One step of the blueprint.
pub(crate) struct StepDef {
    pub(crate) id: Arc<str>,
    pub(crate) kind: &'static str,
    pub(crate) inputs: Vec<StreamId>,
    pub(crate) outputs: Vec<StreamId>,
    pub(crate) role: Role,
    pub(crate) build: BuildFn,
    /// For an input with partitions: checks the positions a snapshot saved.
    pub(crate) resume_check: Option<ResumeCheck>,
}

impl std::fmt::Debug for StepDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepDef")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// The first problem with a step id, kept until the flow is validated.
#[derive(Debug, Clone)]
enum IdProblem {
    Duplicate(String),
    Invalid(String),
}

impl IdProblem {
    fn to_error(&self) -> Error {
        match self {
            IdProblem::Duplicate(id) => Error::DuplicateStepId(id.clone()),
            IdProblem::Invalid(id) => Error::InvalidStepId(id.clone()),
        }
    }
}

#[derive(Debug, Default)]
struct Graph {
    name: String,
    steps: Vec<Arc<StepDef>>,
    ids: HashSet<Arc<str>>,
    streams: usize,
    channels: Vec<ChannelCodec>,
    /// The fixed-partitioned inputs and outputs, by step id.
    listers: Vec<(Arc<str>, PartLister)>,
    /// Composite operators (scopes opened by [`Stream::enter`]): id and operator kind.
    scopes: Vec<(Arc<str>, &'static str)>,
    error: Option<IdProblem>,
}

impl Graph {
    fn record(&mut self, e: IdProblem) {
        self.error.get_or_insert(e);
    }

    /// Reserves `scope.name` as a step id; records an error if it is taken or invalid.
    fn reserve(&mut self, scope: &str, name: &str) -> Arc<str> {
        let id: Arc<str> = format!("{scope}.{name}").into();
        if name.is_empty() || name.contains('.') {
            self.record(IdProblem::Invalid(id.to_string()));
        } else if !self.ids.insert(id.clone()) {
            self.record(IdProblem::Duplicate(id.to_string()));
        }
        id
    }

    fn new_stream(&mut self) -> StreamId {
        self.streams += 1;
        self.streams - 1
    }
}

/// A validated, immutable copy of a flow's steps, shared by all workers of a run.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) name: String,
    pub(crate) steps: Vec<Arc<StepDef>>,
    pub(crate) streams: usize,
    pub(crate) channels: Vec<ChannelCodec>,
    /// The fixed-partitioned inputs and outputs, by step id, in declaration order.
    pub(crate) listers: Vec<(Arc<str>, PartLister)>,
    /// Composite operators: their ids and kinds (for rendering the graph).
    pub(crate) scopes: Vec<(Arc<str>, &'static str)>,
}

impl Plan {
    /// A hash of the step graph (ids, kinds, wiring, channel count): processes of a
    /// cluster refuse each other unless it matches, since channel and stream indices
    /// must mean the same thing everywhere.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut text = format!("{}|{}|{}", self.name, self.streams, self.channels.len());
        for s in &self.steps {
            text.push_str(&format!(
                "|{}:{}:{:?}>{:?}",
                s.id, s.kind, s.inputs, s.outputs
            ));
        }
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    }
}

/// A dataflow: named steps over typed streams. Build it with [`Dataflow::input`] and the
/// operator methods of [`Stream`], then run it with [`crate::run_main`] or the
/// `waxfast` CLI.
///
/// ```
/// use waxfast::{Dataflow, run_main};
/// use waxfast::connectors::testing::{TestingSource, TestingSink};
///
/// let flow = Dataflow::new("simple");
/// let (sink, out) = TestingSink::new();
/// flow.input("inp", TestingSource::new(0..3))
///     .map("plus_one", |x| x + 1)
///     .output("out", sink);
/// run_main(&flow).unwrap();
/// assert_eq!(out.take(), vec![1, 2, 3]);
/// ```
#[derive(Clone)]
pub struct Dataflow {
    graph: Arc<Mutex<Graph>>,
}

impl std::fmt::Debug for Dataflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = lock(&self.graph);
        f.debug_struct("Dataflow")
            .field("name", &g.name)
            .field("steps", &g.steps.len())
            .finish()
    }
}

fn lock(g: &Mutex<Graph>) -> MutexGuard<'_, Graph> {
    // A panic while holding this lock can only come from a bug in waxfast itself; the
    // graph is still consistent (every mutation is a single push/insert).
    g.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dataflow {
    /// Starts an empty flow. The name is the first component of every step id.
    pub fn new(name: &str) -> Dataflow {
        let mut g = Graph {
            name: name.to_string(),
            ..Graph::default()
        };
        if name.is_empty() || name.contains('.') {
            g.record(IdProblem::Invalid(name.to_string()));
        }
        Dataflow {
            graph: Arc::new(Mutex::new(g)),
        }
    }

    /// The flow's name.
    pub fn name(&self) -> String {
        lock(&self.graph).name.clone()
    }

    /// Adds an input step reading from `source`.
    ///
    /// ```
    /// use waxfast::Dataflow;
    /// use waxfast::connectors::testing::TestingSource;
    /// let flow = Dataflow::new("f");
    /// let numbers = flow.input("inp", TestingSource::new(vec![1, 2, 3]));
    /// # let _ = numbers;
    /// ```
    pub fn input<T: Data>(&self, step: &str, source: impl Source<T>) -> Stream<T> {
        let kind = source.into_kind();
        let check: Option<ResumeCheck> = match &kind {
            crate::io::SourceKind::Fixed(src) => {
                let src = src.clone();
                Some(Box::new(move |step_id, saved| {
                    src.check_resume(step_id, saved)
                }))
            }
            crate::io::SourceKind::Dynamic(_) => None,
        };
        let scope: Arc<str> = self.name().into();
        let out = lock(&self.graph).new_stream();
        let lister: Option<PartLister> = match &kind {
            crate::io::SourceKind::Fixed(src) => {
                let src = src.clone();
                Some(PartLister(Arc::new(move || src.list_parts())))
            }
            crate::io::SourceKind::Dynamic(_) => None,
        };
        let id = add_step_checked(
            &self.graph,
            &scope,
            step,
            "input",
            Role::Input,
            vec![],
            vec![out],
            Box::new(move |ctx: &mut BuildCtx| ctx.build_source(&kind, out)),
            check,
        );
        if let Some(lister) = lister {
            lock(&self.graph).listers.push((id, lister));
        }
        Stream::new(self.graph.clone(), out, scope)
    }

    /// Checks the flow: unique and valid step ids, at least one input and one output.
    /// Every entry point calls this; call it yourself to fail early.
    pub fn validate(&self) -> Result<()> {
        self.plan().map(|_| ())
    }

    /// The full ids of all steps, in declaration order.
    pub fn step_ids(&self) -> Vec<String> {
        lock(&self.graph)
            .steps
            .iter()
            .map(|s| s.id.to_string())
            .collect()
    }

    /// The fingerprint of this flow's step graph that the processes of a cluster
    /// compare in their handshake (XXH3 of the flow name, step ids, kinds, wiring and
    /// channel count). Fails as a run would if the flow is invalid.
    pub fn fingerprint(&self) -> Result<u64> {
        Ok(self.plan()?.fingerprint())
    }

    pub(crate) fn plan(&self) -> Result<Plan> {
        let g = lock(&self.graph);
        if let Some(problem) = &g.error {
            return Err(problem.to_error());
        }
        if !g.steps.iter().any(|s| s.role == Role::Input) {
            return Err(Error::NoInput(g.name.clone()));
        }
        if !g.steps.iter().any(|s| s.role == Role::Output) {
            return Err(Error::NoOutput(g.name.clone()));
        }
        Ok(Plan {
            name: g.name.clone(),
            steps: g.steps.clone(),
            streams: g.streams,
            channels: g.channels.clone(),
            listers: g.listers.clone(),
            scopes: g.scopes.clone(),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn add_step(
    graph: &Arc<Mutex<Graph>>,
    scope: &str,
    name: &str,
    kind: &'static str,
    role: Role,
    inputs: Vec<StreamId>,
    outputs: Vec<StreamId>,
    build: BuildFn,
) -> Arc<str> {
    add_step_checked(graph, scope, name, kind, role, inputs, outputs, build, None)
}

#[allow(clippy::too_many_arguments)]
fn add_step_checked(
    graph: &Arc<Mutex<Graph>>,
    scope: &str,
    name: &str,
    kind: &'static str,
    role: Role,
    inputs: Vec<StreamId>,
    outputs: Vec<StreamId>,
    build: BuildFn,
    resume_check: Option<ResumeCheck>,
) -> Arc<str> {
    let mut g = lock(graph);
    let id = g.reserve(scope, name);
    g.steps.push(Arc::new(StepDef {
        id: id.clone(),
        kind,
        inputs,
        outputs,
        role,
        build,
        resume_check,
    }));
    id
}

/// A typed stream of items on every worker. Operators are methods on it; see the
/// operator modules for their docs ([`crate::operators`]).
pub struct Stream<T> {
    graph: Arc<Mutex<Graph>>,
    pub(crate) id: StreamId,
    scope: Arc<str>,
    _item: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            graph: self.graph.clone(),
            id: self.id,
            scope: self.scope.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream({} #{})", self.scope, self.id)
    }
}

impl<T: Data> Stream<T> {
    fn new(graph: Arc<Mutex<Graph>>, id: StreamId, scope: Arc<str>) -> Self {
        Stream {
            graph,
            id,
            scope,
            _item: PhantomData,
        }
    }

    /// The scope (dotted path) in which steps consuming this stream are named.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Adds a step with one input (this stream) and one output.
    pub(crate) fn unary<U: Data>(
        &self,
        name: &str,
        kind: &'static str,
        build: impl Fn(&mut BuildCtx, StreamId, StreamId) -> Result<()> + Send + Sync + 'static,
    ) -> Stream<U> {
        let out = lock(&self.graph).new_stream();
        let inp = self.id;
        add_step(
            &self.graph,
            &self.scope,
            name,
            kind,
            Role::Operator,
            vec![inp],
            vec![out],
            Box::new(move |ctx: &mut BuildCtx| build(ctx, inp, out)),
        );
        Stream::new(self.graph.clone(), out, self.scope.clone())
    }

    /// Adds a step with the given inputs and `n_out` outputs of arbitrary types; the
    /// caller makes the typed output handles with [`Stream::output_handle`].
    pub(crate) fn general(
        &self,
        name: &str,
        kind: &'static str,
        role: Role,
        inputs: Vec<StreamId>,
        n_out: usize,
        build: impl Fn(&mut BuildCtx, &[StreamId], &[StreamId]) -> Result<()> + Send + Sync + 'static,
    ) -> Vec<StreamId> {
        let outs: Vec<StreamId> = {
            let mut g = lock(&self.graph);
            (0..n_out).map(|_| g.new_stream()).collect()
        };
        let (ins, os) = (inputs.clone(), outs.clone());
        add_step(
            &self.graph,
            &self.scope,
            name,
            kind,
            role,
            inputs,
            outs.clone(),
            Box::new(move |ctx: &mut BuildCtx| build(ctx, &ins, &os)),
        );
        outs
    }

    /// Records that the step declared last has fixed partitions, listed by `lister`.
    pub(crate) fn last_step_lists(&self, lister: PartLister) {
        let mut g = lock(&self.graph);
        if let Some(id) = g.steps.last().map(|s| s.id.clone()) {
            g.listers.push((id, lister));
        }
    }

    /// A typed handle on stream `id` of this flow, in this stream's scope.
    pub(crate) fn output_handle<U: Data>(&self, id: StreamId) -> Stream<U> {
        Stream::new(self.graph.clone(), id, self.scope.clone())
    }

    /// Opens the scope of a composite operator named `name` (Bytewax's `@operator`):
    /// reserves the id `scope.name` and returns this stream re-homed inside it, so the
    /// steps added to it are named `scope.name.inner`. Bring other input streams into
    /// the scope with [`rescope`](Self::rescope), and take the result out the same way.
    ///
    /// ```
    /// use waxfast::{Dataflow, Stream, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    ///
    /// /// A user's operator: its steps are `step.clean` and `step.keep`.
    /// fn clean_words(up: &Stream<String>, step: &str) -> Stream<String> {
    ///     let inner = up.enter(step);
    ///     inner
    ///         .map("clean", |w: String| w.trim().to_lowercase())
    ///         .filter("keep", |w: &String| !w.is_empty())
    ///         .rescope(up)
    /// }
    ///
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let words = flow.input("inp", TestingSource::new(vec![" Hi ".to_string(), " ".to_string()]));
    /// clean_words(&words, "words").output("out", sink);
    /// assert!(flow.step_ids().contains(&"f.words.clean".to_string()));
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec!["hi".to_string()]);
    /// ```
    pub fn enter(&self, name: &str) -> Stream<T> {
        self.enter_as(name, "operator")
    }

    /// [`enter`](Self::enter) for a composite of kind `kind` (what the rendered graph
    /// calls its `op_type`: `join`, `count_final`, ...).
    pub(crate) fn enter_as(&self, name: &str, kind: &'static str) -> Stream<T> {
        let mut g = lock(&self.graph);
        let id = g.reserve(&self.scope, name);
        g.scopes.push((id.clone(), kind));
        drop(g);
        Stream::new(self.graph.clone(), self.id, id)
    }

    /// This stream in `other`'s scope: returns a stream from a composite's scope to
    /// the outer one, or brings a second input into a composite's scope (see
    /// [`enter`](Self::enter)).
    ///
    /// ```
    /// use waxfast::{Dataflow, Stream, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    ///
    /// /// Merges two streams and doubles them, as one step `step` of two inner ones.
    /// fn merge_doubled(a: &Stream<u32>, b: &Stream<u32>, step: &str) -> Stream<u32> {
    ///     let inner = a.enter(step);
    ///     let b = b.rescope(&inner);
    ///     inner.merge("merge", [&b]).map("double", |x| x * 2).rescope(a)
    /// }
    ///
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let a = flow.input("a", TestingSource::new(vec![1]));
    /// let b = flow.input("b", TestingSource::new(vec![2]));
    /// merge_doubled(&a, &b, "md").output("out", sink);
    /// run_main(&flow).unwrap();
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, vec![2, 4]);
    /// ```
    pub fn rescope<O>(&self, other: &Stream<O>) -> Stream<T> {
        Stream::new(self.graph.clone(), self.id, other.scope.clone())
    }

    /// Allocates an exchange channel whose rings carry batches of type `B`.
    pub(crate) fn new_channel<B: crate::base::codec::Wire + Send + 'static>(&self) -> ChannelId {
        self.new_channel_with(B::codec())
    }

    /// Allocates an exchange channel whose batches cross processes with `codec`.
    pub(crate) fn new_channel_with<B: Send + 'static>(
        &self,
        codec: crate::base::codec::Codec<B>,
    ) -> ChannelId {
        let mut g = lock(&self.graph);
        g.channels.push(Arc::new(codec));
        g.channels.len() - 1
    }

    /// Checks that `other` belongs to the same flow.
    pub(crate) fn same_flow<U>(&self, other: &Stream<U>) -> bool {
        Arc::ptr_eq(&self.graph, &other.graph)
    }
}
