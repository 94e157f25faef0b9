//! `switch`: one resume + yield round trip, stackful beside raw corosensei.

mod common;

use std::hint::black_box;

use common::{Row, median_ns, print_table};
use corosensei::{Coroutine, CoroutineResult};
use stackful::Generator;

const OPS: u64 = 2_000_000;

fn main() {
    let mut generator = Generator::new(|co, ()| {
        let mut i = 0u64;
        loop {
            co.yield_(black_box(i));
            i += 1;
        }
    });
    let mut raw: Coroutine<(), u64, ()> = Coroutine::new(|yielder, ()| {
        let mut i = 0u64;
        loop {
            yielder.suspend(black_box(i));
            i += 1;
        }
    });
    let mut raw_send: Coroutine<u64, u64, ()> = Coroutine::new(|yielder, mut x: u64| {
        loop {
            x = yielder.suspend(black_box(x) + 1);
        }
    });
    let mut gen_send = Generator::new(|co, mut x: u64| {
        loop {
            x = co.yield_(black_box(x) + 1);
        }
    });
    // Interleave the cases so that noise hits them alike.
    let mut rows = Vec::new();
    for _ in 0..2 {
        rows = vec![
            Row {
                name: "corosensei resume+suspend",
                ns: median_ns(OPS, || {
                    for _ in 0..OPS {
                        let CoroutineResult::Yield(v) = raw.resume(()) else {
                            unreachable!()
                        };
                        black_box(v);
                    }
                }),
            },
            Row {
                name: "stackful resume+yield_",
                ns: median_ns(OPS, || {
                    for _ in 0..OPS {
                        black_box(generator.resume());
                    }
                }),
            },
            Row {
                name: "corosensei resume+suspend (u64 both ways)",
                ns: median_ns(OPS, || {
                    for i in 0..OPS {
                        black_box(raw_send.resume(black_box(i)));
                    }
                }),
            },
            Row {
                name: "stackful send+yield_ (u64 both ways)",
                ns: median_ns(OPS, || {
                    for i in 0..OPS {
                        black_box(gen_send.send(black_box(i)));
                    }
                }),
            },
        ];
    }
    print_table("switch: one round trip", "corosensei resume+suspend", &rows);
}
