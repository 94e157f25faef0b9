//! Cancel scopes: the bookkeeping behind `timeout`, `shield` and
//! `CancellationToken::run`.
//!
//! Every execution context (a green thread, or a plain OS thread) has a
//! [`ScopeStack`]: the timeouts, token scopes and shields open in it. At
//! each suspension point the context evaluates it to learn the deadline to
//! wake up at and whether to unwind now. A token scope also keeps the
//! context's waker in its token, so that cancelling the token, which has no
//! deadline to wait for, wakes the context to evaluate again.
//!
//! # Scopes belong to the stack they were opened on (PEP 789)
//!
//! A generator can yield out of an open `timeout`: its frames, and the scope,
//! stay suspended on the generator's stack while the caller runs on. The
//! caller's frames are *not* inside that timeout, so it must not cancel them.
//! So each scope records which stack it was opened on, told by the machine's
//! stack pointer (not by the address of a local, which a sanitizer may move
//! to the heap):
//!
//! - the context's own stack (the green thread's, or the OS thread's), or
//! - a generator's stack, found through the per-thread registry of started
//!   generators ([`GeneratorMeta`]).
//!
//! A generator's scopes travel with the generator. While it runs they sit in
//! the scope stack of whichever context resumed it, innermost; when it
//! yields, its `yield_` (which checks a counter of its open scopes: one load,
//! so a plain switch costs nothing extra) moves them out into the generator
//! itself, and the next resume, from whatever context, moves them back in. So
//! an entry is in a context's stack only while its owner runs there: a
//! generator suspended inside a timeout and then dropped or resumed by
//! another green thread leaves nothing behind in the first one. (One shape
//! escapes this: a nested generator's body that yields an *outer*
//! generator's `Co` from inside a scope it opened; the outer `yield_` does
//! not know of that scope, which stays behind. Entries name their owner by
//! id and are never followed to it, so this touches no freed memory, but
//! the scope acts in the caller until the inner body closes it: a timeout
//! left behind can cut one of the caller's waits short, and a shield left
//! behind defers the caller's cancellation. `tests/review_session16.rs`
//! has both cases, ignored.)
//!
//! # Deliberate unwinds shield their own cleanup
//!
//! A cancellation, an expired timeout and a generator's close unwind the
//! stack, and destructors on the way may wait (return a connection to a pool
//! under a lock, say). Raising the cancellation again at such a wait would
//! start a second unwind inside a destructor that runs during the first,
//! which aborts the process. So every deliberate unwind opens an
//! [`Kind::Unwind`] shield on the stack it starts from, and the [`Cancelled`]
//! payload closes it when it is dropped: when the unwind is caught by its
//! catcher (the green thread's root, its `timeout`, the generator), or when
//! user code swallows it. The shield applies only while the thread's panic
//! count (`std::thread::panicking`) is set: a `catch_unwind` that stops the
//! unwind and keeps the payload ends it, unless another green thread of the
//! worker is unwinding meanwhile (then its waits look again every few
//! milliseconds until that ends). Meanwhile the waits in its
//! destructors behave as if inside [`shield`](crate::shield): they take as
//! long as what they wait for, and only a `timeout` opened inside the
//! destructor can cut them short.
//!
//! The same holds for an unwind that no shield announces (a plain panic):
//! while the context is in the middle of one of its own
//! (`worker::context_unwinding`, which tells a green thread's unwind from
//! another's on the same worker), nothing is raised but by a scope opened
//! during it (`Entry::inner`); the cancellation is *deferred*.
//!
//! [`Cancelled`]: crate::Cancelled
//!
//! # Nesting order
//!
//! Each entry has an `order`: a later (inner) scope has a larger one. A shield
//! blocks cancellation from everything outside it: the green thread's own
//! cancellation and every scope with a smaller order. Among expired timeouts
//! that are not blocked, the earliest deadline wins, and a tie goes to the
//! outer scope. A fired token's scope counts as a timeout whose deadline is
//! the moment the token fired.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::mem::ManuallyDrop;
use std::ptr;
use std::time::Instant;

use crate::cancel::Cause;

/// What a scope does.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A timeout: unwind its body once this instant has passed.
    Deadline(Instant),
    /// A `CancellationToken::run`: unwind its body once the token has fired,
    /// as if it were a timeout whose deadline is the moment it fired. The
    /// token holds the waker of the context the scope is in (updated when a
    /// generator carries the scope to another context), to wake it when it
    /// fires.
    Token(crate::cancel::Enrolled),
    /// A shield: defer every cancellation from outside it.
    Shield,
    /// A shield held by a deliberate unwind in flight, from the moment it is
    /// raised (this instant) until its payload is dropped (see the module
    /// docs).
    Unwind(Instant),
}

#[derive(Debug)]
struct Entry {
    id: u64,
    order: u64,
    /// The id of the generator whose stack the scope is on; 0 for the
    /// context's own stack. An id, not a pointer: an entry may outlive its
    /// generator in odd cases (a parent's `Co` yielded from a nested body),
    /// and is then only compared, never followed.
    owner: u64,
    kind: Kind,
    /// Opened while an unwind was on its way (in a destructor, say): it may
    /// fire during that unwind, since its own `timeout` catches it inside
    /// the destructor. Older scopes wait for the unwind to end.
    inner: bool,
    /// Debug mode has reported this unwind's slow destructors already.
    reported: bool,
}

/// The open scopes of one execution context.
#[derive(Debug, Default)]
pub(crate) struct ScopeStack {
    entries: Vec<Entry>,
    next_order: u64,
    /// The context's own stack, `(low, high)`; `(0, 0)` if unknown.
    own: (usize, usize),
}

/// The outcome of evaluating the scopes at a suspension point.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Unwind now, with this cause.
    pub(crate) raise: Option<Cause>,
    /// Wake up by this instant at the latest (the earliest live timeout).
    pub(crate) deadline: Option<Instant>,
    /// For debug mode: the innermost such unwind not reported yet, by its
    /// shield's id, and when it began.
    pub(crate) unreported: Option<(u64, Instant)>,
    /// A cancellation is due but held back because this context is in the
    /// middle of an unwind (raising it would start a second unwind inside a
    /// destructor, which aborts), or may be (a caught payload kept while
    /// another green thread of the worker unwinds). The waiter looks again
    /// soon.
    pub(crate) deferred: bool,
}

/// Scope ids are unique per process, so a payload can never match the wrong scope.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl ScopeStack {
    /// A scope stack for a context whose own stack spans `low..high`.
    pub(crate) fn new(own: (usize, usize)) -> ScopeStack {
        ScopeStack {
            entries: Vec::new(),
            next_order: 1,
            own,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Opens a scope on the stack holding `sp` and returns its id.
    fn open(&mut self, kind: Kind, sp: usize) -> u64 {
        let owner = if self.own.0 <= sp && sp < self.own.1 {
            0
        } else {
            with_generator(
                |m| m.range.get().0 <= sp && sp < m.range.get().1,
                |meta| {
                    meta.open_scopes.set(meta.open_scopes.get() + 1);
                    meta.id
                },
            )
            .unwrap_or(0)
        };
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let order = self.bump();
        self.entries.push(Entry {
            id,
            order,
            owner,
            kind,
            inner: crate::runtime::worker::context_unwinding(),
            reported: false,
        });
        id
    }

    /// Closes the scope `id` if it is open in this context (it may not be:
    /// the payload of an unwind can be dropped anywhere).
    fn close(&mut self, id: u64) {
        if let Some(i) = self.entries.iter().rposition(|e| e.id == id) {
            let owner = self.entries.remove(i).owner;
            if owner != 0 {
                with_generator(
                    |m| m.id == owner,
                    |meta| {
                        meta.open_scopes
                            .set(meta.open_scopes.get().saturating_sub(1))
                    },
                );
            }
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    /// Debug mode: the slow destructors of the unwind whose shield is `id`
    /// have been reported.
    pub(crate) fn mark_reported(&mut self, id: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.reported = true;
        }
    }

    /// Moves the entries of a suspending generator out, in order.
    fn take_owned(&mut self, owner: u64, into: &mut Vec<Entry>) {
        let mut i = 0;
        while i < self.entries.len() {
            if self.entries[i].owner == owner {
                into.push(self.entries.remove(i));
            } else {
                i += 1;
            }
        }
    }

    /// Moves a resumed generator's entries in: they are now the innermost.
    /// Tokens learn whom to wake now.
    fn put_back(&mut self, entries: &mut Vec<Entry>) {
        for mut entry in entries.drain(..) {
            entry.order = self.bump();
            if let Kind::Token(token) = &entry.kind {
                token.moved_here();
            }
            self.entries.push(entry);
        }
    }

    /// Hands the entries of a finishing generator to the context itself.
    fn rehome(&mut self, owner: u64) {
        for e in &mut self.entries {
            if e.owner == owner {
                e.owner = 0;
            }
        }
    }

    /// Decides what a suspension point at `now` must do. `cancelled` says
    /// whether the green thread itself has been cancelled; `panicking`
    /// whether the context is in the middle of an unwind of its own (see
    /// `worker::context_unwinding`).
    pub(crate) fn evaluate(
        &self,
        now: Instant,
        cancelled: Option<Cause>,
        panicking: bool,
    ) -> Verdict {
        let mut shield = 0;
        let mut unwind_shield = 0;
        let mut unreported = None;
        for e in &self.entries {
            match e.kind {
                Kind::Shield => shield = shield.max(e.order),
                // Only while the unwind is still on its way: once a
                // `catch_unwind` has stopped it and dropped the payload, the
                // entry is gone. Judged by the thread's own panic count, not
                // `panicking`: a green thread that starts its cancellation
                // while another of its worker is mid-unwind is not told
                // apart by `panicking`, and must stay shielded. A payload
                // caught and kept while another green thread of the worker
                // unwinds keeps it shielded a while longer (`deferred`
                // below, so its waits look again).
                Kind::Unwind(since) if std::thread::panicking() => {
                    unwind_shield = unwind_shield.max(e.order);
                    if !e.reported {
                        unreported = Some((e.id, since));
                    }
                }
                Kind::Unwind(_) => {}
                Kind::Deadline(_) | Kind::Token(_) => {}
            }
        }
        // Held back by an unwind this context may no longer be in: look again.
        let doubtful = unwind_shield > shield && !panicking;
        let shield = shield.max(unwind_shield);
        let mut verdict = Verdict {
            unreported,
            ..Verdict::default()
        };
        if let Some(cause) = cancelled {
            if shield == 0 {
                if !panicking {
                    verdict.raise = Some(cause);
                    return verdict;
                }
                verdict.deferred = true;
            } else if doubtful {
                verdict.deferred = true;
            }
        }
        // A fired token counts as a timeout that expired when it fired.
        let mut expired: Option<(Instant, u64, Cause)> = None;
        for e in &self.entries {
            let (at, due, cause) = match &e.kind {
                Kind::Deadline(at) => (*at, *at <= now, Cause::Scope(e.id)),
                Kind::Token(token) => match token.fired_at() {
                    Some(at) => (at, true, Cause::Token(e.id)),
                    None => continue,
                },
                Kind::Shield | Kind::Unwind(_) => continue,
            };
            if e.order < shield {
                verdict.deferred |= doubtful && due;
                continue;
            }
            if !due {
                if verdict.deadline.is_none_or(|d| at < d) {
                    verdict.deadline = Some(at);
                }
            } else if panicking && !e.inner {
                verdict.deferred = true; // opened before the unwind began
            } else if expired.is_none_or(|(a, o, _)| (at, e.order) < (a, o)) {
                expired = Some((at, e.order, cause));
            }
        }
        verdict.raise = expired.map(|(_, _, cause)| cause);
        verdict
    }
}

/// Marks what a generator needs for its scopes to follow it. It lives in the
/// generator's `Co`, on the generator's own stack.
#[derive(Debug, Default)]
pub(crate) struct GeneratorMeta {
    /// The generator's id, unique in the process (also its close token).
    pub(crate) id: u64,
    /// Scopes open on this generator's stack. `Co::yield_` reads it on every
    /// yield and does the slow bookkeeping only when it is non-zero.
    pub(crate) open_scopes: Cell<u32>,
    /// Its scopes while it is suspended (see the module docs).
    parked: RefCell<Vec<Entry>>,
    /// Index in this thread's registry, for O(1) removal.
    index: Cell<usize>,
    /// The generator's stack, `(low, high)`.
    range: Cell<(usize, usize)>,
}

impl GeneratorMeta {
    pub(crate) fn new(id: u64, range: (usize, usize)) -> GeneratorMeta {
        GeneratorMeta {
            id,
            open_scopes: Cell::new(0),
            parked: RefCell::new(Vec::new()),
            index: Cell::new(usize::MAX),
            range: Cell::new(range),
        }
    }
}

/// A process-unique generator id (see `crate::ids`).
pub(crate) fn next_generator_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! {
        static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    crate::ids::next(&NEXT, &IDS)
}

thread_local! {
    /// The scope stack of this OS thread itself, for code outside green
    /// threads. `ManuallyDrop`, so the thread-local itself has no destructor
    /// and stays usable to the very end of the thread: a timeout in another
    /// thread-local's destructor still works at thread exit. [`FreeAtExit`]
    /// frees what it holds.
    static THREAD: UnsafeCell<ManuallyDrop<Option<ScopeStack>>> =
        const { UnsafeCell::new(ManuallyDrop::new(None)) };
    /// Frees `THREAD`'s contents at thread exit. Scopes opened by
    /// destructors that run after it start a fresh, empty stack, whose few
    /// bytes are then leaked.
    static FREE_AT_EXIT: FreeAtExit = const { FreeAtExit };
    /// Generators started on this thread and not yet finished.
    static GENERATORS: UnsafeCell<Vec<*const GeneratorMeta>> = const { UnsafeCell::new(Vec::new()) };
}

/// Runs `f` on the current context's scope stack: the running green
/// thread's, or else the OS thread's own (which lasts to the very end of
/// the thread: see `THREAD`). `None` only where thread-locals cannot be
/// reached at all.
pub(crate) fn with<R>(f: impl FnOnce(&mut ScopeStack) -> R) -> Option<R> {
    let current = crate::runtime::worker::current_scopes();
    if !current.is_null() {
        // SAFETY: `current_scopes` points at the running green thread's stack
        // of scopes, which only this thread touches while the green thread
        // runs; `f` never re-enters this module.
        return Some(f(unsafe { &mut *current }));
    }
    THREAD
        .try_with(|t| {
            // SAFETY: a thread-local only this thread touches; `f` never
            // re-enters.
            let slot = unsafe { &mut *t.get() };
            let stack = slot.get_or_insert_with(|| {
                // Arrange for it to be freed (a no-op once that has run).
                let _ = FREE_AT_EXIT.try_with(|_| ());
                ScopeStack::new(stackful_arch::thread_stack_range().unwrap_or((0, 0)))
            });
            f(stack)
        })
        .ok()
}

/// See `FREE_AT_EXIT`.
struct FreeAtExit;

impl Drop for FreeAtExit {
    fn drop(&mut self) {
        let _ = THREAD.try_with(|t| {
            // SAFETY: as in `with`; nothing else borrows it while a
            // thread-local destructor runs.
            let taken = unsafe { (*t.get()).take() };
            drop(taken);
        });
    }
}

/// Runs `f` on the registered generator that `which` picks, if any. Only
/// registered generators are reached: they are alive (see
/// `register_generator`).
fn with_generator<R>(
    which: impl Fn(&GeneratorMeta) -> bool,
    f: impl FnOnce(&GeneratorMeta) -> R,
) -> Option<R> {
    GENERATORS
        .try_with(|g| {
            // SAFETY: thread-local, touched only by this thread; neither
            // closure re-enters this module.
            let list = unsafe { &*g.get() };
            list.iter()
                .map(|&m| {
                    // SAFETY: a registered meta is alive: its generator's
                    // wrapper registered it on its own stack and unregisters
                    // it before that frame ends (a leaked generator's stack
                    // is never freed).
                    unsafe { &*m }
                })
                .find(|m| which(m))
                .map(f)
        })
        .ok()
        .flatten()
}

/// An open scope; closing it is the caller's job (see `open`).
pub(crate) struct Opened(pub(crate) u64);

/// Opens a scope in the current context, on the stack the caller runs on.
/// The caller must call [`close`] with the id on every path, unwinding
/// included.
#[inline(never)]
pub(crate) fn open(kind: Kind) -> Opened {
    let sp = stackful_arch::stack_pointer();
    // No scope stack (at thread exit): nothing can be cut off there.
    Opened(with(|s| s.open(kind, sp)).unwrap_or(0))
}

/// Closes a scope opened with [`open`], if it is open in the current context.
pub(crate) fn close(scope: Opened) {
    with(|s| s.close(scope.0));
}

/// Registers a generator that is starting on this thread, so scopes opened
/// on its stack can be attributed to it.
pub(crate) fn register_generator(meta: &GeneratorMeta) {
    let _ = GENERATORS.try_with(|g| {
        // SAFETY: thread-local, touched only by this thread, no re-entry.
        let list = unsafe { &mut *g.get() };
        meta.index.set(list.len());
        list.push(meta);
    });
}

/// Removes a generator registered with [`register_generator`], whose body
/// has ended: scopes it left open (only an unwind's shield can be, while its
/// payload travels on) now belong to the context.
pub(crate) fn unregister_generator(meta: &GeneratorMeta) {
    if meta.open_scopes.get() != 0 {
        with(|s| s.rehome(meta.id));
        meta.open_scopes.set(0);
    }
    let _ = GENERATORS.try_with(|g| {
        // SAFETY: as in `register_generator`.
        let list = unsafe { &mut *g.get() };
        let i = meta.index.get();
        if list.get(i).is_some_and(|&m| ptr::eq(m, meta)) {
            list.swap_remove(i);
            if let Some(&moved) = list.get(i) {
                // SAFETY: registered, so alive (see `with_generator`).
                unsafe { &*moved }.index.set(i);
            }
        }
    });
}

/// The slow path of `Co::yield_` when scopes are open on the generator's
/// stack: they leave the context with it.
#[cold]
pub(crate) fn generator_suspending(meta: &GeneratorMeta) {
    let mut parked = meta.parked.borrow_mut();
    with(|s| s.take_owned(meta.id, &mut parked));
}

/// The slow path of `Co::yield_` once the generator runs again, in whatever
/// context resumed it.
#[cold]
pub(crate) fn generator_resumed(meta: &GeneratorMeta) {
    let mut parked = meta.parked.borrow_mut();
    with(|s| s.put_back(&mut parked));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_unblocked_deadline_wins_and_shields_block_outer_scopes() {
        let now = Instant::now();
        let mut s = ScopeStack::new((0, usize::MAX));
        let outer = s.open(Kind::Deadline(now - Duration::from_millis(5)), 1);
        let inner = s.open(Kind::Deadline(now - Duration::from_millis(9)), 1);
        assert_eq!(
            s.evaluate(now, None, false).raise,
            Some(Cause::Scope(inner))
        );
        s.close(inner);
        assert_eq!(
            s.evaluate(now, None, false).raise,
            Some(Cause::Scope(outer))
        );
        let shield = s.open(Kind::Shield, 1);
        let v = s.evaluate(now, Some(Cause::Task(3)), false);
        assert_eq!(
            v.raise, None,
            "the shield defers both the task and the outer timeout"
        );
        let later = now + Duration::from_secs(1);
        let inside = s.open(Kind::Deadline(later), 1);
        assert_eq!(s.evaluate(now, None, false).deadline, Some(later));
        s.close(inside);
        s.close(shield);
        assert_eq!(
            s.evaluate(now, Some(Cause::Task(3)), false).raise,
            Some(Cause::Task(3))
        );
    }

    #[test]
    fn a_fired_token_counts_as_a_timeout_that_expired_when_it_fired() {
        use crate::cancel::CancellationToken;
        let (early, late) = (CancellationToken::new(), CancellationToken::new());
        let mut s = ScopeStack::new((0, usize::MAX));
        let outer = s.open(Kind::Token(late.enroll()), 1);
        let inner = s.open(Kind::Token(early.enroll()), 1);
        let far = Instant::now() + Duration::from_secs(3600);
        let timeout = s.open(Kind::Deadline(far), 1);
        let v = s.evaluate(Instant::now(), None, false);
        assert_eq!((v.raise, v.deadline), (None, Some(far)), "not fired yet");
        early.cancel();
        std::thread::sleep(Duration::from_millis(2));
        late.cancel();
        let now = Instant::now();
        assert_eq!(
            s.evaluate(now, None, false).raise,
            Some(Cause::Token(inner))
        );
        s.close(inner);
        assert_eq!(
            s.evaluate(now, None, false).raise,
            Some(Cause::Token(outer))
        );
        let shield = s.open(Kind::Shield, 1);
        let v = s.evaluate(now, Some(Cause::Task(3)), false);
        assert_eq!(v.raise, None, "a shield defers a fired token too");
        s.close(shield);
        assert_eq!(
            s.evaluate(now, None, true).raise,
            None,
            "deferred while an unwind is on its way"
        );
        s.close(timeout);
        s.close(outer);
        assert!(s.is_empty());
    }

    #[test]
    fn while_an_unwind_is_on_its_way_only_scopes_opened_during_it_fire() {
        let now = Instant::now();
        let past = now - Duration::from_millis(1);
        let mut s = ScopeStack::new((0, usize::MAX));
        let outer = s.open(Kind::Deadline(past), 1);
        let v = s.evaluate(now, Some(Cause::Task(3)), true);
        assert_eq!(v.raise, None, "neither the cancel nor an older timeout");
        assert!(v.deferred);
        s.entries.last_mut().unwrap().inner = true; // as if opened in a destructor
        assert_eq!(s.evaluate(now, None, true).raise, Some(Cause::Scope(outer)));
        assert_eq!(
            s.evaluate(now, Some(Cause::Task(3)), false).raise,
            Some(Cause::Task(3)),
            "once the unwind is over, the cancellation is raised"
        );
    }
}
