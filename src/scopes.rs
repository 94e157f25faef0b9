//! Cancel scopes: the bookkeeping behind `timeout` and `shield`.
//!
//! Every execution context (a green thread, or a plain OS thread) has a
//! [`ScopeStack`]: the timeouts and shields open in it. At each suspension
//! point the context evaluates it to learn the deadline to wake up at and
//! whether to unwind now.
//!
//! # Scopes belong to the stack they were opened on (PEP 789)
//!
//! A generator can yield out of an open `timeout`: its frames, and the scope,
//! stay suspended on the generator's stack while the caller runs on. The
//! caller's frames are *not* inside that timeout, so it must not cancel them.
//! So each scope records which stack it was opened on:
//!
//! - the context's own stack (the green thread's, or the OS thread's), or
//! - a generator's stack, found through the per-thread registry of started
//!   generators ([`GeneratorMeta`]).
//!
//! A generator scope is *active* only while that generator runs. The
//! generator's `yield_` checks a counter of scopes open on its stack (one
//! load, so a plain switch costs nothing extra) and, when it is non-zero,
//! marks them inactive before suspending and active again, innermost in
//! nesting order, when resumed.
//!
//! # Nesting order
//!
//! Each entry has an `order`: a later (inner) scope has a larger one. A shield
//! blocks cancellation from everything outside it: the green thread's own
//! cancellation and every scope with a smaller order. Among expired timeouts
//! that are not blocked, the earliest deadline wins, and a tie goes to the
//! outer scope.

use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::time::Instant;

use crate::cancel::Cause;

/// What a scope does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A timeout: unwind its body once this instant has passed.
    Deadline(Instant),
    /// A shield: defer every cancellation from outside it.
    Shield,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    order: u64,
    /// The generator whose stack the scope is on; null for the context's own stack.
    owner: *const GeneratorMeta,
    active: bool,
    kind: Kind,
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
            ptr::null()
        } else {
            find_generator(sp)
        };
        if let Some(meta) = ptr_ref(owner) {
            meta.open_scopes.set(meta.open_scopes.get() + 1);
        }
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let order = self.bump();
        self.entries.push(Entry {
            id,
            order,
            owner,
            active: true,
            kind,
        });
        id
    }

    fn close(&mut self, id: u64) {
        if let Some(i) = self.entries.iter().rposition(|e| e.id == id) {
            let entry = self.entries.remove(i);
            if let Some(meta) = ptr_ref(entry.owner) {
                meta.open_scopes.set(meta.open_scopes.get() - 1);
            }
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    fn set_active(&mut self, owner: *const GeneratorMeta, active: bool) {
        for i in 0..self.entries.len() {
            if self.entries[i].owner == owner {
                self.entries[i].active = active;
                if active {
                    // Resumed: its scopes are now the innermost ones.
                    self.entries[i].order = self.bump();
                }
            }
        }
    }

    /// Decides what a suspension point at `now` must do. `cancelled` says
    /// whether the green thread itself has been cancelled.
    pub(crate) fn evaluate(&self, now: Instant, cancelled: Option<Cause>) -> Verdict {
        let active = || self.entries.iter().filter(|e| e.active);
        let shield = active()
            .filter(|e| matches!(e.kind, Kind::Shield))
            .map(|e| e.order)
            .max()
            .unwrap_or(0);
        if let Some(cause) = cancelled
            && shield == 0
        {
            return Verdict {
                raise: Some(cause),
                deadline: None,
            };
        }
        let mut verdict = Verdict::default();
        let mut expired: Option<(Instant, u64, u64)> = None;
        for e in active() {
            let Kind::Deadline(at) = e.kind else { continue };
            if e.order < shield {
                continue;
            }
            if at <= now {
                if expired.is_none_or(|(a, o, _)| (at, e.order) < (a, o)) {
                    expired = Some((at, e.order, e.id));
                }
            } else if verdict.deadline.is_none_or(|d| at < d) {
                verdict.deadline = Some(at);
            }
        }
        verdict.raise = expired.map(|(_, _, id)| Cause::Scope(id));
        verdict
    }
}

/// Marks what a generator needs for its scopes to follow it. It lives in the
/// generator's `Co`, on the generator's own stack.
#[derive(Debug, Default)]
pub(crate) struct GeneratorMeta {
    /// Scopes open on this generator's stack. `Co::yield_` reads it on every
    /// yield and does the slow bookkeeping only when it is non-zero.
    pub(crate) open_scopes: Cell<u32>,
    /// Index in this thread's registry, for O(1) removal.
    index: Cell<usize>,
    /// The generator's stack, `(low, high)`.
    range: Cell<(usize, usize)>,
}

impl GeneratorMeta {
    pub(crate) fn new(range: (usize, usize)) -> GeneratorMeta {
        GeneratorMeta {
            open_scopes: Cell::new(0),
            index: Cell::new(usize::MAX),
            range: Cell::new(range),
        }
    }
}

fn ptr_ref<'a>(p: *const GeneratorMeta) -> Option<&'a GeneratorMeta> {
    // SAFETY: registered metas stay alive until `unregister_generator`, which
    // runs before their generator's stack frame ends; scope entries pointing
    // to one are closed before that, since a scope's guard lives on the
    // generator's stack above its Co.
    unsafe { p.as_ref() }
}

thread_local! {
    /// The scope stack of this OS thread itself, for code outside green threads.
    static THREAD: UnsafeCell<Option<ScopeStack>> = const { UnsafeCell::new(None) };
    /// Generators started on this thread and not yet finished.
    static GENERATORS: UnsafeCell<Vec<*const GeneratorMeta>> = const { UnsafeCell::new(Vec::new()) };
}

/// Runs `f` on the current context's scope stack: the running green
/// thread's, or else the OS thread's own.
pub(crate) fn with<R>(f: impl FnOnce(&mut ScopeStack) -> R) -> R {
    let current = crate::runtime::worker::current_scopes();
    if !current.is_null() {
        // SAFETY: `current_scopes` points at the running green thread's stack
        // of scopes, which only this thread touches while the green thread
        // runs; `f` never re-enters this module.
        return f(unsafe { &mut *current });
    }
    THREAD.with(|t| {
        // SAFETY: a thread-local only this thread touches; `f` never re-enters.
        let slot = unsafe { &mut *t.get() };
        let stack = slot.get_or_insert_with(|| {
            ScopeStack::new(stackful_arch::thread_stack_range().unwrap_or((0, 0)))
        });
        f(stack)
    })
}

/// An open scope; closing it is the caller's job (see `open`).
pub(crate) struct Opened(pub(crate) u64);

/// Opens a scope in the current context, on the stack the caller runs on.
/// The caller must call [`close`] with the id on every path, unwinding
/// included.
pub(crate) fn open(kind: Kind) -> Opened {
    let marker = 0u8;
    let sp = ptr::from_ref(&marker) as usize;
    Opened(with(|s| s.open(kind, sp)))
}

/// Closes a scope opened with [`open`].
pub(crate) fn close(scope: Opened) {
    with(|s| s.close(scope.0));
}

/// Registers a generator that is starting on this thread, so scopes opened
/// on its stack can be attributed to it.
pub(crate) fn register_generator(meta: &GeneratorMeta) {
    GENERATORS.with(|g| {
        // SAFETY: thread-local, touched only by this thread, no re-entry.
        let list = unsafe { &mut *g.get() };
        meta.index.set(list.len());
        list.push(meta);
    });
}

/// Removes a generator registered with [`register_generator`].
pub(crate) fn unregister_generator(meta: &GeneratorMeta) {
    GENERATORS.with(|g| {
        // SAFETY: as in `register_generator`.
        let list = unsafe { &mut *g.get() };
        let i = meta.index.get();
        if list.get(i).is_some_and(|&m| ptr::eq(m, meta)) {
            list.swap_remove(i);
            if let Some(moved) = list.get(i).copied().and_then(ptr_ref) {
                moved.index.set(i);
            }
        }
    });
}

/// The registered generator whose stack holds `sp`, or null.
fn find_generator(sp: usize) -> *const GeneratorMeta {
    GENERATORS.with(|g| {
        // SAFETY: as in `register_generator`.
        let list = unsafe { &*g.get() };
        list.iter()
            .copied()
            .find(|&m| {
                let (lo, hi) = ptr_ref(m).map_or((0, 0), |m| m.range.get());
                lo <= sp && sp < hi
            })
            .unwrap_or(ptr::null())
    })
}

/// The slow path of `Co::yield_` when scopes are open on the generator's
/// stack: they stop applying while it is suspended.
#[cold]
pub(crate) fn generator_suspending(meta: &GeneratorMeta) {
    with(|s| s.set_active(meta, false));
}

/// The slow path of `Co::yield_` once the generator runs again.
#[cold]
pub(crate) fn generator_resumed(meta: &GeneratorMeta) {
    with(|s| s.set_active(meta, true));
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
        assert_eq!(s.evaluate(now, None).raise, Some(Cause::Scope(inner)));
        s.close(inner);
        assert_eq!(s.evaluate(now, None).raise, Some(Cause::Scope(outer)));
        let shield = s.open(Kind::Shield, 1);
        let v = s.evaluate(now, Some(Cause::Task(3)));
        assert_eq!(
            v.raise, None,
            "the shield defers both the task and the outer timeout"
        );
        let later = now + Duration::from_secs(1);
        let inside = s.open(Kind::Deadline(later), 1);
        assert_eq!(s.evaluate(now, None).deadline, Some(later));
        s.close(inside);
        s.close(shield);
        assert_eq!(
            s.evaluate(now, Some(Cause::Task(3))).raise,
            Some(Cause::Task(3))
        );
    }
}
