//! `create`: create a generator, run it to completion and drop it.
//!
//! - stackful with the pool (the normal path);
//! - stackful's guard-paged stack mapped fresh each time (what the pool saves);
//! - raw corosensei on one reused stack (`with_stack` + `into_stack`), the floor;
//! - the pool when more stacks are live than the per-thread cache holds, so
//!   they go through the shared pool (one lock per batch, no system call).

mod common;

use std::hint::black_box;

use common::{Row, median_ns, print_table};
use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult};
use stackful::stack::{DEFAULT_STACK_SIZE, LOCAL_CAPACITY};
use stackful::{Generator, GeneratorState};
use stackful_arch::Stack;

const OPS: u64 = 200_000;
const FRESH_OPS: u64 = 5_000;

fn pooled_batch(live: usize, batches: u64) {
    let mut gens = Vec::with_capacity(live);
    for _ in 0..batches {
        // Completed generators keep their stacks until dropped.
        gens.extend((0..live).map(|i| {
            let mut g = Generator::new(move |_co: &stackful::Co<()>, ()| black_box(i));
            g.resume();
            g
        }));
        gens.clear();
    }
}

fn main() {
    let mut reused = Some(DefaultStack::new(DEFAULT_STACK_SIZE).unwrap());
    let mut rows = Vec::new();
    for _ in 0..2 {
        rows = vec![
            Row {
                name: "corosensei, reused stack",
                ns: median_ns(OPS, || {
                    for i in 0..OPS {
                        let stack = reused.take().unwrap();
                        let mut co = Coroutine::with_stack(
                            stack,
                            move |_: &corosensei::Yielder<(), ()>, ()| black_box(i),
                        );
                        let CoroutineResult::Return(v) = co.resume(()) else {
                            unreachable!()
                        };
                        black_box(v);
                        reused = Some(co.into_stack());
                    }
                }),
            },
            Row {
                name: "stackful, pooled stack",
                ns: median_ns(OPS, || {
                    for i in 0..OPS {
                        let mut g = Generator::new(move |_co: &stackful::Co<()>, ()| black_box(i));
                        let GeneratorState::Complete(v) = g.resume() else {
                            unreachable!()
                        };
                        black_box(v);
                    }
                }),
            },
            Row {
                name: "stackful stack mapped fresh each time",
                ns: median_ns(FRESH_OPS, || {
                    for i in 0..FRESH_OPS {
                        let stack = Stack::new(DEFAULT_STACK_SIZE).unwrap();
                        let mut co = Coroutine::with_stack(
                            stack,
                            move |_: &corosensei::Yielder<(), ()>, ()| black_box(i),
                        );
                        let CoroutineResult::Return(v) = co.resume(()) else {
                            unreachable!()
                        };
                        black_box(v);
                    }
                }),
            },
            Row {
                name: "stackful, pooled, closed while suspended (unwinds)",
                ns: median_ns(OPS / 20, || {
                    for i in 0..OPS / 20 {
                        let mut g = Generator::new(move |co, ()| co.yield_(black_box(i)));
                        g.resume();
                        drop(g);
                    }
                }),
            },
            Row {
                name: "corosensei, reused stack, dropped while suspended",
                ns: median_ns(OPS / 20, || {
                    for i in 0..OPS / 20 {
                        let stack = reused.take().unwrap();
                        let mut co = Coroutine::with_stack(
                            stack,
                            move |y: &corosensei::Yielder<(), usize>, ()| {
                                y.suspend(black_box(i as usize))
                            },
                        );
                        co.resume(());
                        co.force_unwind();
                        reused = Some(co.into_stack());
                    }
                }),
            },
            Row {
                name: "stackful, pooled, 8 live at once (warm cache)",
                ns: median_ns(OPS, || pooled_batch(8, OPS / 8)),
            },
            Row {
                name: "stackful, pooled, 256 live at once (via the shared pool)",
                ns: median_ns(OPS / 8, || pooled_batch(256, OPS / 8 / 256)),
            },
        ];
    }
    // The first batch fits the thread's cache; the second spills into the
    // shared pool.
    const { assert!(LOCAL_CAPACITY >= 8 && LOCAL_CAPACITY < 256) };
    print_table(
        "create: create + run to completion + drop",
        "corosensei, reused stack",
        &rows,
    );
}
