//! The runtime workloads on stackful alone. `benches/compare` runs the same
//! ones beside tokio and may and reports ratios; this one needs no peers.

#[path = "cases/runtime.rs"]
mod cases;
mod common;

use common::{Row, median_ns_rounds, print_table};

fn main() {
    let rt = cases::runtime(2);
    let rows = vec![
        Row {
            name: "spawn_join: spawn + join, ns per task (100 000)",
            ns: median_ns_rounds(7, 100_000, || cases::spawn_join(&rt, 100_000)),
        },
        Row {
            name: "yield_many: ns per yield_now (1 000 x 1 000)",
            ns: median_ns_rounds(7, 1_000_000, || cases::yield_many(&rt, 1_000, 1_000)),
        },
        Row {
            name: "sleepers: ns of wall time per sleeper (25 000 x 10 ms)",
            ns: median_ns_rounds(5, 25_000, || cases::sleepers(&rt, 25_000, 10)),
        },
        Row {
            name: "blocking: ns per spawn_blocking round trip (10 000)",
            ns: median_ns_rounds(5, 10_000, || cases::blocking(&rt, 10_000)),
        },
        Row {
            name: "pingpong, pair on one worker: ns per round trip (100 000)",
            ns: median_ns_rounds(7, 100_000, || {
                cases::pingpong(&rt, 100_000, false);
            }),
        },
        Row {
            name: "pingpong, pair on two workers: ns per round trip (20 000)",
            ns: median_ns_rounds(5, 20_000, || {
                cases::pingpong(&rt, 20_000, true);
            }),
        },
        Row {
            name: "recv from a ready channel: ns per recv (1 000 000)",
            ns: median_ns_rounds(7, 1_000_000, || cases::ready_recv(&rt, 1_000_000, false)),
        },
        Row {
            name: "select! over 2 ready channels: ns per select (1 000 000), goal <= 1.5x recv",
            ns: median_ns_rounds(7, 1_000_000, || cases::ready_recv(&rt, 1_000_000, true)),
        },
        Row {
            name: "select! over 8 ready channels: ns per select (1 000 000)",
            ns: median_ns_rounds(7, 1_000_000, || cases::ready_select8(&rt, 1_000_000)),
        },
        Row {
            name: "plain rendezvous, pair spawned by its peer: ns per message (100 000)",
            ns: median_ns_rounds(7, 100_000, || cases::rendezvous(&rt, 100_000, false)),
        },
        Row {
            name: "select-to-select rendezvous, pair spawned by its peer: ns per message (100 000), goal <= 2x",
            ns: median_ns_rounds(7, 100_000, || cases::rendezvous(&rt, 100_000, true)),
        },
        Row {
            name: "throughput 1/1, bounded(1024): ns per message (1 000 000)",
            ns: median_ns_rounds(5, 1_000_000, || cases::throughput(&rt, 1, 1, 1_000_000)),
        },
        Row {
            name: "throughput 4/4, bounded(1024): ns per message (1 000 000)",
            ns: median_ns_rounds(5, 1_000_000, || cases::throughput(&rt, 4, 4, 1_000_000)),
        },
        Row {
            name: "mutex, 100 x 10 000 increments: ns per increment",
            ns: median_ns_rounds(5, 1_000_000, || cases::mutex(&rt, 100, 10_000)),
        },
        Row {
            name: "task_local! with: ns per Cell increment (10 000 000)",
            ns: median_ns_rounds(7, 10_000_000, || {
                std::hint::black_box(cases::local_with(&rt, 10_000_000, true));
            }),
        },
        Row {
            name: "thread_local! with, for scale: ns per Cell increment (10 000 000)",
            ns: median_ns_rounds(7, 10_000_000, || {
                std::hint::black_box(cases::local_with(&rt, 10_000_000, false));
            }),
        },
    ];
    print_table(
        "runtime (2 workers)",
        "spawn_join: spawn + join, ns per task (100 000)",
        &rows,
    );
}
