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
    ];
    print_table(
        "runtime (2 workers)",
        "spawn_join: spawn + join, ns per task (100 000)",
        &rows,
    );
}
