//! Guard-paged coroutine stacks.
//!
//! A stack is one anonymous private mapping (or part of one: stacks are
//! mapped in batches). The lowest page is a guard page that faults on any
//! access; the rest is readable and writable and is only backed by memory
//! once code touches it:
//!
//! ```text
//!   high addresses
//!   +---------------------------+ <- base()   (the first frame is pushed here)
//!   |                           |
//!   |  usable: size() bytes     |    grows downwards; pages are faulted in
//!   |  PROT_READ | PROT_WRITE   |    on first touch, so an idle coroutine
//!   |                           |    costs one or two pages, not size()
//!   +---------------------------+ <- guard_end()
//!   |  guard page               |    a push past the bottom faults here and
//!   |                           |    the overflow handler names the coroutine
//!   +---------------------------+ <- limit()  (start of the mapping)
//!   low addresses
//! ```
//!
//! Rust emits stack probes for frames larger than a page, so a large frame
//! cannot jump over the guard page: it touches every page on its way down.
//!
//! The guard is a guard region (`madvise(MADV_GUARD_INSTALL)`) on Linux 6.13
//! and later, else a `PROT_NONE` page. The latter splits the mapping into two
//! areas per stack, and the limit is counted that way on every kernel, which
//! is why `vm.max_map_count` bounds the number of live stacks: see
//! [`StackError`].

use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::ptr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::overflow::{self, Label};
use crate::registry::{self, Slot};

/// The default usable size of a coroutine stack: 256 KiB.
///
/// Why this number: a stack costs address space for its whole size but memory
/// only for the pages that are touched, so a generous reservation is cheap.
/// Ordinary Rust code (formatting, `std::io`, collections, serde) uses a few
/// KiB to a few tens of KiB in release builds and roughly three times that in
/// debug builds, which leaves a wide margin. It stays below std's 2 MiB thread
/// default because every live stack also costs page-table memory in
/// proportion to its reservation (about 0.5 KiB at 256 KiB), and a runtime
/// with a million idle green threads feels that. Deeply recursive code should
/// ask for more, per generator or per green thread.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// The smallest usable stack size accepted: 16 KiB.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// The largest usable stack size accepted: 1 GiB. Anything larger is almost
/// certainly a unit mistake (bytes versus KiB).
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Number of guard pages below each stack.
const GUARD_PAGES: usize = 1;

/// Cache lines at the top of a stack that `Stack::prefetch_top` loads: about
/// what a green thread's first frames, down to a typical suspension, touch.
const PREFETCH_LINES: usize = 8;

/// Stacks currently mapped by this process, pooled or in use.
pub(crate) static MAPPED: AtomicUsize = AtomicUsize::new(0);

/// The system page size, read once.
pub fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always supported.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = usize::try_from(size).unwrap_or(4096);
    assert!(
        size.is_power_of_two(),
        "page size {size} is not a power of two"
    );
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// What went wrong when creating a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StackErrorKind {
    /// The requested size is below [`MIN_STACK_SIZE`] or above [`MAX_STACK_SIZE`].
    InvalidSize,
    /// The kernel's `mmap` refused to reserve the stack (the OS error says
    /// why: usually `ENOMEM`, at the kernel's mapping limit or out of
    /// address space).
    Map,
    /// This crate's own limit refused the stack before the kernel was
    /// asked: mapping it would leave fewer than [`MAP_RESERVE`] mappings
    /// under `vm.max_map_count` for the rest of the process (see
    /// [`MapLimit`]). No system call failed, so there is no OS error.
    MapLimit,
    /// The kernel refused to turn the lowest page into a guard page
    /// (`madvise(MADV_GUARD_INSTALL)`, or `mprotect` before Linux 6.13).
    Protect,
}

/// A stack could not be created.
///
/// The message says why, which limit refused it, and what to do. A failure
/// to map is most often the limit on memory mappings per process,
/// `vm.max_map_count`: each stack counts as two mappings, so the default
/// limit of 65530 allows 32 253 live stacks (see [`MapLimit`]). This crate
/// refuses a stack beyond that itself ([`StackErrorKind::MapLimit`]), before
/// the kernel would ([`StackErrorKind::Map`], `ENOMEM`), so that the rest of
/// the process keeps some mappings.
#[derive(Debug, Clone)]
pub struct StackError {
    kind: StackErrorKind,
    requested: usize,
    errno: Option<i32>,
}

impl StackError {
    fn invalid(requested: usize) -> Self {
        StackError {
            kind: StackErrorKind::InvalidSize,
            requested,
            errno: None,
        }
    }

    /// This crate's own mapping limit is reached (see [`MapLimit`]).
    fn map_limit(requested: usize) -> Self {
        StackError {
            kind: StackErrorKind::MapLimit,
            requested,
            errno: None,
        }
    }

    fn os(kind: StackErrorKind, requested: usize) -> Self {
        StackError {
            kind,
            requested,
            errno: io::Error::last_os_error().raw_os_error(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> StackErrorKind {
        self.kind
    }

    /// The usable size that was asked for, in bytes.
    pub fn requested_size(&self) -> usize {
        self.requested
    }

    /// The OS error code, when a system call failed (never for
    /// [`StackErrorKind::MapLimit`] or [`StackErrorKind::InvalidSize`]).
    pub fn raw_os_error(&self) -> Option<i32> {
        self.errno
    }

    /// Whether a limit on memory refused the stack: this crate's own
    /// ([`StackErrorKind::MapLimit`]) or the kernel's (`ENOMEM`).
    pub(crate) fn is_out_of_mappings(&self) -> bool {
        self.kind == StackErrorKind::MapLimit || self.errno == Some(libc::ENOMEM)
    }
}

/// Mappings left under `vm.max_map_count` for the rest of the process
/// (malloc, thread stacks, libraries): a stack is mapped only while stacks
/// use at most the limit minus this many. Without it, coroutines could take
/// the last mappings and the next `malloc` would abort the process. (A
/// process that needs more than this for other things still meets the
/// kernel's own refusal, [`StackErrorKind::Map`] with `ENOMEM`.)
pub const MAP_RESERVE: u64 = 1024;

/// How many stacks may be mapped at once under the kernel's limit on memory
/// mappings, `vm.max_map_count`: the one computation behind every figure
/// that stackful's messages give for it.
///
/// Each stack counts as 2 mappings (its usable part and its guard page,
/// which `mprotect` splits off; a kernel with guard regions does not split
/// it, but the count stays on the safe side), and [`MAP_RESERVE`] mappings
/// are kept for the rest of the process. A stack beyond
/// [`stacks`](MapLimit::stacks) is refused with
/// [`StackErrorKind::MapLimit`].
///
/// # Examples
///
/// ```
/// use stackful_arch::MapLimit;
///
/// // The kernel's default vm.max_map_count.
/// let limit = MapLimit::for_max_map_count(65530);
/// assert_eq!(limit.stacks, 32253);
/// assert_eq!(
///     limit.to_string(),
///     "the kernel's vm.max_map_count = 65530 lets stackful map at most 32253 stacks (2 \
///      mappings each, 1024 kept for the rest of the process)"
/// );
/// if let Some(now) = MapLimit::current() {
///     assert!(now.stacks > 0);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapLimit {
    /// `vm.max_map_count`: the kernel's limit on memory mappings per
    /// process (65530 by default).
    pub max_map_count: u64,
    /// The stacks that may be mapped at once:
    /// `(max_map_count - MAP_RESERVE) / 2`.
    pub stacks: usize,
}

impl MapLimit {
    /// The limit for a given `vm.max_map_count`.
    pub fn for_max_map_count(max_map_count: u64) -> MapLimit {
        MapLimit {
            max_map_count,
            stacks: usize::try_from(max_map_count.saturating_sub(MAP_RESERVE) / 2)
                .unwrap_or(usize::MAX),
        }
    }

    /// The limit now, from `vm.max_map_count` as last read (it is read
    /// again, at most every 100 ms, when the limit seems reached, since it
    /// can be raised while the process runs); `None` if
    /// `/proc/sys/vm/max_map_count` cannot be read, and no limit is known.
    pub fn current() -> Option<MapLimit> {
        let limit = cached_max_map_count();
        (limit != u64::MAX).then(|| MapLimit::for_max_map_count(limit))
    }
}

impl fmt::Display for MapLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the kernel's vm.max_map_count = {} lets stackful map at most {} stacks (2 mappings \
             each, {MAP_RESERVE} kept for the rest of the process)",
            self.max_map_count, self.stacks
        )
    }
}

/// The number of stacks this process has mapped now, pooled or in use.
pub fn mapped_stacks() -> usize {
    MAPPED.load(Ordering::Relaxed)
}

/// `vm.max_map_count` as last read, `u64::MAX` if unreadable.
static LIMIT: AtomicU64 = AtomicU64::new(0);
/// When `LIMIT` was last read, in `pool::millis_since_start`.
static READ_AT_MS: AtomicU64 = AtomicU64::new(0);

/// `vm.max_map_count`, read on first use; `u64::MAX` if unreadable.
fn cached_max_map_count() -> u64 {
    match LIMIT.load(Ordering::Relaxed) {
        0 => read_max_map_count(),
        limit => limit,
    }
}

fn read_max_map_count() -> u64 {
    let limit = max_map_count().unwrap_or(u64::MAX);
    LIMIT.store(limit, Ordering::Relaxed);
    limit
}

/// How many of `n` more stacks fit under [`MapLimit::stacks`]. The limit is
/// read once, and again when it seems reached (it can be raised while the
/// process runs), at most every 100 ms so that a stream of refused stacks
/// does not read `/proc` each time.
pub(crate) fn stacks_that_fit(n: usize) -> usize {
    let fit = |limit: u64| {
        let stacks = MapLimit::for_max_map_count(limit).stacks;
        stacks.saturating_sub(MAPPED.load(Ordering::Relaxed)).min(n)
    };
    let cached = LIMIT.load(Ordering::Relaxed);
    if cached != 0 {
        let fits = fit(cached);
        let now_ms = crate::pool::millis_since_start();
        if fits == n || now_ms < READ_AT_MS.load(Ordering::Relaxed) + 100 {
            return fits;
        }
        READ_AT_MS.store(now_ms, Ordering::Relaxed);
    }
    fit(read_max_map_count())
}

/// Counts this process's memory mappings, if `/proc` is there.
fn mappings_in_use() -> Option<u64> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// Reads the current `vm.max_map_count`, if `/proc` is there.
fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `madvise` advice of Linux 6.13 and later: install guard markers.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Makes the page-aligned range `addr..addr + len`, part of a fresh private
/// anonymous mapping that nothing uses yet, fault on any access; false
/// (with `errno` set) if it could not.
///
/// Where the kernel has guard regions (`MADV_GUARD_INSTALL`), those are
/// used: the range faults like a `PROT_NONE` page, but the mapping is not
/// split in two, which makes a new stack markedly cheaper to set up (no new
/// mapping to allocate, no exclusive lock on the address space). The first
/// guard region is checked to really fault (an emulator may accept advice it
/// ignores). Any refusal but `ENOMEM` (an older kernel's `EINVAL`, a seccomp
/// filter's `EPERM`), or a check that fails, switches to `mprotect` for good.
/// Either way the overflow handler finds the guard by address.
fn install_guard(addr: usize, len: usize) -> bool {
    const UNTESTED: u8 = 0;
    const REGIONS: u8 = 1;
    const PROTECT: u8 = 2;
    static MODE: AtomicU8 = AtomicU8::new(UNTESTED);
    let mode = MODE.load(Ordering::Relaxed);
    if mode != PROTECT {
        match guard_region(addr, len) {
            Ok(()) if mode == REGIONS => return true,
            Ok(()) if faults(addr) => {
                MODE.store(REGIONS, Ordering::Relaxed);
                return true;
            }
            Err(libc::ENOMEM) => return false,
            // Accepted but not enforced, or refused: mprotect from now on.
            Ok(()) | Err(_) => MODE.store(PROTECT, Ordering::Relaxed),
        }
    }
    guard_protect(addr, len)
}

/// Whether reading the byte at `addr` faults, asked of the kernel without
/// touching it: `write` from there into a pipe fails with `EFAULT` if so.
fn faults(addr: usize) -> bool {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return false; // cannot tell: take the safe side, mprotect
    }
    // SAFETY: `write` only reads from `addr`; an address it cannot read is
    // reported as EFAULT, not a fault in this process. Both descriptors are
    // ours and closed here.
    unsafe {
        let n = libc::write(fds[1], addr as *const libc::c_void, 1);
        let errno = io::Error::last_os_error().raw_os_error();
        libc::close(fds[0]);
        libc::close(fds[1]);
        n < 0 && errno == Some(libc::EFAULT)
    }
}

/// `install_guard` with a guard region; the error number if refused.
fn guard_region(addr: usize, len: usize) -> Result<(), i32> {
    // SAFETY: advice on a range of a private anonymous mapping that no Rust
    // object uses (the caller's contract); it only makes the range fault.
    let ret = unsafe { libc::madvise(addr as *mut libc::c_void, len, MADV_GUARD_INSTALL) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// `install_guard` with `mprotect(PROT_NONE)`, which splits the mapping.
fn guard_protect(addr: usize, len: usize) -> bool {
    // SAFETY: as in `guard_region`: nothing uses the range, so removing
    // access to it is sound.
    unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) == 0 }
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = self.requested / 1024;
        let mapped = MAPPED.load(Ordering::Relaxed);
        let limit = MapLimit::current();
        let limit_text = limit.map_or_else(
            || "vm.max_map_count could not be read".to_string(),
            |l| l.to_string(),
        );
        let advice = "Raise the limit with `sysctl -w vm.max_map_count=<n>` as root, or keep \
                      fewer coroutines alive";
        match self.kind {
            StackErrorKind::InvalidSize => write!(
                f,
                "invalid coroutine stack size of {} byte{}: it must be between {} KiB and {} MiB \
                 (the size is in bytes; 256 KiB is `256 << 10`)",
                self.requested,
                if self.requested == 1 { "" } else { "s" },
                MIN_STACK_SIZE / 1024,
                MAX_STACK_SIZE >> 20
            ),
            StackErrorKind::MapLimit => write!(
                f,
                "could not create a {kib} KiB coroutine stack: refused by stackful's own limit, \
                 before asking the kernel: {mapped} stacks are mapped, and {limit_text}. {advice}"
            ),
            StackErrorKind::Map | StackErrorKind::Protect => {
                let call = if self.kind == StackErrorKind::Map {
                    "mmap"
                } else {
                    "setting its guard page"
                };
                let os = io::Error::from_raw_os_error(self.errno.unwrap_or(0));
                write!(
                    f,
                    "could not create a {kib} KiB coroutine stack: the kernel refused it \
                     ({call} failed: {os})"
                )?;
                if self.errno == Some(libc::ENOMEM) {
                    let in_use = mappings_in_use();
                    let max = limit.map_or(u64::MAX, |l| l.max_map_count);
                    // mprotect fails with ENOMEM when splitting the mapping
                    // would pass the limit, and /proc may be unreadable then.
                    let at_limit = self.kind == StackErrorKind::Protect
                        || limit.is_some_and(|l| mapped >= l.stacks)
                        || in_use.is_some_and(|n| n + 2 > max);
                    let in_use = in_use.map_or_else(|| "?".to_string(), |n| n.to_string());
                    if at_limit {
                        write!(
                            f,
                            ". The process has reached the kernel's limit on memory mappings \
                             ({in_use} in use, {mapped} stacks among them): {limit_text}. \
                             {advice}"
                        )?;
                    } else {
                        write!(
                            f,
                            ". The kernel is out of memory or address space for this process \
                             (check `ulimit -v`); the mapping limit is not reached ({in_use} \
                             mappings in use, {mapped} stacks mapped): {limit_text}"
                        )?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for StackError {}

impl From<StackError> for io::Error {
    fn from(e: StackError) -> io::Error {
        let kind = match e.kind {
            StackErrorKind::InvalidSize => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::OutOfMemory,
        };
        io::Error::new(kind, e)
    }
}

/// An owned, guard-paged coroutine stack (see the module docs for the layout).
///
/// Dropping it unmaps the memory. Most code wants a [`PooledStack`](crate::PooledStack)
/// instead, which reuses stacks.
pub struct Stack {
    /// Where coroutines start: the top of the mapping minus the stack's
    /// colour (see `colour`). Stored, since corosensei asks on every switch.
    start: NonZeroUsize,
    /// Usable bytes, a multiple of the page size; the mapping is this plus the guard.
    size: usize,
    /// This stack's entry in the overflow handler's registry.
    slot: &'static Slot,
}

impl Stack {
    /// Maps a new stack with at least `size` usable bytes (rounded up to whole
    /// pages) and a guard page below it.
    ///
    /// The first call in the process installs the overflow handler, and the
    /// first call on each thread makes sure the thread has an alternate signal
    /// stack for it to run on.
    ///
    /// # Errors
    ///
    /// [`StackErrorKind::InvalidSize`] if `size` is outside
    /// [`MIN_STACK_SIZE`]`..=`[`MAX_STACK_SIZE`];
    /// [`StackErrorKind::MapLimit`] if [`MapLimit::stacks`] stacks are mapped
    /// already; [`StackErrorKind::Map`] or [`StackErrorKind::Protect`] if the
    /// kernel refuses, most often because of `vm.max_map_count`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful_arch::{Stack, StackErrorKind};
    ///
    /// let stack = Stack::new(64 * 1024).unwrap();
    /// assert_eq!(stack.size(), 64 * 1024);
    /// assert_eq!(Stack::new(0).err().unwrap().kind(), StackErrorKind::InvalidSize);
    /// ```
    pub fn new(size: usize) -> Result<Stack, StackError> {
        let size = Self::checked_size(size)?;
        if stacks_that_fit(1) == 0 {
            return Err(StackError::map_limit(size));
        }
        let mut one = Self::map_run(size, 1)?;
        Ok(one.pop().expect("a run holds at least one stack"))
    }

    /// Maps up to `n` stacks of `size` bytes with one `mmap`, each with its
    /// own guard page (see `install_guard`): a burst that outgrows the pool
    /// pays one mapping call per batch instead of one per stack. Each stack
    /// is unmapped on its own when dropped (`munmap` of part of a mapping).
    ///
    /// Returns at least one stack. At the kernel's mapping limit it returns
    /// the stacks it could protect, or the error if there were none.
    pub(crate) fn new_batch(size: usize, n: usize) -> Result<Vec<Stack>, StackError> {
        let size = Self::checked_size(size)?;
        match stacks_that_fit(n) {
            0 => Err(StackError::map_limit(size)),
            // One large mapping can fail where a single stack fits.
            n => Self::map_run(size, n).or_else(|_| Self::map_run(size, 1)),
        }
    }

    /// Maps `n >= 1` stacks of `size` (already checked) bytes next to each
    /// other with one `mmap`, then puts a guard page below each. If a guard
    /// cannot be set (the kernel's mapping limit), the rest is unmapped and
    /// the stacks made so far are returned, or the error if there are none.
    fn map_run(size: usize, n: usize) -> Result<Vec<Stack>, StackError> {
        overflow::install();
        let page = page_size();
        let len = size + GUARD_PAGES * page;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing
        // cannot alias any existing Rust object.
        let start = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len * n,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(StackError::os(StackErrorKind::Map, size));
        }
        let start = start as usize;
        let mut stacks = Vec::with_capacity(n);
        for i in 0..n {
            let low = start + i * len;
            if !install_guard(low, GUARD_PAGES * page) {
                let err = StackError::os(StackErrorKind::Protect, size);
                // SAFETY: unmapping the unprotected rest of the mapping made
                // above, which no Stack owns.
                unsafe { libc::munmap(low as *mut libc::c_void, (n - i) * len) };
                if stacks.is_empty() {
                    return Err(err);
                }
                break;
            }
            let base = NonZeroUsize::new(low + len).expect("mmap returned a mapping ending at 0");
            let slot = registry::register(low, low + GUARD_PAGES * page, base.get());
            MAPPED.fetch_add(1, Ordering::Relaxed);
            stacks.push(Stack::at(base, size, slot));
        }
        Ok(stacks)
    }

    /// Validates a requested size and rounds it up to whole pages.
    pub(crate) fn checked_size(size: usize) -> Result<usize, StackError> {
        if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&size) {
            return Err(StackError::invalid(size));
        }
        let page = page_size();
        Ok((size + page - 1) & !(page - 1))
    }

    /// Usable bytes, excluding the guard page.
    pub fn size(&self) -> usize {
        self.size
    }

    fn at(top: NonZeroUsize, size: usize, slot: &'static Slot) -> Stack {
        let start = NonZeroUsize::new(top.get() - colour(top.get()))
            .expect("a stack's top is far above address 0");
        Stack { start, size, slot }
    }

    /// Highest address of the mapping. Coroutines start a little below it
    /// (see `colour`): `corosensei::stack::Stack::base` says where.
    pub fn top(&self) -> usize {
        // The colour is less than a page and the top is page aligned.
        let page = page_size();
        (self.start.get() + page - 1) & !(page - 1)
    }

    /// Asks the CPU to start loading the top of the stack, where the next
    /// coroutine to use it will write first: a stack taken from the pool is
    /// usually cold, and a coroutine's first frames then wait on memory.
    #[inline]
    pub fn prefetch_top(&self) {
        let start = self.start.get();
        for line in 1..=PREFETCH_LINES {
            crate::cpu::prefetch(start - line * 64);
        }
    }

    /// Lowest usable address; the guard page sits just below it.
    pub fn guard_end(&self) -> usize {
        self.top() - self.size
    }

    /// Gives the memory of every page back to the kernel (`MADV_DONTNEED`);
    /// the next touch of a page maps a fresh zero page. Costs a system call
    /// whose price grows with the number of resident pages.
    pub(crate) fn release_pages(&self) {
        // SAFETY: the range is this stack's own usable part, page aligned,
        // and no coroutine is running on it: only the pool calls this, on
        // stacks handed back after their coroutine finished.
        let ret = unsafe {
            libc::madvise(
                self.guard_end() as *mut libc::c_void,
                self.size,
                libc::MADV_DONTNEED,
            )
        };
        debug_assert_eq!(ret, 0, "madvise failed: {}", io::Error::last_os_error());
    }

    /// Names the code about to run on this stack, for the overflow message.
    ///
    /// # Safety
    ///
    /// `label.name` must stay valid until [`Stack::clear_label`] is called or
    /// the stack is dropped, whichever comes first: the overflow handler reads
    /// it if the code on this stack overflows.
    pub unsafe fn set_label(&self, label: Label<'_>) {
        self.slot.set_label(label);
    }

    /// Forgets the label set by [`Stack::set_label`].
    pub fn clear_label(&self) {
        self.slot.clear_label();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        registry::unregister(self.slot);
        let len = self.size + GUARD_PAGES * page_size();
        // SAFETY: the mapping was made in `Stack::new` with this start and
        // length, and the stack is being dropped, so no coroutine runs on it.
        let ret = unsafe { libc::munmap((self.top() - len) as *mut libc::c_void, len) };
        debug_assert_eq!(ret, 0, "munmap failed: {}", io::Error::last_os_error());
        MAPPED.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("top", &format_args!("{:#x}", self.top()))
            .field("size", &self.size)
            .finish()
    }
}

/// How far below the top of its mapping a stack starts: one of 16 cache-line
/// offsets (0 to 960 bytes), chosen from the mapping's address.
///
/// Stacks are page aligned and every green thread suspends at the same depth,
/// so without it the hot top frames of all coroutines share the same few
/// cache sets and evict each other when many coroutines take turns. The
/// offset stays well inside the first page, so an idle coroutine still
/// touches one page.
/// Taken from the page number's low bits: stacks are mapped next to each
/// other, a whole number of pages plus a guard page apart, so neighbours
/// differ in those bits.
#[inline]
fn colour(base: usize) -> usize {
    ((base >> 12) & 15) * 64
}

// SAFETY: `start`, the top minus the colour (a multiple of 64 below 1 KiB),
// lies inside the mapping and is aligned to 64, so to STACK_ALIGNMENT; `limit` is the
// start of the mapping and includes the guard page. The usable part is at
// least MIN_STACK_SIZE (16 KiB), far above corosensei's 4 KiB minimum plus
// the colour, and the guard page is PROT_NONE for as long as the Stack exists.
unsafe impl corosensei::stack::Stack for Stack {
    #[inline]
    fn base(&self) -> corosensei::stack::StackPointer {
        self.start
    }

    #[inline]
    fn limit(&self) -> corosensei::stack::StackPointer {
        let len = self.size + GUARD_PAGES * page_size();
        NonZeroUsize::new(self.top() - len).expect("stack mapping starts at address 0")
    }
}

/// The address range `(low, high)` of the calling OS thread's own stack, as
/// the C library reports it, or `None` if it cannot tell.
pub fn thread_stack_range() -> Option<(usize, usize)> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; the
    // attribute object is destroyed after use, and the out-pointers are valid.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut addr = ptr::null_mut();
        let mut size = 0;
        let ret = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (ret == 0).then(|| (addr as usize, addr as usize + size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_and_rounded() {
        assert_eq!(
            Stack::checked_size(MIN_STACK_SIZE + 1).unwrap(),
            MIN_STACK_SIZE + page_size()
        );
        for bad in [0, MIN_STACK_SIZE - 1, MAX_STACK_SIZE + 1, usize::MAX] {
            let err = Stack::checked_size(bad).unwrap_err();
            assert_eq!(err.kind(), StackErrorKind::InvalidSize);
            assert!(
                err.to_string()
                    .contains("must be between 16 KiB and 1024 MiB"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_batch_holds_separate_guarded_stacks_that_unmap_one_by_one() {
        let mut stacks = Stack::new_batch(MIN_STACK_SIZE, 4).unwrap();
        assert_eq!(stacks.len(), 4);
        stacks.sort_by_key(Stack::top);
        for pair in stacks.windows(2) {
            // Each stack's guard page sits between it and the one below.
            assert_eq!(pair[1].guard_end() - page_size(), pair[0].top());
        }
        for stack in &stacks {
            assert_eq!(stack.size(), MIN_STACK_SIZE);
            let (low, high) = (stack.guard_end() as *mut u8, (stack.top() - 1) as *mut u8);
            // SAFETY: both addresses lie in this stack's usable, writable part.
            unsafe {
                low.write(1);
                high.write(2);
                assert_eq!((low.read(), high.read()), (1, 2));
            }
        }
        // Unmapping one leaves its neighbours usable.
        let middle = stacks.remove(1);
        drop(middle);
        for stack in &stacks {
            let p = stack.guard_end() as *mut u8;
            // SAFETY: this stack is still mapped and writable.
            unsafe { p.write(3) };
        }
    }

    #[test]
    fn stacks_start_at_different_cache_line_offsets() {
        let stacks: Vec<Stack> = (0..32)
            .map(|_| Stack::new(MIN_STACK_SIZE).unwrap())
            .collect();
        use corosensei::stack::Stack as _;
        let mut offsets: Vec<usize> = stacks.iter().map(|s| s.top() - s.base().get()).collect();
        offsets.sort_unstable();
        offsets.dedup();
        assert!(offsets.len() >= 4, "offsets {offsets:?}");
    }

    #[test]
    fn guard_page_sits_below_the_usable_part() {
        let stack = Stack::new(MIN_STACK_SIZE).unwrap();
        use corosensei::stack::Stack as _;
        assert_eq!(
            stack.top() - stack.limit().get(),
            MIN_STACK_SIZE + page_size()
        );
        // Coroutines start at most 960 bytes below the top, cache-line aligned.
        let start = stack.base().get();
        assert!(start <= stack.top() && stack.top() - start <= 960);
        assert_eq!(start % 64, 0);
        assert_eq!(stack.guard_end(), stack.limit().get() + page_size());
        // The usable part is writable from top to bottom.
        let bottom = stack.guard_end() as *mut u8;
        // SAFETY: both addresses lie in the usable, writable part of the stack.
        unsafe {
            bottom.write(1);
            bottom.add(MIN_STACK_SIZE - 1).write(2);
        }
    }

    /// Whether writing to `addr` kills a forked child with SIGSEGV.
    fn write_faults(addr: usize) -> bool {
        // SAFETY: the child only writes to memory and exits, both
        // async-signal-safe; the parent waits for it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // No core dump for the expected crash.
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                (addr as *mut u8).write_volatile(1);
                libc::_exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV
        }
    }

    #[test]
    fn both_kinds_of_guard_fault_and_leave_the_rest_writable() {
        let page = page_size();
        for region in [true, false] {
            // SAFETY: a fresh anonymous mapping of two pages.
            let low = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    2 * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(low, libc::MAP_FAILED);
            let low = low as usize;
            let installed = if region {
                match guard_region(low, page) {
                    Ok(()) => true,
                    Err(libc::EINVAL) => false, // a kernel before 6.13
                    Err(e) => panic!("MADV_GUARD_INSTALL failed: errno {e}"),
                }
            } else {
                assert!(guard_protect(low, page), "mprotect failed");
                true
            };
            if installed {
                assert!(faults(low), "the kernel does not see the guard");
                assert!(!faults(low + page), "the kernel sees a guard above it");
                assert!(
                    write_faults(low),
                    "the guard (region: {region}) did not fault"
                );
                assert!(
                    !write_faults(low + page),
                    "the page above the guard faulted"
                );
            }
            // SAFETY: unmapping the mapping made above, which nothing uses.
            unsafe { libc::munmap(low as *mut libc::c_void, 2 * page) };
        }
    }

    #[test]
    fn enomem_message_names_max_map_count() {
        let err = StackError {
            kind: StackErrorKind::Map,
            requested: DEFAULT_STACK_SIZE,
            errno: Some(libc::ENOMEM),
        };
        let msg = err.to_string();
        assert!(msg.contains("vm.max_map_count"), "{msg}");
        assert!(
            msg.starts_with(
                "could not create a 256 KiB coroutine stack: the kernel refused it (mmap failed: "
            ),
            "{msg}"
        );
        assert!(msg.contains("(os error 12)"), "{msg}");
        assert!(!msg.contains("stackful's own limit"), "{msg}");
        assert!(err.is_out_of_mappings());
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::OutOfMemory);
    }

    #[test]
    fn the_limit_is_computed_once_for_every_message() {
        assert_eq!(MapLimit::for_max_map_count(65530).stacks, 32253);
        assert_eq!(MapLimit::for_max_map_count(1_000_000).stacks, 499_488);
        assert_eq!(
            MapLimit::for_max_map_count(100).stacks,
            0,
            "below the reserve"
        );
        let Some(now) = MapLimit::current() else {
            return; // no /proc here: nothing to compare
        };
        let figure = format!("at most {} stacks", now.stacks);
        // The refusal by stackful's own limit says so, with the figure, and
        // carries no OS error: no system call failed.
        let own = StackError::map_limit(DEFAULT_STACK_SIZE);
        let msg = own.to_string();
        assert_eq!(own.kind(), StackErrorKind::MapLimit);
        assert_eq!(own.raw_os_error(), None);
        assert!(own.is_out_of_mappings());
        assert!(
            msg.starts_with(
                "could not create a 256 KiB coroutine stack: refused by stackful's own limit, \
                 before asking the kernel: "
            ),
            "{msg}"
        );
        assert!(msg.contains(&figure), "{msg}");
        assert!(
            msg.contains(&format!("vm.max_map_count = {}", now.max_map_count)),
            "{msg}"
        );
        assert!(!msg.contains("os error"), "{msg}");
        assert_eq!(io::Error::from(own).kind(), io::ErrorKind::OutOfMemory);
        // The kernel's refusal gives the same figure.
        let kernel = StackError {
            kind: StackErrorKind::Protect,
            requested: DEFAULT_STACK_SIZE,
            errno: Some(libc::ENOMEM),
        };
        let msg = kernel.to_string();
        assert!(msg.contains("the kernel refused it (setting its guard page failed"));
        assert!(msg.contains("reached the kernel's limit on memory mappings"));
        assert!(msg.contains(&figure), "{msg}");
        // Another errno is not about mappings.
        let other = StackError {
            kind: StackErrorKind::Map,
            requested: DEFAULT_STACK_SIZE,
            errno: Some(libc::EPERM),
        };
        assert!(!other.is_out_of_mappings());
        assert!(!other.to_string().contains("vm.max_map_count"));
    }
}
