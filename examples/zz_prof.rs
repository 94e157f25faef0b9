//! Local profiling driver (not committed).
#[path = "../benches/cases/runtime.rs"]
mod cases;
fn t(name: &str, n: u64, f: impl Fn()) {
    let mut v: Vec<f64> = (0..7)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{name}: median {:.1} ns (min {:.1})", v[3], v[0]);
}
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let rt = cases::runtime(2);
    if which.is_empty() || which == "sel" {
        t("recv", 1_000_000, || {
            cases::ready_recv(&rt, 1_000_000, false)
        });
        t("select2", 1_000_000, || {
            cases::ready_recv(&rt, 1_000_000, true)
        });
        t("rdv", 100_000, || cases::rendezvous(&rt, 100_000, false));
        t("rdv-select", 100_000, || {
            cases::rendezvous(&rt, 100_000, true)
        });
    }
    if which == "pp" {
        cases::pingpong(&rt, 50_000, false);
    }
    if which == "ppt" {
        t("pingpong", 100_000, || {
            cases::pingpong(&rt, 100_000, false);
        });
    }
    if which == "cg" {
        cases::ready_recv(&rt, 200_000, true);
    }
    if which == "cgr" {
        cases::ready_recv(&rt, 200_000, false);
    }
    if which == "cgz" {
        cases::rendezvous(&rt, 50_000, true);
    }
    if which == "cgzp" {
        cases::rendezvous(&rt, 50_000, false);
    }
    if which == "s2" {
        t("select2", 1_000_000, || {
            cases::ready_recv(&rt, 1_000_000, true)
        });
    }
    if which == "rs" {
        t("rdv-select", 100_000, || {
            cases::rendezvous(&rt, 100_000, true)
        });
    }
    if which.is_empty() || which == "tp" {
        t("tp 1/1", 1_000_000, || {
            cases::throughput(&rt, 1, 1, 1_000_000)
        });
        t("tp 4/4", 1_000_000, || {
            cases::throughput(&rt, 4, 4, 1_000_000)
        });
    }
}
