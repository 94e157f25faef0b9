//! `stackful::io::Green`: any descriptor waits green.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use stackful::io::Green;

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are new and owned by nobody else.
    unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn is_nonblocking(fd: &impl AsRawFd) -> bool {
    // SAFETY: fcntl on an open descriptor; no pointers.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    flags & libc::O_NONBLOCK != 0
}

#[test]
fn a_pipe_read_suspends_only_the_green_thread() {
    within(60, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        rt.run(|| {
            let (r, w) = pipe();
            let mut r = Green::new(r).unwrap();
            let w = Green::new(w).unwrap();
            // With one worker, the writer can only run if the reader's wait
            // freed it.
            let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let ran2 = ran.clone();
            let writer = stackful::spawn(move || {
                ran2.store(true, std::sync::atomic::Ordering::SeqCst);
                let mut w = w;
                w.write_all(b"through a pipe").unwrap();
            });
            let mut got = String::new();
            r.read_to_string(&mut got).unwrap();
            assert_eq!(got, "through a pipe");
            assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
            writer.join().unwrap();
        });
    });
}

#[test]
fn a_full_pipe_write_waits_for_the_reader() {
    within(60, || {
        stackful::run(|| {
            let (r, w) = pipe();
            let r = Green::new(r).unwrap();
            let mut w = Green::new(w).unwrap();
            const TOTAL: usize = 1 << 20; // far beyond a pipe's buffer
            let reader = stackful::spawn(move || {
                let mut r = r;
                let mut n = 0;
                let mut buf = [0; 8192];
                loop {
                    let k = r.read(&mut buf).unwrap();
                    if k == 0 {
                        return n;
                    }
                    assert!(buf[..k].iter().all(|&b| b == 0x5a));
                    n += k;
                }
            });
            w.write_all(&vec![0x5a; TOTAL]).unwrap();
            drop(w);
            assert_eq!(reader.join().unwrap(), TOTAL);
        })
    });
}

#[test]
fn read_with_retries_on_would_block_and_write_with_by_reference() {
    within(60, || {
        stackful::run(|| {
            let (a, b) = UnixStream::pair().unwrap();
            let a = Green::new(a).unwrap();
            let b = Arc::new(Green::new(b).unwrap());
            let b2 = b.clone();
            let writer = stackful::spawn(move || {
                stackful::sleep(Duration::from_millis(10));
                b2.write_with(|s| (&*s).write(b"xyz")).unwrap()
            });
            let mut tries = 0;
            let mut buf = [0; 3];
            let n = a
                .read_with(|s| {
                    tries += 1;
                    (&*s).read(&mut buf)
                })
                .unwrap();
            assert_eq!(&buf[..n], b"xyz");
            assert!(tries >= 2, "the first try should have found nothing");
            assert_eq!(writer.join().unwrap(), 3);
            // `&Green<T>` reads and writes where `&T` does.
            (&*b).write_all(b"ref").unwrap();
            let mut buf = [0; 3];
            (&a).read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ref");
        })
    });
}

#[test]
fn errors_other_than_would_block_come_back_and_waits_are_cancellable() {
    within(60, || {
        stackful::run(|| {
            let (a, _b) = UnixStream::pair().unwrap();
            let a = Green::new(a).unwrap();
            let e = a
                .read_with(|_| -> std::io::Result<()> { Err(ErrorKind::InvalidData.into()) })
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData);
            let t = Instant::now();
            let r = stackful::timeout(Duration::from_millis(30), || {
                a.read_with(|s| (&*s).read(&mut [0; 1]))
            });
            assert!(r.is_err());
            assert!(t.elapsed() >= Duration::from_millis(30));
        })
    });
}

#[test]
fn plain_threads_block_and_into_inner_restores_the_flag() {
    within(60, || {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(!is_nonblocking(&a));
        let a = Green::new(a).unwrap();
        assert!(is_nonblocking(&a));
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            (&b).write_all(b"os").unwrap();
            b
        });
        let mut buf = [0; 2];
        (&a).read_exact(&mut buf).unwrap(); // blocks this thread in poll
        assert_eq!(&buf, b"os");
        assert!(format!("{a:?}").starts_with("Green("));
        let a = a.into_inner();
        assert!(!is_nonblocking(&a));
        drop(writer.join().unwrap());
        // A descriptor that was non-blocking stays so.
        let (c, _d) = UnixStream::pair().unwrap();
        c.set_nonblocking(true).unwrap();
        assert!(is_nonblocking(&Green::new(c).unwrap().into_inner()));
    });
}

#[test]
fn a_regular_file_reads_and_cannot_wait() {
    within(60, || {
        let path = std::env::temp_dir().join(format!("stackful-green-{}", std::process::id()));
        std::fs::write(&path, b"file contents").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        stackful::run(|| {
            let mut g = Green::new(f).unwrap();
            let mut s = String::new();
            g.read_to_string(&mut s).unwrap(); // never WouldBlock
            assert_eq!(s, "file contents");
            // A closure that claims WouldBlock makes it try to wait, which
            // epoll refuses for a regular file: an error, not a hang.
            let e = g
                .read_with(|_| -> std::io::Result<()> { Err(ErrorKind::WouldBlock.into()) })
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        });
        std::fs::remove_file(&path).unwrap();
    });
}
