//! A port of Bytewax's `examples/join.py`: four keyed streams joined in one step.
//!
//! ```sh
//! cargo run --example join    # ('123', ('Bumble', 'bee@bytewax.com', 'yellow', 'buzz'))
//! ```
//!
//! Bytewax's output is `tests/bytewax_outputs/join_w1.txt`; `tests/bytewax_parity.rs`
//! runs this program and compares.

use waxfast::connectors::{stdio::StdOutSink, testing::TestingSource};
use waxfast::operators::JoinInsert;
use waxfast::{run_main, Dataflow};

/// `{"user_id": 123, "name": "Bumble"}`.
#[derive(Clone)]
struct Name {
    user_id: u32,
    name: String,
}

/// `{"user_id": 123, "email": "bee@bytewax.com"}`.
#[derive(Clone)]
struct Email {
    user_id: u32,
    email: String,
}

/// `{"user_id": 123, "color": "yellow", "sound": "buzz"}`.
#[derive(Clone)]
struct Bee {
    user_id: u32,
    color: String,
    sound: String,
}

fn main() -> Result<(), waxfast::Error> {
    let s = String::from;
    let flow = Dataflow::new("join");
    let inp1 = flow.input(
        "inp1",
        TestingSource::new(vec![Name {
            user_id: 123,
            name: s("Bumble"),
        }]),
    );
    let name = inp1
        .key_on("k1", |x| x.user_id.to_string())
        .map_value("name", |x| x.name);
    let inp2 = flow.input(
        "inp2",
        TestingSource::new(vec![Email {
            user_id: 123,
            email: s("bee@bytewax.com"),
        }]),
    );
    let email = inp2
        .key_on("k2", |x| x.user_id.to_string())
        .map_value("email", |x| x.email);
    let inp3 = flow.input(
        "inp3",
        TestingSource::new(vec![Bee {
            user_id: 123,
            color: s("yellow"),
            sound: s("buzz"),
        }]),
    );
    let k_inp3 = inp3.key_on("k3", |x| x.user_id.to_string());
    let color = k_inp3.map_value("color", |x| x.color);
    let sound = k_inp3.map_value("sound", |x| x.sound);

    // Bytewax's `op.join("j1", name, email, color, sound)`: its default emit mode is
    // `complete`, whose rows `join_complete` gives without `Option`s.
    let joined = name.join_complete("j1", (&email, &color, &sound), JoinInsert::Last);
    joined.output("out", StdOutSink::repr());
    run_main(&flow)
}
