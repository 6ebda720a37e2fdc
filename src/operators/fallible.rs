//! Steps that can fail the run without panicking: `try_map`, `try_flat_map`, and
//! `raises` (Bytewax's sink that fails on any item).
//!
//! A closure that returns `Err(e)` ends the run with [`Error::Step`] naming the step
//! and carrying `e`, exactly as a source or sink error does: every worker stops, the
//! run returns the error (the CLI exits 1), and no panic message is printed. A panic
//! in the closure still ends the run too, as [`Error::StepPanicked`].

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::dataflow::Stream;
use crate::error::{BoxError, Error};
use crate::io::{DynamicSink, Sink, SinkKind, StatelessSinkPartition};
use crate::operators::stateless::transform;
use crate::runtime::build::fail;
use crate::runtime::push::Data;

impl<T: Data> Stream<T> {
    /// Transforms each item with `f`; an `Err` fails the run at once with
    /// [`Error::Step`] naming this step (the items of its batch that came before it do
    /// not reach later steps: the run is failing).
    ///
    /// ```
    /// use waxfast::{Dataflow, Error, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// let flow = Dataflow::new("f");
    /// let (sink, _out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["1", "x"]))
    ///     .try_map("parse", |s: &str| s.parse::<u32>())
    ///     .output("out", sink);
    /// match run_main(&flow) {
    ///     Err(Error::Step { step_id, source }) => {
    ///         assert_eq!(step_id, "f.parse");
    ///         assert_eq!(source.to_string(), "invalid digit found in string");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn try_map<U: Data, E: Into<BoxError>>(
        &self,
        step: &str,
        f: impl Fn(T) -> Result<U, E> + Send + Sync + 'static,
    ) -> Stream<U> {
        let f = Arc::new(f);
        self.unary(step, "try_map", move |ctx, inp, out| {
            let f = f.clone();
            let id = ctx.step_id().to_string();
            transform(ctx, inp, out, move |b: &mut Vec<T>, o: &mut Vec<U>| {
                for x in b.drain(..) {
                    match f(x) {
                        Ok(u) => o.push(u),
                        Err(e) => fail(Error::in_step(id.clone(), e)),
                    }
                }
            });
            Ok(())
        })
    }

    /// Like [`flat_map`](Self::flat_map), but `f` may fail: an `Err` fails the run with
    /// [`Error::Step`] naming this step.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSink, TestingSource}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["1,2", "3"]))
    ///     .try_flat_map("split", |s: &str| {
    ///         s.split(',').map(str::parse::<u8>).collect::<Result<Vec<_>, _>>()
    ///     })
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![1, 2, 3]);
    /// ```
    pub fn try_flat_map<U: Data, I: IntoIterator<Item = U>, E: Into<BoxError>>(
        &self,
        step: &str,
        f: impl Fn(T) -> Result<I, E> + Send + Sync + 'static,
    ) -> Stream<U> {
        let f = Arc::new(f);
        self.unary(step, "try_flat_map", move |ctx, inp, out| {
            let f = f.clone();
            let id = ctx.step_id().to_string();
            transform(ctx, inp, out, move |b: &mut Vec<T>, o: &mut Vec<U>| {
                for x in b.drain(..) {
                    match f(x) {
                        Ok(us) => o.extend(us),
                        Err(e) => fail(Error::in_step(id.clone(), e)),
                    }
                }
            });
            Ok(())
        })
    }

    /// An output that fails the run on its first item (Bytewax's `raises`): the error
    /// is [`Error::Step`] naming this step, with Bytewax's message
    /// `` `raises` step 'flow.step' got an item: {item:?} ``. For a stream that must
    /// stay empty (rejects, dead letters) in a run that must not end well otherwise.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::TestingSource};
    /// let flow = Dataflow::new("f");
    /// flow.input("inp", TestingSource::new(vec![5])).raises("boom");
    /// let err = run_main(&flow).unwrap_err();
    /// assert_eq!(err.to_string(), "error in step \"f.boom\": `raises` step 'f.boom' got an item: 5");
    /// ```
    pub fn raises(&self, step: &str)
    where
        T: Debug,
    {
        self.output(step, RaiseSink(PhantomData));
    }
}

/// The sink of [`Stream::raises`].
#[derive(Debug)]
struct RaiseSink<T>(PhantomData<fn(T)>);

#[derive(Debug)]
struct RaisePartition<T>(String, PhantomData<fn(T)>);

impl<T: Data + Debug> StatelessSinkPartition for RaisePartition<T> {
    type Item = T;
    fn write_batch(&mut self, items: &mut Vec<T>) -> Result<(), BoxError> {
        match items.first() {
            Some(item) => Err(format!("`raises` step '{}' got an item: {item:?}", self.0).into()),
            None => Ok(()),
        }
    }
}

impl<T: Data + Debug> DynamicSink for RaiseSink<T> {
    type Item = T;
    type Part = RaisePartition<T>;
    fn build(
        &self,
        step_id: &str,
        _worker_index: usize,
        _worker_count: usize,
    ) -> Result<RaisePartition<T>, BoxError> {
        Ok(RaisePartition(step_id.to_string(), PhantomData))
    }
}

impl<T: Data + Debug> Sink<T> for RaiseSink<T> {
    fn into_kind(self) -> SinkKind<T> {
        SinkKind::dynamic(self)
    }
}
