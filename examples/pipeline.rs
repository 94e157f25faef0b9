//! A three-stage pipeline over bounded channels, with an OS-thread producer
//! at the head: read lines (OS thread) -> parse (green threads) -> sum
//! (green thread). Back-pressure comes from the bounded channels.

use stackful::sync::channel;

/// Runs this example (the tour calls it too).
pub fn demo() {
    let (lines_tx, lines_rx) = channel::<String>(16);
    let (nums_tx, nums_rx) = channel::<u64>(16);
    // Stage 1: a plain OS thread, as a blocking reader would be.
    let reader = std::thread::spawn(move || {
        for i in 1..=1_000u64 {
            lines_tx
                .send(format!("record {i}"))
                .expect("the pipeline is running");
        }
        // Dropping `lines_tx` closes the stage for the parsers.
    });
    let total = stackful::run(move || {
        // Stage 2: four parsers share the input.
        let parsers: Vec<_> = (0..4)
            .map(|_| {
                let (rx, tx) = (lines_rx.clone(), nums_tx.clone());
                stackful::spawn(move || {
                    for line in rx.iter() {
                        let n: u64 = line["record ".len()..].parse().expect("a number");
                        tx.send(n * n).expect("the summer is running");
                    }
                })
            })
            .collect();
        drop((lines_rx, nums_tx)); // the stages own the remaining ends
        // Stage 3: one summer; it ends when every parser is done.
        let summer = stackful::spawn(move || nums_rx.iter().sum::<u64>());
        stackful::join_all(parsers);
        summer.join().expect("the summer finished")
    });
    reader.join().expect("the reader finished");
    println!("  sum of squares of 1..=1000: {total}");
    assert_eq!(total, (1..=1000u64).map(|n| n * n).sum());
}

#[allow(dead_code)]
fn main() {
    demo();
}
