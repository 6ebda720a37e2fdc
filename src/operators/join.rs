//! Joins: [`Stream::join`] and [`Stream::join_complete`] over any number of keyed
//! streams, and the side types that `join_window` shares with them.
//!
//! Bytewax joins any number of streams (`op.join("j", a, b, c, d)`) and emits a
//! Python tuple with one slot per side. Rust keeps the sides' types apart, so the
//! other streams are given either as one stream, as a tuple of up to five streams
//! (a join of up to six sides, with their own value types) or as a slice of streams of
//! the receiver's value type (any number). The result is flat, one slot per side in
//! the order given: `(Option<A>, Option<B>, ...)` for tuples, `Vec<Option<V>>` for a
//! slice, with `None` where a side has no value (Bytewax's `None`). Tuples were chosen
//! as the main form because each side keeps its own type (no enum to wrap values in
//! and no `unwrap` to get them out); the slice form is for a number of sides only known
//! at run time. In `Complete` mode every slot is present, so
//! [`join_complete`](Stream::join_complete) gives the values without `Option`s.
//!
//! Every join is one `KeyedLogic` on the keyed engine: the sides' values are tagged
//! with their side ([`JoinSide`], [`JoinSide3`], ... or `(index, value)`), merged, and
//! routed by key to one per-key state holding each side's values.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::dataflow::{Key, Stream};
use crate::operators::keyed::KeyedLogic;
use crate::operators::stateful::Retention;
use crate::recovery::encode_into;
use crate::runtime::push::{Data, ExchangeData};

/// How [`Stream::join`] stores the values of each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinInsert {
    /// Keep the first value per side.
    First,
    /// Keep the latest value per side (Bytewax's default).
    #[default]
    Last,
    /// Keep every value per side; emissions are the cross product.
    Product,
}

/// When [`Stream::join`] emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinEmit {
    /// Once every side has a value; then the key's state is cleared (Bytewax's default).
    #[default]
    Complete,
    /// On every value, with `None` for sides that have none yet.
    Running,
    /// At end of stream, with `None` for sides that never had a value.
    Final,
}

/// What a 2-sided join emits per key: the left and right values, `None` for a side
/// without one.
pub type Joined<A, B> = (Option<A>, Option<B>);

/// A value on its way into a 2-sided join: from the left stream (the receiver) or the
/// right one. A [`join_window`](Stream::join_window)'s clock reads timestamps from it,
/// and late items carry it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum JoinSide<A, B> {
    /// A value of the left stream.
    Left(A),
    /// A value of the right stream.
    Right(B),
}

pub(crate) fn insert_side<X>(insert: JoinInsert, side: &mut Vec<X>, value: X) {
    match insert {
        JoinInsert::First if !side.is_empty() => {}
        JoinInsert::First | JoinInsert::Product => side.push(value),
        JoinInsert::Last => {
            side.clear();
            side.push(value);
        }
    }
}

/// `into`'s side after merging in `original`'s (two session windows): the older window
/// (`into`) wins with `First`, the newer with `Last`, and `Product` keeps both.
pub(crate) fn merge_side<X>(insert: JoinInsert, into: &mut Vec<X>, mut original: Vec<X>) {
    match insert {
        JoinInsert::First if into.is_empty() => *into = original,
        JoinInsert::First => {}
        JoinInsert::Last if !original.is_empty() => *into = original,
        JoinInsert::Last => {}
        JoinInsert::Product => into.append(&mut original),
    }
}

/// Calls `each` with every combination of one index per side (`lens[i]` values on
/// side `i`, an empty side counting as one `None` slot), the last side varying
/// fastest: the order of Python's `itertools.product`, which Bytewax uses.
fn odometer(lens: &[usize], mut each: impl FnMut(&[usize])) {
    let n: Vec<usize> = lens.iter().map(|&l| l.max(1)).collect();
    let mut idx = vec![0usize; n.len()];
    loop {
        each(&idx);
        let mut d = n.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < n[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// The sides of a join as one type: how a value is tagged with its side, what a key's
/// state holds, and the rows a join emits. Implemented for the forms
/// [`JoinWith`] accepts; users do not implement it.
pub trait JoinSides: Send + Sync + 'static {
    /// A value tagged with its side, as it travels to the key's worker.
    type Value: ExchangeData;
    /// A key's values, per side (saved in snapshots).
    type State: Send + Serialize + DeserializeOwned + 'static;
    /// One emission: a slot per side, `None` for a side without a value.
    type Row: Data;
    /// One emission of a complete join: every side's value.
    type Complete: Data;
    /// A state with no values.
    fn empty(&self) -> Self::State;
    /// Stores `value` on its side.
    fn insert(&self, state: &mut Self::State, value: Self::Value, insert: JoinInsert);
    /// Moves `original`'s values into `into` (session windows merging).
    fn merge(&self, into: &mut Self::State, original: Self::State, insert: JoinInsert);
    /// Every side has a value.
    fn is_complete(&self, state: &Self::State) -> bool;
    /// No side has a value.
    fn is_empty(&self, state: &Self::State) -> bool;
    /// Drops every value.
    fn clear(&self, state: &mut Self::State);
    /// Appends the cross product of the sides' values.
    fn product(&self, state: &Self::State, emit: &mut Vec<Self::Row>);
    /// A row of a complete state without its `Option`s (`None` if a slot is empty).
    fn complete(row: Self::Row) -> Option<Self::Complete>;
}

/// The sides of a join and the stream of their tagged values, merged.
pub type Tagged<K, S> = (S, Stream<(K, <S as JoinSides>::Value)>);

/// The other streams of a join: one stream, a tuple of streams, or a slice of streams
/// of the receiver's value type. See the [module docs](self).
pub trait JoinWith<K: Key, V: ExchangeData> {
    /// The sides of the join, the receiver's first.
    type Sides: JoinSides;
    /// Tags every side's values inside the composite scope of `inner` (the receiver,
    /// already in it) and merges them.
    fn tag_and_merge(&self, step: &str, inner: &Stream<(K, V)>) -> Tagged<K, Self::Sides>;
}

/// The typed sides of a tuple join (`A` the receiver's values).
#[derive(Debug)]
pub struct Sides<T>(PhantomData<fn() -> T>);

impl<T> Default for Sides<T> {
    fn default() -> Self {
        Sides(PhantomData)
    }
}

fn check_flow<A: Data, B: Data>(step: &str, a: &Stream<A>, b: &Stream<B>) {
    assert!(
        a.same_flow(b),
        "join step {step:?}: every stream must belong to the same Dataflow"
    );
}

macro_rules! join_sides {
    (
        $(#[$doc:meta])*
        $Side:ident { $($var:ident),+ };
        $V:ident $vvar:ident $vname:literal;
        $($T:ident $i:tt $si:tt $tvar:ident $tname:literal),+
    ) => {
        $(#[$doc])*
        impl<$V: ExchangeData, $($T: ExchangeData),+> JoinSides for Sides<($V, $($T),+)> {
            type Value = $Side<$V, $($T),+>;
            type State = (Vec<$V>, $(Vec<$T>),+);
            type Row = (Option<$V>, $(Option<$T>),+);
            type Complete = ($V, $($T),+);

            fn empty(&self) -> Self::State {
                (Vec::new(), $(Vec::<$T>::new()),+)
            }
            fn insert(&self, state: &mut Self::State, value: Self::Value, insert: JoinInsert) {
                match value {
                    $Side::$vvar(v) => insert_side(insert, &mut state.0, v),
                    $($Side::$tvar(v) => insert_side(insert, &mut state.$si, v)),+
                }
            }
            fn merge(&self, into: &mut Self::State, original: Self::State, insert: JoinInsert) {
                merge_side(insert, &mut into.0, original.0);
                $(merge_side(insert, &mut into.$si, original.$si);)+
            }
            fn is_complete(&self, s: &Self::State) -> bool {
                !s.0.is_empty() $(&& !s.$si.is_empty())+
            }
            fn is_empty(&self, s: &Self::State) -> bool {
                s.0.is_empty() $(&& s.$si.is_empty())+
            }
            fn clear(&self, s: &mut Self::State) {
                s.0.clear();
                $(s.$si.clear();)+
            }
            fn product(&self, s: &Self::State, emit: &mut Vec<Self::Row>) {
                odometer(&[s.0.len(), $(s.$si.len()),+], |idx| {
                    emit.push((s.0.get(idx[0]).cloned(), $(s.$si.get(idx[$si]).cloned()),+))
                });
            }
            fn complete(row: Self::Row) -> Option<Self::Complete> {
                Some((row.0?, $(row.$si?),+))
            }
        }

        impl<'a, K: Key, $V: ExchangeData, $($T: ExchangeData),+> JoinWith<K, $V>
            for ($(&'a Stream<(K, $T)>,)+)
        {
            type Sides = Sides<($V, $($T),+)>;
            fn tag_and_merge(
                &self,
                step: &str,
                inner: &Stream<(K, $V)>,
            ) -> Tagged<K, Self::Sides> {
                let first = inner.map_value($vname, |v| $Side::$vvar(v));
                let rest = [$({
                    check_flow(step, inner, self.$i);
                    self.$i.rescope(inner).map_value($tname, |v| $Side::$tvar(v))
                }),+];
                (Sides::default(), first.merge("merge", &rest))
            }
        }
    };
}

join_sides!(JoinSide { Left, Right }; A Left "left"; B 0 1 Right "right");

/// A stream given alone is a 2-sided join (`(Option<V>, Option<W>)`).
impl<K: Key, V: ExchangeData, W: ExchangeData> JoinWith<K, V> for &Stream<(K, W)> {
    type Sides = Sides<(V, W)>;
    fn tag_and_merge(
        &self,
        step: &str,
        inner: &Stream<(K, V)>,
    ) -> (Self::Sides, Stream<(K, JoinSide<V, W>)>) {
        (*self,).tag_and_merge(step, inner)
    }
}

macro_rules! side_enum {
    ($(#[$doc:meta])* $Side:ident { $($T:ident $doc_t:literal),+ }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $Side<$($T),+> {
            $(#[doc = $doc_t] $T($T)),+
        }
    };
}

side_enum!(
    /// A value on its way into a 3-sided join; variant `A` is the receiver's.
    JoinSide3 { A "A value of the receiver.", B "A value of the 2nd stream.", C "A value of the 3rd stream." }
);
side_enum!(
    /// A value on its way into a 4-sided join; variant `A` is the receiver's.
    JoinSide4 {
        A "A value of the receiver.", B "A value of the 2nd stream.",
        C "A value of the 3rd stream.", D "A value of the 4th stream."
    }
);
side_enum!(
    /// A value on its way into a 5-sided join; variant `A` is the receiver's.
    JoinSide5 {
        A "A value of the receiver.", B "A value of the 2nd stream.",
        C "A value of the 3rd stream.", D "A value of the 4th stream.",
        E "A value of the 5th stream."
    }
);
side_enum!(
    /// A value on its way into a 6-sided join; variant `A` is the receiver's.
    JoinSide6 {
        A "A value of the receiver.", B "A value of the 2nd stream.",
        C "A value of the 3rd stream.", D "A value of the 4th stream.",
        E "A value of the 5th stream.", F "A value of the 6th stream."
    }
);

join_sides!(JoinSide3 { A, B, C }; A A "side0";
    B 0 1 B "side1", C 1 2 C "side2");
join_sides!(JoinSide4 { A, B, C, D }; A A "side0";
    B 0 1 B "side1", C 1 2 C "side2", D 2 3 D "side3");
join_sides!(JoinSide5 { A, B, C, D, E }; A A "side0";
    B 0 1 B "side1", C 1 2 C "side2", D 2 3 D "side3", E 3 4 E "side4");
join_sides!(JoinSide6 { A, B, C, D, E, F }; A A "side0";
    B 0 1 B "side1", C 1 2 C "side2", D 2 3 D "side3", E 3 4 E "side4", F 4 5 F "side5");

/// The sides of a slice join: `n` sides of one value type `V`.
#[derive(Debug)]
pub struct ManySides<V> {
    n: usize,
    _v: PhantomData<fn() -> V>,
}

impl<V: ExchangeData> JoinSides for ManySides<V> {
    /// `(side index, value)`, the receiver being side 0.
    type Value = (u32, V);
    type State = Vec<Vec<V>>;
    type Row = Vec<Option<V>>;
    type Complete = Vec<V>;

    fn empty(&self) -> Vec<Vec<V>> {
        (0..self.n).map(|_| Vec::new()).collect()
    }
    fn insert(&self, state: &mut Vec<Vec<V>>, (side, v): (u32, V), insert: JoinInsert) {
        insert_side(insert, &mut state[side as usize], v)
    }
    fn merge(&self, into: &mut Vec<Vec<V>>, original: Vec<Vec<V>>, insert: JoinInsert) {
        for (i, o) in into.iter_mut().zip(original) {
            merge_side(insert, i, o);
        }
    }
    fn is_complete(&self, s: &Vec<Vec<V>>) -> bool {
        s.iter().all(|v| !v.is_empty())
    }
    fn is_empty(&self, s: &Vec<Vec<V>>) -> bool {
        s.iter().all(Vec::is_empty)
    }
    fn clear(&self, s: &mut Vec<Vec<V>>) {
        s.iter_mut().for_each(Vec::clear);
    }
    fn product(&self, s: &Vec<Vec<V>>, emit: &mut Vec<Vec<Option<V>>>) {
        let lens: Vec<usize> = s.iter().map(Vec::len).collect();
        odometer(&lens, |idx| {
            emit.push(s.iter().zip(idx).map(|(v, &i)| v.get(i).cloned()).collect())
        });
    }
    fn complete(row: Vec<Option<V>>) -> Option<Vec<V>> {
        row.into_iter().collect()
    }
}

/// Streams of the receiver's value type: a join of `1 + len` sides, emitting
/// `Vec<Option<V>>` in the slice's order after the receiver's.
impl<K: Key, V: ExchangeData> JoinWith<K, V> for &[&Stream<(K, V)>] {
    type Sides = ManySides<V>;
    fn tag_and_merge(
        &self,
        step: &str,
        inner: &Stream<(K, V)>,
    ) -> (ManySides<V>, Stream<(K, (u32, V))>) {
        let first = inner.map_value("side0", |v| (0u32, v));
        let rest: Vec<_> = self
            .iter()
            .enumerate()
            .map(|(i, s)| {
                check_flow(step, inner, *s);
                let side = u32::try_from(i + 1).expect("fewer than 2^32 join sides");
                s.rescope(inner)
                    .map_value(&format!("side{}", i + 1), move |v| (side, v))
            })
            .collect();
        let sides = ManySides {
            n: 1 + self.len(),
            _v: PhantomData,
        };
        (sides, first.merge("merge", &rest))
    }
}

impl<K: Key, V: ExchangeData, const N: usize> JoinWith<K, V> for &[&Stream<(K, V)>; N] {
    type Sides = ManySides<V>;
    fn tag_and_merge(
        &self,
        step: &str,
        inner: &Stream<(K, V)>,
    ) -> (ManySides<V>, Stream<(K, (u32, V))>) {
        (&self[..]).tag_and_merge(step, inner)
    }
}

/// The keyed logic of [`Stream::join`].
pub(crate) struct JoinLogic<S> {
    pub(crate) sides: S,
    pub(crate) insert: JoinInsert,
    pub(crate) emit: JoinEmit,
}

impl<S: JoinSides> KeyedLogic<S::Value> for JoinLogic<S> {
    type State = S::State;
    type Out = S::Row;
    const TIMERS: bool = false;

    fn build(&self) -> S::State {
        self.sides.empty()
    }
    fn encode(&self, state: &S::State, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(state, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<S::State, String> {
        crate::recovery::decode(bytes)
    }
    fn on_item(&self, state: &mut S::State, value: S::Value, emit: &mut Vec<S::Row>) -> Retention {
        self.sides.insert(state, value, self.insert);
        match self.emit {
            JoinEmit::Complete if self.sides.is_complete(state) => {
                self.sides.product(state, emit);
                Retention::Discard
            }
            JoinEmit::Running => {
                self.sides.product(state, emit);
                Retention::Retain
            }
            _ => Retention::Retain,
        }
    }
    fn on_eof(&self, state: &mut S::State, emit: &mut Vec<S::Row>) -> Retention {
        if self.emit == JoinEmit::Final {
            self.sides.product(state, emit);
        }
        Retention::Discard
    }
}

impl<K: Key, V: ExchangeData> Stream<(K, V)> {
    /// Joins this keyed stream with `others` on the key: one other stream, a tuple of
    /// up to five, or a slice of streams of this stream's value type (any number; see
    /// the [module docs](crate::operators::join)). `insert` says which values each side
    /// keeps, `emit` when to emit; each emission is `(key, row)`, a row holding one
    /// slot per side, this stream's first, `None` for a side without a value:
    /// `(Option<V>, Option<W>)` for one other stream, `(Option<V>, Option<B>,
    /// Option<C>)` for a pair, `Vec<Option<V>>` for a slice. A composite step:
    /// `step.left` and `step.right` (two sides) or `step.side0`, `step.side1`, ...
    /// tag the values, `step.merge` merges them, `step.join` is the keyed join.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// use waxfast::operators::{JoinEmit, JoinInsert};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// // Values are exchanged between workers, so they are owned (`ExchangeData`).
    /// let names = flow.input("names", TestingSource::new(vec![(1, "alice".to_string())]));
    /// let emails = flow.input("emails", TestingSource::new(vec![(1, "a@x.io".to_string())]));
    /// let ages = flow.input("ages", TestingSource::new(vec![(1, 42u8), (2, 7)]));
    /// names.join("j", (&emails, &ages), JoinInsert::Last, JoinEmit::Final).output("out", sink);
    /// run_main(&flow).unwrap();
    /// let (name, email) = ("alice".to_string(), "a@x.io".to_string());
    /// assert_eq!(
    ///     out.take(),
    ///     vec![(1, (Some(name), Some(email), Some(42))), (2, (None, None, Some(7)))]
    /// );
    /// ```
    pub fn join<O: JoinWith<K, V>>(
        &self,
        step: &str,
        others: O,
        insert: JoinInsert,
        emit: JoinEmit,
    ) -> Stream<(K, <O::Sides as JoinSides>::Row)> {
        self.join_in_scope(step, others, insert, emit).rescope(self)
    }

    /// The steps `join` and `join_complete` share: the composite's scope, the sides
    /// tagged and merged, and the keyed join; its output is still inside the scope.
    fn join_in_scope<O: JoinWith<K, V>>(
        &self,
        step: &str,
        others: O,
        insert: JoinInsert,
        emit: JoinEmit,
    ) -> Stream<(K, <O::Sides as JoinSides>::Row)> {
        let inner = self.enter_as(step, "join");
        let (sides, merged) = others.tag_and_merge(step, &inner);
        merged.keyed(
            "join",
            "join",
            JoinLogic {
                sides,
                insert,
                emit,
            },
        )
    }

    /// [`join`](Self::join) in `Complete` mode (Bytewax's default), each emission
    /// holding every side's value without `Option`s: `(key, (v, w))` for one other
    /// stream, `(key, (v, b, c))` for a pair, `(key, Vec<V>)` for a slice. A composite
    /// step: the steps of `join`, then `step.complete`.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// use waxfast::operators::JoinInsert;
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let a = flow.input("a", TestingSource::new(vec![("k", 1), ("j", 5)]));
    /// let b = flow.input("b", TestingSource::new(vec![("k", 2)]));
    /// let c = flow.input("c", TestingSource::new(vec![("k", 3)]));
    /// let d = flow.input("d", TestingSource::new(vec![("k", 4)]));
    /// a.join_complete("j", &[&b, &c, &d], JoinInsert::Last).output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", vec![1, 2, 3, 4])]);
    /// ```
    pub fn join_complete<O: JoinWith<K, V>>(
        &self,
        step: &str,
        others: O,
        insert: JoinInsert,
    ) -> Stream<(K, <O::Sides as JoinSides>::Complete)> {
        self.join_in_scope(step, others, insert, JoinEmit::Complete)
            .filter_map_value("complete", <O::Sides as JoinSides>::complete)
            .rescope(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odometer_is_itertools_product_order() {
        let mut got = Vec::new();
        odometer(&[2, 0, 3], |i| got.push(i.to_vec()));
        let want: Vec<Vec<usize>> = (0..2)
            .flat_map(|a| (0..3).map(move |c| vec![a, 0, c]))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn product_of_three_sides_puts_none_for_an_empty_side() {
        let sides = Sides::<(u8, char, i32)>::default();
        let mut s = sides.empty();
        sides.insert(&mut s, JoinSide3::A(1), JoinInsert::Product);
        sides.insert(&mut s, JoinSide3::A(2), JoinInsert::Product);
        sides.insert(&mut s, JoinSide3::C(9), JoinInsert::Product);
        assert!(!sides.is_complete(&s));
        let mut rows = Vec::new();
        sides.product(&s, &mut rows);
        assert_eq!(
            rows,
            vec![(Some(1), None, Some(9)), (Some(2), None, Some(9))]
        );
        assert_eq!(Sides::<(u8, char, i32)>::complete(rows[0]), None);
        assert_eq!(
            Sides::<(u8, char, i32)>::complete((Some(1), Some('x'), Some(3))),
            Some((1, 'x', 3))
        );
    }
}
