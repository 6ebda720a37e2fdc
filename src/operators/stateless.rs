//! Stateless operators: they run on the worker that holds the item, without moving it.

use std::fmt::Debug;
use std::io::Write;

use crate::dataflow::{Key, Role, Stream};
use crate::io::{Sink, SinkKind};
use crate::operators::keyed::out::Unkeyed;
use crate::runtime::build::BuildCtx;
use crate::runtime::fuse::FusedKeys;
use crate::runtime::progress::Epoch;
use crate::runtime::push::{Data, Push, PushFn, Tee};
use std::cell::RefCell;
use std::rc::Rc;

/// The two streams [`Stream::branch`] returns.
#[derive(Debug, Clone)]
pub struct Branch<T> {
    /// Items for which the predicate returned `true`.
    pub trues: Stream<T>,
    /// Items for which the predicate returned `false`.
    pub falses: Stream<T>,
}

/// Registers a consumer of `inp` that transforms each batch into `out` with `f`
/// (which appends to the output buffer it is given).
pub(crate) fn transform<T: Data, U: Data>(
    ctx: &mut BuildCtx,
    inp: crate::dataflow::StreamId,
    out: crate::dataflow::StreamId,
    mut f: impl FnMut(&mut Vec<T>, &mut Vec<U>) + 'static,
) {
    let mut tee = ctx.take_tee::<U>(out);
    let mut buf: Vec<U> = Vec::new();
    ctx.consume(
        inp,
        PushFn(move |epoch: Epoch, batch: &mut Vec<T>| {
            f(batch, &mut buf);
            tee.push(epoch, &mut buf);
        }),
    );
}

fn print_lines<T>(items: &[T], mut line: impl FnMut(&mut Vec<u8>, &T)) {
    let mut buf = Vec::with_capacity(items.len() * 16);
    for item in items {
        line(&mut buf, item);
    }
    // Printing is the purpose of inspect; a closed stdout must not kill the flow.
    let _ = std::io::stdout().lock().write_all(&buf);
}

impl<T: Data> Stream<T> {
    /// Transforms each item with `mapper`.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(0..3)).map("double", |x| x * 2).output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![0, 2, 4]);
    /// ```
    pub fn map<U: Data>(
        &self,
        step: &str,
        mapper: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Stream<U> {
        let mapper = std::sync::Arc::new(mapper);
        self.unary(step, "map", move |ctx, inp, out| {
            let mapper = mapper.clone();
            transform(ctx, inp, out, move |b: &mut Vec<T>, o: &mut Vec<U>| {
                o.extend(b.drain(..).map(&*mapper))
            });
            Ok(())
        })
    }

    /// Keeps the items for which `predicate` is true. Works in place: no copy.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(0..6)).filter("even", |x| x % 2 == 0).output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![0, 2, 4]);
    /// ```
    pub fn filter(
        &self,
        step: &str,
        predicate: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Stream<T> {
        let predicate = std::sync::Arc::new(predicate);
        self.unary(step, "filter", move |ctx, inp, out| {
            let predicate = predicate.clone();
            let mut tee = ctx.take_tee::<T>(out);
            ctx.consume(
                inp,
                PushFn(move |epoch, batch: &mut Vec<T>| {
                    batch.retain(|x| predicate(x));
                    tee.push(epoch, batch);
                }),
            );
            Ok(())
        })
    }

    /// Maps each item and keeps the `Some` results.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["1", "x", "3"]))
    ///     .filter_map("parse", |s| s.parse::<u32>().ok())
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![1, 3]);
    /// ```
    pub fn filter_map<U: Data>(
        &self,
        step: &str,
        mapper: impl Fn(T) -> Option<U> + Send + Sync + 'static,
    ) -> Stream<U> {
        let mapper = std::sync::Arc::new(mapper);
        self.unary(step, "filter_map", move |ctx, inp, out| {
            let mapper = mapper.clone();
            transform(ctx, inp, out, move |b: &mut Vec<T>, o: &mut Vec<U>| {
                o.extend(b.drain(..).filter_map(&*mapper))
            });
            Ok(())
        })
    }

    /// Maps each item to any number of items.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["a b", "c"]))
    ///     .flat_map("split", |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>())
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec!["a", "b", "c"]);
    /// ```
    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        &self,
        step: &str,
        mapper: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        let mapper = std::sync::Arc::new(mapper);
        self.unary(step, "flat_map", move |ctx, inp, out| {
            let mapper = mapper.clone();
            transform(ctx, inp, out, move |b: &mut Vec<T>, o: &mut Vec<U>| {
                o.extend(b.drain(..).flat_map(&*mapper))
            });
            Ok(())
        })
    }

    /// Maps each whole batch (as delivered by the upstream step) to any number of items.
    /// Useful to amortise a per-call cost over many items.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(0..4).batch_size(2))
    ///     .flat_map_batch("sums", |batch: Vec<i32>| vec![batch.iter().sum::<i32>()])
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![1, 5]);
    /// ```
    pub fn flat_map_batch<U: Data, I: IntoIterator<Item = U>>(
        &self,
        step: &str,
        mapper: impl Fn(Vec<T>) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        let mapper = std::sync::Arc::new(mapper);
        self.unary(step, "flat_map_batch", move |ctx, inp, out| {
            let mapper = mapper.clone();
            transform(ctx, inp, out, move |b: &mut Vec<T>, o: &mut Vec<U>| {
                o.extend(mapper(std::mem::take(b)))
            });
            Ok(())
        })
    }

    /// Calls `inspector(step_id, item)` on each item and passes it on unchanged.
    /// Counts as an output when validating the flow.
    pub fn inspect_with(
        &self,
        step: &str,
        inspector: impl Fn(&str, &T) + Send + Sync + 'static,
    ) -> Stream<T> {
        let inspector = std::sync::Arc::new(inspector);
        let outs = self.general(
            step,
            "inspect",
            Role::Output,
            vec![self.id],
            1,
            move |ctx, ins, outs| {
                let inspector = inspector.clone();
                let id = ctx.step_id().to_string();
                let mut tee = ctx.take_tee::<T>(outs[0]);
                ctx.consume(
                    ins[0],
                    PushFn(move |epoch, batch: &mut Vec<T>| {
                        for x in batch.iter() {
                            inspector(&id, x);
                        }
                        tee.push(epoch, batch);
                    }),
                );
                Ok(())
            },
        );
        self.output_handle(outs[0])
    }

    /// Prints `{step_id}: {item:?}` for each item on stdout and passes it on.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::TestingSource};
    /// let flow = Dataflow::new("f");
    /// flow.input("inp", TestingSource::new(0..2)).inspect("look"); // prints "f.look: 0", "f.look: 1"
    /// run_main(&flow).unwrap();
    /// ```
    pub fn inspect(&self, step: &str) -> Stream<T>
    where
        T: Debug,
    {
        let outs = self.general(
            step,
            "inspect",
            Role::Output,
            vec![self.id],
            1,
            |ctx, ins, outs| {
                let id = ctx.step_id().to_string();
                let mut tee = ctx.take_tee::<T>(outs[0]);
                ctx.consume(
                    ins[0],
                    PushFn(move |epoch, batch: &mut Vec<T>| {
                        print_lines(batch, |buf, x| {
                            let _ = writeln!(buf, "{id}: {x:?}");
                        });
                        tee.push(epoch, batch);
                    }),
                );
                Ok(())
            },
        );
        self.output_handle(outs[0])
    }

    /// Prints `{step_id} W{worker} @{epoch}: {item:?}` for each item on stdout and passes
    /// it on: shows which worker and epoch each item is in.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::TestingSource};
    /// let flow = Dataflow::new("f");
    /// flow.input("inp", TestingSource::new(0..1)).inspect_debug("where"); // "f.where W0 @1: 0"
    /// run_main(&flow).unwrap();
    /// ```
    pub fn inspect_debug(&self, step: &str) -> Stream<T>
    where
        T: Debug,
    {
        let outs = self.general(
            step,
            "inspect_debug",
            Role::Output,
            vec![self.id],
            1,
            |ctx, ins, outs| {
                let id = ctx.step_id().to_string();
                let worker = ctx.worker_index();
                let mut tee = ctx.take_tee::<T>(outs[0]);
                ctx.consume(
                    ins[0],
                    PushFn(move |epoch, batch: &mut Vec<T>| {
                        print_lines(batch, |buf, x| {
                            let _ = writeln!(buf, "{id} W{worker} @{epoch}: {x:?}");
                        });
                        tee.push(epoch, batch);
                    }),
                );
                Ok(())
            },
        );
        self.output_handle(outs[0])
    }

    /// Splits the stream in two by `predicate`.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (evens, e) = TestingSink::new();
    /// let (odds, o) = TestingSink::new();
    /// let b = flow.input("inp", TestingSource::new(0..5)).branch("parity", |x| x % 2 == 0);
    /// b.trues.output("evens", evens);
    /// b.falses.output("odds", odds);
    /// run_main(&flow).unwrap();
    /// assert_eq!((e.take(), o.take()), (vec![0, 2, 4], vec![1, 3]));
    /// ```
    pub fn branch(
        &self,
        step: &str,
        predicate: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Branch<T> {
        let predicate = std::sync::Arc::new(predicate);
        let outs = self.general(
            step,
            "branch",
            Role::Operator,
            vec![self.id],
            2,
            move |ctx, ins, outs| {
                let predicate = predicate.clone();
                let mut trues = ctx.take_tee::<T>(outs[0]);
                let mut falses = ctx.take_tee::<T>(outs[1]);
                let (mut tbuf, mut fbuf): (Vec<T>, Vec<T>) = (Vec::new(), Vec::new());
                ctx.consume(
                    ins[0],
                    PushFn(move |epoch, batch: &mut Vec<T>| {
                        for x in batch.drain(..) {
                            if predicate(&x) {
                                tbuf.push(x);
                            } else {
                                fbuf.push(x);
                            }
                        }
                        trues.push(epoch, &mut tbuf);
                        falses.push(epoch, &mut fbuf);
                    }),
                );
                Ok(())
            },
        );
        Branch {
            trues: self.output_handle(outs[0]),
            falses: self.output_handle(outs[1]),
        }
    }

    /// Combines this stream with `others` into one. Order between the inputs is not
    /// defined; each input's own order is kept.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let a = flow.input("a", TestingSource::new(0..2));
    /// let b = flow.input("b", TestingSource::new(10..12));
    /// a.merge("both", [&b]).output("out", sink);
    /// run_main(&flow).unwrap();
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, vec![0, 1, 10, 11]);
    /// ```
    pub fn merge<'a>(
        &self,
        step: &str,
        others: impl IntoIterator<Item = &'a Stream<T>>,
    ) -> Stream<T> {
        let mut inputs = vec![self.id];
        for o in others {
            assert!(
                self.same_flow(o),
                "merge step {step:?}: every stream must belong to the same Dataflow"
            );
            inputs.push(o.id);
        }
        let outs = self.general(
            step,
            "merge",
            Role::Operator,
            inputs,
            1,
            |ctx, ins, outs| {
                let tee = std::rc::Rc::new(std::cell::RefCell::new(ctx.take_tee::<T>(outs[0])));
                for &i in ins {
                    let tee = tee.clone();
                    ctx.consume(
                        i,
                        PushFn(move |epoch, batch: &mut Vec<T>| {
                            tee.borrow_mut().push(epoch, batch)
                        }),
                    );
                }
                Ok(())
            },
        );
        self.output_handle(outs[0])
    }

    /// Spreads items evenly over all workers (round robin). With one worker it passes
    /// items through.
    pub fn redistribute(&self, step: &str) -> Stream<T>
    where
        T: crate::ExchangeData,
    {
        let chan = self.new_channel::<Vec<T>>();
        self.unary(step, "redistribute", move |ctx, inp, out| {
            let mut tee: Tee<T> = ctx.take_tee(out);
            let target: Rc<RefCell<dyn Push<T>>> =
                Rc::new(RefCell::new(PushFn(move |epoch, batch: &mut Vec<T>| {
                    tee.push(epoch, batch)
                })));
            // Round robin, each worker starting at itself, so the first items of every
            // worker do not all land on worker 0.
            let n = ctx.worker_count();
            let mut next = ctx.worker_index();
            ctx.exchange(
                inp,
                chan,
                move |_: &T| {
                    let to = next;
                    next = (next + 1) % n;
                    to
                },
                target,
            );
            Ok(())
        })
    }

    /// Makes a keyed stream `(key_fn(item), item)`.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["apple", "bob"]))
    ///     .key_on("first", |s| s[..1].to_string())
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("a".to_string(), "apple"), ("b".to_string(), "bob")]);
    /// ```
    pub fn key_on<K: Key>(
        &self,
        step: &str,
        key_fn: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Stream<(K, T)> {
        let key_fn = std::sync::Arc::new(key_fn);
        self.unary(step, "key_on", move |ctx, inp, out| {
            let key_fn = key_fn.clone();
            let Some(fused) = ctx.take_fused::<FusedKeys<K, T>>(out) else {
                transform(ctx, inp, out, move |b: &mut Vec<T>, o: &mut Vec<(K, T)>| {
                    o.extend(b.drain(..).map(|x| (key_fn(&x), x)))
                });
                return Ok(());
            };
            // Fused into the keyed step after it: the batch stays where it is as the
            // column of values, beside a column of its keys.
            let (cells, mut keys) = (ctx.step_cells(), Vec::new());
            ctx.consume(
                inp,
                PushFn(move |epoch, batch: &mut Vec<T>| {
                    keys.extend(batch.iter().map(&*key_fn));
                    fused.push(epoch, &mut keys, batch, cells.as_deref());
                }),
            );
            Ok(())
        })
    }

    /// Writes every item to `sink`.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(0..2)).output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![0, 1]);
    /// ```
    pub fn output(&self, step: &str, sink: impl Sink<T>) {
        let kind = sink.into_kind();
        let lister: Option<crate::dataflow::PartLister> = match &kind {
            SinkKind::Fixed(sink, _) => {
                let sink = sink.clone();
                Some(crate::dataflow::PartLister(std::sync::Arc::new(
                    move || Ok(sink.list_parts()),
                )))
            }
            SinkKind::Dynamic(_) => None,
        };
        let chan = match &kind {
            SinkKind::Fixed(_, wire) => Some(self.new_channel_with(wire.0)),
            SinkKind::Dynamic(_) => None,
        };
        self.general(
            step,
            "output",
            Role::Output,
            vec![self.id],
            0,
            move |ctx, ins, _| ctx.build_sink(&kind, ins[0], chan),
        );
        if let Some(lister) = lister {
            self.last_step_lists(lister);
        }
    }
}

impl<I: Data + IntoIterator> Stream<I>
where
    I::Item: Data,
{
    /// Flattens a stream of collections into their items.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![vec![1, 2], vec![], vec![3]]))
    ///     .flatten("flat")
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![1, 2, 3]);
    /// ```
    pub fn flatten(&self, step: &str) -> Stream<I::Item> {
        self.unary(step, "flatten", |ctx, inp, out| {
            transform(ctx, inp, out, |b: &mut Vec<I>, o: &mut Vec<I::Item>| {
                o.extend(b.drain(..).flatten())
            });
            Ok(())
        })
    }
}

impl<K: Key, V: Data> Stream<(K, V)> {
    /// Drops the keys of a keyed stream.
    pub fn key_rm(&self, step: &str) -> Stream<V> {
        self.unary(step, "key_rm", |ctx, inp, out| {
            let tee = Rc::new(RefCell::new(ctx.take_tee::<V>(out)));
            // A keyed step before it may instead emit its values straight into `tee`.
            let cells = ctx.step_cells();
            ctx.offer(
                inp,
                Unkeyed {
                    tee: tee.clone(),
                    cells,
                },
            );
            let mut buf = Vec::new();
            ctx.consume(
                inp,
                PushFn(move |epoch, b: &mut Vec<(K, V)>| {
                    buf.extend(b.drain(..).map(|(_, v)| v));
                    tee.borrow_mut().push(epoch, &mut buf);
                }),
            );
            Ok(())
        })
    }

    /// Transforms each value, keeping its key.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![("a", 1)]))
    ///     .map_value("inc", |v| v + 1)
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("a", 2)]);
    /// ```
    pub fn map_value<W: Data>(
        &self,
        step: &str,
        mapper: impl Fn(V) -> W + Send + Sync + 'static,
    ) -> Stream<(K, W)> {
        let mapper = std::sync::Arc::new(mapper);
        self.unary(step, "map_value", move |ctx, inp, out| {
            let mapper = mapper.clone();
            transform(
                ctx,
                inp,
                out,
                move |b: &mut Vec<(K, V)>, o: &mut Vec<(K, W)>| {
                    o.extend(b.drain(..).map(|(k, v)| (k, mapper(v))))
                },
            );
            Ok(())
        })
    }

    /// Keeps the items whose value satisfies `predicate`.
    pub fn filter_value(
        &self,
        step: &str,
        predicate: impl Fn(&V) -> bool + Send + Sync + 'static,
    ) -> Stream<(K, V)> {
        let predicate = std::sync::Arc::new(predicate);
        self.unary(step, "filter_value", move |ctx, inp, out| {
            let predicate = predicate.clone();
            let mut tee = ctx.take_tee::<(K, V)>(out);
            ctx.consume(
                inp,
                PushFn(move |epoch, batch: &mut Vec<(K, V)>| {
                    batch.retain(|(_, v)| predicate(v));
                    tee.push(epoch, batch);
                }),
            );
            Ok(())
        })
    }

    /// Maps each value to any number of values, each keeping the key.
    pub fn flat_map_value<W: Data, I: IntoIterator<Item = W>>(
        &self,
        step: &str,
        mapper: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> Stream<(K, W)> {
        let mapper = std::sync::Arc::new(mapper);
        self.unary(step, "flat_map_value", move |ctx, inp, out| {
            let mapper = mapper.clone();
            transform(
                ctx,
                inp,
                out,
                move |b: &mut Vec<(K, V)>, o: &mut Vec<(K, W)>| {
                    for (k, v) in b.drain(..) {
                        o.extend(mapper(v).into_iter().map(|w| (k.clone(), w)));
                    }
                },
            );
            Ok(())
        })
    }

    /// Maps each value and keeps the `Some` results with their keys.
    pub fn filter_map_value<W: Data>(
        &self,
        step: &str,
        mapper: impl Fn(V) -> Option<W> + Send + Sync + 'static,
    ) -> Stream<(K, W)> {
        let mapper = std::sync::Arc::new(mapper);
        self.unary(step, "filter_map_value", move |ctx, inp, out| {
            let mapper = mapper.clone();
            transform(
                ctx,
                inp,
                out,
                move |b: &mut Vec<(K, V)>, o: &mut Vec<(K, W)>| {
                    o.extend(b.drain(..).filter_map(|(k, v)| mapper(v).map(|w| (k, w))))
                },
            );
            Ok(())
        })
    }
}
