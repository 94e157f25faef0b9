//! Channels and `select!` beside crossbeam-channel (on OS threads, where it
//! lives) and tokio (`mpsc` and `tokio::select!`, in a task), each in the
//! same shape: one thread or task loops over channels that always hold a
//! message, refilling the one it took; and a rendezvous between two
//! threads, plain and select against select. tokio has no rendezvous
//! channel, so those lines have no tokio figure.

use std::hint::black_box;

use super::{WORKERS, fmt, ratio, side_by_side, stackful_cases};

const READY: u64 = 1_000_000;
const RDV: u64 = 100_000;

mod crossbeam_cases {
    use super::*;
    use crossbeam_channel::{bounded, select, unbounded};

    pub fn ready_recv(n: u64, select: bool) {
        let (tx1, rx1) = unbounded::<u64>();
        let (tx2, rx2) = unbounded::<u64>();
        tx1.send(0).unwrap();
        tx2.send(0).unwrap();
        for i in 0..n {
            if select {
                select! {
                    recv(rx1) -> v => { black_box(v.unwrap()); tx1.send(i).unwrap(); }
                    recv(rx2) -> v => { black_box(v.unwrap()); tx2.send(i).unwrap(); }
                }
            } else {
                black_box(rx1.recv().unwrap());
                tx1.send(i).unwrap();
            }
        }
    }

    pub fn ready_select8(n: u64) {
        let chans: Vec<_> = (0..8)
            .map(|_| {
                let (tx, rx) = unbounded::<u64>();
                tx.send(0).unwrap();
                (tx, rx)
            })
            .collect();
        let [a, b, c, d, e, f, g, h] = &chans[..] else {
            unreachable!()
        };
        for i in 0..n {
            select! {
                recv(a.1) -> v => { black_box(v.unwrap()); a.0.send(i).unwrap(); }
                recv(b.1) -> v => { black_box(v.unwrap()); b.0.send(i).unwrap(); }
                recv(c.1) -> v => { black_box(v.unwrap()); c.0.send(i).unwrap(); }
                recv(d.1) -> v => { black_box(v.unwrap()); d.0.send(i).unwrap(); }
                recv(e.1) -> v => { black_box(v.unwrap()); e.0.send(i).unwrap(); }
                recv(f.1) -> v => { black_box(v.unwrap()); f.0.send(i).unwrap(); }
                recv(g.1) -> v => { black_box(v.unwrap()); g.0.send(i).unwrap(); }
                recv(h.1) -> v => { black_box(v.unwrap()); h.0.send(i).unwrap(); }
            }
        }
    }

    pub fn rendezvous(n: u64, select: bool) {
        let (tx, rx) = bounded::<u64>(0);
        // As stackful's: with `select`, both sides also wait on an empty
        // `quit` channel.
        let (quit_tx, quit_rx) = bounded::<()>(0);
        let quit = quit_rx.clone();
        let receiver = std::thread::spawn(move || {
            let mut sum = 0u64;
            loop {
                let v = if select {
                    select! {
                        recv(rx) -> v => v.ok(),
                        recv(quit) -> _ => None,
                    }
                } else {
                    rx.recv().ok()
                };
                match v {
                    Some(v) => sum += v,
                    None => return sum,
                }
            }
        });
        for i in 0..n {
            if select {
                select! {
                    send(tx, i) -> r => r.unwrap(),
                    recv(quit_rx) -> _ => unreachable!("nobody sends on quit"),
                }
            } else {
                tx.send(i).unwrap();
            }
        }
        drop(tx);
        black_box(receiver.join().unwrap());
        drop(quit_tx);
    }
}

mod tokio_cases {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    pub fn ready_recv(rt: &tokio::runtime::Runtime, n: u64, select: bool) {
        rt.block_on(async {
            tokio::spawn(async move {
                let (tx1, mut rx1) = unbounded_channel::<u64>();
                let (tx2, mut rx2) = unbounded_channel::<u64>();
                tx1.send(0).unwrap();
                tx2.send(0).unwrap();
                for i in 0..n {
                    if select {
                        tokio::select! {
                            Some(v) = rx1.recv() => { black_box(v); tx1.send(i).unwrap(); }
                            Some(v) = rx2.recv() => { black_box(v); tx2.send(i).unwrap(); }
                        }
                    } else {
                        black_box(rx1.recv().await.unwrap());
                        tx1.send(i).unwrap();
                    }
                }
            })
            .await
            .unwrap();
        });
    }

    pub fn ready_select8(rt: &tokio::runtime::Runtime, n: u64) {
        rt.block_on(async {
            tokio::spawn(async move {
                let mut txs = Vec::new();
                let mut rxs = Vec::new();
                for _ in 0..8 {
                    let (tx, rx) = unbounded_channel::<u64>();
                    tx.send(0).unwrap();
                    txs.push(tx);
                    rxs.push(rx);
                }
                let [a, b, c, d, e, f, g, h] = &mut rxs[..] else {
                    unreachable!()
                };
                for i in 0..n {
                    tokio::select! {
                        Some(v) = a.recv() => { black_box(v); txs[0].send(i).unwrap(); }
                        Some(v) = b.recv() => { black_box(v); txs[1].send(i).unwrap(); }
                        Some(v) = c.recv() => { black_box(v); txs[2].send(i).unwrap(); }
                        Some(v) = d.recv() => { black_box(v); txs[3].send(i).unwrap(); }
                        Some(v) = e.recv() => { black_box(v); txs[4].send(i).unwrap(); }
                        Some(v) = f.recv() => { black_box(v); txs[5].send(i).unwrap(); }
                        Some(v) = g.recv() => { black_box(v); txs[6].send(i).unwrap(); }
                        Some(v) = h.recv() => { black_box(v); txs[7].send(i).unwrap(); }
                    }
                }
            })
            .await
            .unwrap();
        });
    }
}

struct Line {
    case: &'static str,
    stackful: Option<f64>,
    crossbeam: Option<f64>,
    tokio: Option<f64>,
}

/// Prints the select table (the lines whose case contains `only`, if given).
pub fn table(only: Option<&str>) {
    let srt = stackful_cases::runtime(WORKERS);
    let trt = super::tokio_cases::runtime();
    let mut lines = Vec::new();
    let mut line = |case: &'static str, rounds, ops, runs: &mut [&mut dyn FnMut()]| {
        if only.is_none_or(|o| case.contains(o)) {
            let m = side_by_side(rounds, ops, runs);
            lines.push(Line {
                case,
                stackful: m.first().copied(),
                crossbeam: m.get(1).copied(),
                tokio: m.get(2).copied(),
            });
        }
    };
    line(
        "recv from a ready channel (1 000 000)",
        7,
        READY,
        &mut [
            &mut || stackful_cases::ready_recv(&srt, READY, false),
            &mut || crossbeam_cases::ready_recv(READY, false),
            &mut || tokio_cases::ready_recv(&trt, READY, false),
        ],
    );
    line(
        "select! over 2 ready channels (1 000 000)",
        7,
        READY,
        &mut [
            &mut || stackful_cases::ready_recv(&srt, READY, true),
            &mut || crossbeam_cases::ready_recv(READY, true),
            &mut || tokio_cases::ready_recv(&trt, READY, true),
        ],
    );
    line(
        "select! over 8 ready channels (1 000 000)",
        7,
        READY,
        &mut [
            &mut || stackful_cases::ready_select8(&srt, READY),
            &mut || crossbeam_cases::ready_select8(READY),
            &mut || tokio_cases::ready_select8(&trt, READY),
        ],
    );
    line(
        "plain rendezvous, two threads (100 000)",
        7,
        RDV,
        &mut [
            &mut || stackful_cases::rendezvous(&srt, RDV, false),
            &mut || crossbeam_cases::rendezvous(RDV, false),
        ],
    );
    line(
        "select-to-select rendezvous, two threads (100 000)",
        7,
        RDV,
        &mut [
            &mut || stackful_cases::rendezvous(&srt, RDV, true),
            &mut || crossbeam_cases::rendezvous(RDV, true),
        ],
    );
    if lines.is_empty() {
        return;
    }
    println!(
        "\nchannels and select: stackful (green threads, {WORKERS} workers) vs crossbeam-channel \
         (OS threads) vs tokio (tasks, {WORKERS} workers); ns per operation, medians"
    );
    println!("| case | stackful | crossbeam | tokio | stackful/crossbeam | stackful/tokio |");
    println!("|---|---:|---:|---:|---:|---:|");
    for l in &lines {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            l.case,
            fmt(l.stackful),
            fmt(l.crossbeam),
            fmt(l.tokio),
            ratio(l.stackful, l.crossbeam),
            ratio(l.stackful, l.tokio)
        );
    }
}
