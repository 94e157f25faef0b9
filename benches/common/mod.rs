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
pub fn median_ns(ops: u64, op: impl FnMut()) -> f64 {
    median_ns_rounds(ROUNDS, ops, op)
}

/// As [`median_ns`] with a given number of rounds, for heavy cases.
pub fn median_ns_rounds(rounds: usize, ops: u64, mut op: impl FnMut()) -> f64 {
    op();
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed().as_nanos() as f64 / ops as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[rounds / 2]
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
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
