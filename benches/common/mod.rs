//! A small timing harness shared by the benchmarks: run a case in rounds,
//! report the median time per operation, and print ratios against a baseline.
//! The machines are shared and noisy, so medians over many rounds, never a
//! single run, and ratios within one run rather than absolute times.

#![allow(dead_code)]

use std::time::Instant;

/// Rounds per case; the median is reported.
pub const ROUNDS: usize = 21;

/// Median nanoseconds per operation of `op`, which performs `ops` operations
/// per call. One untimed warm-up round comes first.
pub fn median_ns(ops: u64, mut op: impl FnMut()) -> f64 {
    op();
    let mut samples: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed().as_nanos() as f64 / ops as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[ROUNDS / 2]
}

/// One row of a result table.
pub struct Row {
    pub name: &'static str,
    pub ns: f64,
}

/// Prints rows with their ratio to the row named `baseline`.
pub fn print_table(title: &str, baseline: &str, rows: &[Row]) {
    let base = rows
        .iter()
        .find(|r| r.name == baseline)
        .map_or(1.0, |r| r.ns);
    println!("\n{title} (median of {ROUNDS} rounds; ratio to `{baseline}`)");
    println!("| case | ns/op | ratio |");
    println!("|---|---:|---:|");
    for r in rows {
        println!("| {} | {:.1} | {:.2}x |", r.name, r.ns, r.ns / base);
    }
}
