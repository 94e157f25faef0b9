//! Turning a coroutine stack overflow into a message instead of a bare
//! "Segmentation fault".
//!
//! One `SIGSEGV`/`SIGBUS` handler is installed per process, the first time a
//! stack is made, and it remembers the handler that was there before. It runs
//! on the thread's alternate signal stack, because the faulting stack has no
//! room left; threads that lack one get one on their first stack.
//!
//! When a fault address lies in the guard page of a registered stack *and*
//! the interrupted stack pointer lies in that same stack, the coroutine on it
//! overflowed: the handler writes one line to stderr with `write(2)` (the only
//! output call that is async-signal-safe) and calls `abort()`. Any other fault
//! is passed on unchanged to the previous handler, so std's "thread 'main'
//! has overflowed its stack" and ordinary segmentation faults behave as if
//! this handler were not there.

use std::cell::Cell;
use std::panic::Location;
use std::ptr;
use std::sync::OnceLock;

use crate::cpu::fault_stack_pointer;
use crate::registry;

/// What kind of code runs on a stack, and how its owner gives it more room.
/// The upper layers keep one `static` per kind.
#[derive(Debug)]
pub struct Owner {
    /// For example `"generator"` or `"green thread"`.
    pub kind: &'static str,
    /// The advice printed after the overflow, for example
    /// "give it a larger stack with `generator::Builder::stack_size`".
    pub hint: &'static str,
}

/// Names the code running on a stack, for the overflow message.
#[derive(Debug, Clone, Copy)]
pub struct Label<'a> {
    /// The kind of coroutine and the advice for it.
    pub owner: &'static Owner,
    /// Its name, if the user gave one.
    pub name: Option<&'a str>,
    /// Where it was created.
    pub site: Option<&'static Location<'static>>,
}

/// The actions that were installed before ours, for chaining.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();
const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Bytes of alternate signal stack given to threads that have none.
const ALTSTACK_SIZE: usize = 64 * 1024;

/// Installs the handler (once per process) and makes sure the calling thread
/// has an alternate signal stack (once per thread). Cheap after the first call.
pub(crate) fn install() {
    PREVIOUS.get_or_init(|| {
        let mut previous = [empty_action(), empty_action()];
        for (signal, prev) in SIGNALS.iter().zip(previous.iter_mut()) {
            let mut action = empty_action();
            action.sa_sigaction = handle_fault as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `action` is fully initialised with an empty mask, and
            // `handle_fault` has the signature SA_SIGINFO requires. `prev`
            // receives the old action, which the handler chains to.
            let ret = unsafe {
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(*signal, &action, prev)
            };
            assert_eq!(
                ret,
                0,
                "sigaction failed: {}",
                std::io::Error::last_os_error()
            );
        }
        previous
    });
    ensure_altstack();
}

fn empty_action() -> libc::sigaction {
    // SAFETY: sigaction is a plain C struct for which all-zeroes is a valid
    // value (SIG_DFL, empty mask, no flags).
    unsafe { std::mem::zeroed() }
}

thread_local! {
    /// Whether this thread was checked for an alternate signal stack.
    static CHECKED: Cell<bool> = const { Cell::new(false) };
    /// The alternate signal stack this crate gave the thread, if it had none.
    static OWN_ALTSTACK: Cell<Option<AltStack>> = const { Cell::new(None) };
}

/// An alternate signal stack mapped by us, with a guard page below it.
struct AltStack {
    map: *mut libc::c_void,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: the thread is exiting, so no signal handler runs on this
        // stack any more; it is disabled before the memory is unmapped, and
        // the mapping is the one made in `ensure_altstack`.
        unsafe {
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.map, self.len);
        }
    }
}

fn ensure_altstack() {
    if CHECKED.replace(true) {
        return;
    }
    let mut current = libc::stack_t {
        ss_sp: ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    // SAFETY: querying only; `current` is a valid out-pointer.
    unsafe { libc::sigaltstack(ptr::null(), &mut current) };
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return; // std (or the embedding program) already gave this thread one
    }
    let page = crate::page_size();
    let len = ALTSTACK_SIZE + page;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh anonymous mapping cannot alias any Rust object.
    let map = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return; // without an altstack an overflow ends as a plain SIGSEGV
    }
    let alt = libc::stack_t {
        // SAFETY: the mapping is `len` bytes long; skipping the guard page stays inside it.
        ss_sp: unsafe { map.cast::<u8>().add(page) }.cast(),
        ss_flags: 0,
        ss_size: ALTSTACK_SIZE,
    };
    // SAFETY: the first page becomes a guard page of the mapping made above;
    // the rest is handed to the kernel as this thread's signal stack, and
    // `AltStack::drop` disables it before unmapping at thread exit.
    unsafe {
        libc::mprotect(map, page, libc::PROT_NONE);
        libc::sigaltstack(&alt, ptr::null_mut());
    }
    OWN_ALTSTACK.set(Some(AltStack { map, len }));
}

/// The signal handler. Async-signal-safe: it reads atomics, formats into a
/// buffer on its own stack, and calls only `write`, `abort`, `sigaction` and
/// the previous handler.
extern "C" fn handle_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t to SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(seen) = registry::find_guard(addr) {
        // SAFETY: `ctx` is this SA_SIGINFO handler's ucontext argument.
        let sp = unsafe { fault_stack_pointer(ctx) };
        // A real overflow faults with the stack pointer at or just below the
        // guard page of the stack it was running on. Requiring that also
        // makes the label safe to read: the coroutine it names is running on
        // this thread, so its name is alive.
        let slack = 64 * 1024;
        if sp < seen.base && sp + slack >= seen.guard_end {
            report(&seen);
            // SAFETY: abort has no preconditions and is async-signal-safe.
            unsafe { libc::abort() };
        }
    }
    // SAFETY: forwarding the handler's own arguments.
    unsafe { chain(signal, info, ctx) };
}

/// Passes a fault that is not ours to whatever handled it before.
///
/// # Safety
///
/// Must be called from the signal handler with its own arguments.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let index = usize::from(signal != libc::SIGSEGV);
    let prev = PREVIOUS.get().map(|p| p[index]);
    let handler = prev.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore the default action and return: the faulting instruction runs
        // again and the kernel delivers the default action (a core dump). A
        // signal sent with kill() would not recur, so it is raised again.
        let mut dfl = empty_action();
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: installing SIG_DFL with an empty mask; raise is async-signal-safe.
        unsafe {
            libc::sigaction(signal, &dfl, ptr::null_mut());
            if (*info).si_code <= 0 {
                libc::raise(signal);
            }
        }
        return;
    }
    let flags = prev.map_or(0, |p| p.sa_flags);
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so its
        // handler has the three-argument signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO the handler takes the signal number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

/// A fixed buffer for formatting without allocating.
struct Line {
    buf: [u8; 1024],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_num(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

fn report(seen: &registry::Seen) {
    let mut line = Line {
        buf: [0; 1024],
        len: 0,
    };
    line.push(b"stackful: coroutine ");
    match seen.name {
        Some((ptr, len)) => {
            line.push(b"`");
            // SAFETY: `set_label`'s contract keeps the name alive while code
            // runs on the stack, and the handler checked that it does.
            line.push(unsafe { std::slice::from_raw_parts(ptr, len) });
            line.push(b"`");
        }
        None => line.push(b"<unnamed>"),
    }
    if let Some(owner) = seen.owner {
        line.push(b" (a ");
        line.push(owner.kind.as_bytes());
        if let Some(site) = seen.site {
            line.push(b" created at ");
            line.push(site.file().as_bytes());
            line.push(b":");
            line.push_num(site.line() as usize);
            line.push(b":");
            line.push_num(site.column() as usize);
        }
        line.push(b")");
    }
    line.push(b" overflowed its ");
    line.push_num((seen.base - seen.guard_end) / 1024);
    line.push(b" KiB stack; ");
    match seen.owner {
        Some(owner) => line.push(owner.hint.as_bytes()),
        None => line.push(b"give it a larger stack"),
    }
    line.push(b", or move large locals to the heap\n");
    let mut rest = &line.buf[..line.len];
    while !rest.is_empty() {
        // SAFETY: writing initialised bytes from a live buffer to stderr.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            break;
        }
        rest = &rest[n as usize..];
    }
}
