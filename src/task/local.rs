//! Green-thread-local storage: [`task_local!`](crate::task_local) and
//! [`LocalKey`].
//!
//! `thread_local!` is per OS thread, so every green thread of a worker
//! shares one value. A task-local is per green thread: each one gets its own
//! value, made on its first access and dropped when the green thread ends,
//! on the green thread's own stack, before anyone joining it learns its
//! outcome. Code on a plain OS thread gets a value per thread, as with
//! `thread_local!`. A generator has no values of its own: it sees those of
//! the context that resumes it, as a Python generator shares its caller's
//! `contextvars`.
//!
//! # How it is stored
//!
//! Each key takes a process-unique index on its first use. A green thread's
//! header holds one pointer, null until its first access; it then points to
//! a table of values by index. A green thread that never touches a
//! task-local pays nothing but that null pointer. A value is boxed once and
//! never moves, so a reference handed to `with` stays valid while other keys
//! are added. `with` counts its loan of the value: a generator may yield
//! inside `with` and keep the reference past the end of the context that
//! lent it, so a value still lent when its table is dropped is dropped by
//! its last loan instead (see `Value`). Only the green thread itself touches its table, on its home
//! OS thread (a started green thread never leaves it), so values need not be
//! `Send`.

use std::any::Any;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Declares green-thread-local statics: `thread_local!`'s syntax, one value
/// per green thread.
///
/// Each green thread that touches a key gets its own value, made by the
/// initializer on its first access and dropped when the green thread ends
/// (on the green thread, even when it was cancelled, and before a `join` or
/// `gather` of it returns). On a plain OS thread the value is per thread. A
/// generator sees the values of whichever green thread (or thread) resumes
/// it. See [`LocalKey`] for the accessors.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::time::Duration;
///
/// stackful::task_local! {
///     static REQUEST_ID: Cell<u64> = Cell::new(0);
/// }
///
/// let seen = stackful::run(|| {
///     let workers: Vec<_> = (1..=3)
///         .map(|id| {
///             stackful::spawn(move || {
///                 REQUEST_ID.set(id);
///                 stackful::sleep(Duration::from_millis(5)); // the others run
///                 REQUEST_ID.get()
///             })
///         })
///         .collect();
///     stackful::gather(workers).unwrap()
/// });
/// assert_eq!(seen, [1, 2, 3]); // each kept its own
/// ```
#[macro_export]
macro_rules! task_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $crate::task_local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::task_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $(#[$attr])*
        $vis static $name: $crate::task::LocalKey<$t> = {
            fn __stackful_task_local_init() -> $t {
                $init
            }
            $crate::task::LocalKey::new(__stackful_task_local_init)
        };
    };
}

/// A key to a green-thread-local value, declared with
/// [`task_local!`](crate::task_local).
///
/// [`with`](LocalKey::with) lends the calling green thread's value (or the
/// OS thread's, outside green threads), making it first if need be. As with
/// `thread_local!`, the value is shared only by reference: use a `Cell` or
/// `RefCell` to change it, and the shortcuts below for those.
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
    /// The key's index in every table; `UNASSIGNED` until first use.
    index: AtomicUsize,
}

/// A task-local was accessed while the values of its green thread (or
/// thread) were being dropped, from another one's destructor: there is no
/// value to lend then. Returned by [`LocalKey::try_with`].
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessError;

impl fmt::Debug for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessError")
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task-local value accessed while its green thread's task-locals are dropped")
    }
}

impl std::error::Error for AccessError {}

impl<T: 'static> LocalKey<T> {
    /// A key whose values `init` makes. Use [`task_local!`](crate::task_local)
    /// rather than calling this.
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey {
            init,
            index: AtomicUsize::new(UNASSIGNED),
        }
    }

    /// Lends the calling green thread's value to `f`, making it first if
    /// this is its first access.
    ///
    /// # Panics
    ///
    /// If called from the destructor of another task-local while the green
    /// thread's (or thread's) values are being dropped; use
    /// [`try_with`](LocalKey::try_with) there.
    #[track_caller]
    #[inline]
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        match self.try_with(f) {
            Ok(r) => r,
            Err(e) => panic!(
                "{e}: a task-local destructor used another task-local; use `LocalKey::try_with` \
                 there and handle the `AccessError`"
            ),
        }
    }

    /// Like [`with`](LocalKey::with), but returns an error instead of
    /// panicking while the values are being dropped (and on a thread that
    /// is exiting, after its own table is gone).
    #[inline]
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, AccessError> {
        // Before its first use a key's index is `UNASSIGNED`, past the end
        // of every table: the lookup misses and `make` assigns one.
        let value = match lookup(self.index.load(Ordering::Relaxed)) {
            Some(value) => value,
            None => self.make(self.index())?,
        };
        // SAFETY: the slot at `index` holds a boxed `Value<T>` (only this
        // key, whose values are `T`s, uses the index). The box lives while
        // its table does, and past that while it is lent (see `Value`): the
        // guard below counts this loan until `f` returns or unwinds.
        let value = unsafe { &*value.cast::<Value<T>>() };
        value.lent.set(value.lent.get() + 1);
        let loan = Loan(value);
        let r = f(&value.value);
        drop(loan);
        Ok(r)
    }

    /// The slow path of `try_with`: makes the value. The initializer is
    /// user code that may use other keys, or this one: no borrow of the
    /// table is held while it runs.
    #[cold]
    #[inline(never)]
    fn make(&'static self, index: usize) -> Result<*mut (), AccessError> {
        with_table(|table| match table {
            Some(table) if !table.dropping => Ok(()),
            _ => Err(AccessError),
        })?;
        let boxed = Box::into_raw(Box::new(Value {
            lent: Cell::new(0),
            value: (self.init)(),
        }))
        .cast::<()>();
        let stored = with_table(|table| {
            // SAFETY: `index` is this key's, whose values are `T`s, and
            // `boxed` was made just above and is ours.
            table.map(|table| unsafe { table.insert::<T>(index, boxed) })
        });
        match stored {
            Some((value, None)) => Ok(value),
            // `init` made one for this key itself, through a nested access:
            // that one stays (it may be lent already), and ours goes, now
            // that no borrow of the table is held.
            Some((value, Some(spare))) => {
                // SAFETY: `spare` is `boxed`, never shared.
                drop(unsafe { Box::from_raw(spare.cast::<Value<T>>()) });
                Ok(value)
            }
            // The thread is exiting and its table went meanwhile.
            None => {
                // SAFETY: `boxed` was not stored, so it is still ours alone.
                drop(unsafe { Box::from_raw(boxed.cast::<Value<T>>()) });
                Err(AccessError)
            }
        }
    }

    fn index(&'static self) -> usize {
        match self.index.load(Ordering::Relaxed) {
            UNASSIGNED => self.assign_index(),
            i => i,
        }
    }

    #[cold]
    fn assign_index(&'static self) -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mine = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(mine < UNASSIGNED / 2, "too many task-local keys");
        match self
            .index
            .compare_exchange(UNASSIGNED, mine, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => mine,
            Err(theirs) => theirs, // another thread assigned it first
        }
    }
}

/// `LocalKey::index` before the key's first use.
const UNASSIGNED: usize = usize::MAX;

impl<T: 'static> LocalKey<Cell<T>> {
    /// Sets the value (making it first, and then dropping it, if need be).
    #[track_caller]
    pub fn set(&'static self, value: T) {
        self.with(|cell| cell.set(value));
    }

    /// A copy of the value.
    #[track_caller]
    pub fn get(&'static self) -> T
    where
        T: Copy,
    {
        self.with(Cell::get)
    }

    /// Takes the value, leaving `T::default()`.
    #[track_caller]
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(Cell::take)
    }

    /// Replaces the value, returning the old one.
    #[track_caller]
    pub fn replace(&'static self, value: T) -> T {
        self.with(|cell| cell.replace(value))
    }
}

impl<T: 'static> LocalKey<RefCell<T>> {
    /// Lends the value by shared reference.
    ///
    /// # Panics
    ///
    /// If the value is mutably borrowed, as `RefCell::borrow` does.
    #[track_caller]
    pub fn with_borrow<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        self.with(|cell| f(&cell.borrow()))
    }

    /// Lends the value by mutable reference.
    ///
    /// # Panics
    ///
    /// If the value is borrowed, as `RefCell::borrow_mut` does.
    #[track_caller]
    pub fn with_borrow_mut<R>(&'static self, f: impl FnOnce(&mut T) -> R) -> R {
        self.with(|cell| f(&mut cell.borrow_mut()))
    }

    /// Sets the value.
    #[track_caller]
    pub fn set(&'static self, value: T) {
        self.with_borrow_mut(|v| *v = value);
    }

    /// Takes the value, leaving `T::default()`.
    #[track_caller]
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with_borrow_mut(std::mem::take)
    }

    /// Replaces the value, returning the old one.
    #[track_caller]
    pub fn replace(&'static self, value: T) -> T {
        self.with_borrow_mut(|v| std::mem::replace(v, value))
    }
}

impl<T: 'static> fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

/// The values of one context, by key index.
#[derive(Default)]
struct Table {
    /// Each value's box, erased; null where none was made. Lookups read
    /// only this.
    ptrs: Vec<*mut ()>,
    /// How to drop each value, by the same index.
    drops: Vec<Option<unsafe fn(*mut ())>>,
    /// Being destroyed: no more values are lent or made.
    dropping: bool,
}

impl Table {
    /// Stores `boxed`, a `Box<Value<T>>` erased, at `index`, and returns
    /// it; unless a value is there already (made by a nested access from
    /// the initializer): then returns that one, and `boxed` back for the
    /// caller to drop once it holds no borrow of the table.
    ///
    /// # Safety
    ///
    /// `index` must belong to a key whose values are `T`s, and `boxed` must
    /// come from `Box::<Value<T>>::into_raw`.
    unsafe fn insert<T>(&mut self, index: usize, boxed: *mut ()) -> (*mut (), Option<*mut ()>) {
        if self.ptrs.len() <= index {
            self.ptrs.resize(index + 1, std::ptr::null_mut());
            self.drops.resize(index + 1, None);
        }
        let existing = self.ptrs[index];
        if !existing.is_null() {
            return (existing, Some(boxed));
        }
        self.ptrs[index] = boxed;
        self.drops[index] = Some(drop_value::<T>);
        (boxed, None)
    }

    /// Marks the table as being destroyed and takes its values out, for
    /// [`drop_values`]: lookups (which do not check `dropping`) find nothing
    /// from here on, and `make` refuses.
    fn take_for_drop(&mut self) -> Values {
        self.dropping = true;
        Values {
            ptrs: std::mem::take(&mut self.ptrs),
            drops: std::mem::take(&mut self.drops),
        }
    }
}

/// A table's values, taken out to be dropped.
struct Values {
    ptrs: Vec<*mut ()>,
    drops: Vec<Option<unsafe fn(*mut ())>>,
}

impl Values {
    /// Drops every value, each under `catch_unwind`, with no borrow of the
    /// table held (destructors may look keys up: they get an
    /// `AccessError`). Returns the first panic.
    fn drop_all(self) -> Option<Box<dyn Any + Send>> {
        let mut first = None;
        for (ptr, drop) in self.ptrs.into_iter().zip(self.drops) {
            let Some(drop) = drop.filter(|_| !ptr.is_null()) else {
                continue;
            };
            // SAFETY: `ptr` was stored by `insert` with this drop function
            // for its type, and is let go once: the vectors that held it
            // are consumed.
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| unsafe { drop(ptr) }));
            if let Err(payload) = outcome {
                first.get_or_insert(payload);
            }
        }
        first
    }
}

/// A value and its loans. `with` lends it; a generator that yields inside
/// `with` keeps the loan (and its `&T`) on its own stack, and may be resumed
/// after the context that made the value has ended and dropped its table.
/// So a value still lent when its table goes is only marked [`ORPHANED`],
/// and the last loan to end drops it. Generators are not `Send`, so that
/// happens on the value's own OS thread; a generator leaked while it holds
/// a loan leaks the value.
struct Value<T> {
    /// The number of loans, plus [`ORPHANED`] once its table let it go:
    /// one word, so a loan costs one increment and one decrement.
    lent: Cell<usize>,
    value: T,
}

/// In `Value::lent`: its table has let it go.
const ORPHANED: usize = 1 << (usize::BITS - 1);

/// One `with`'s loan of a value; see [`Value`].
struct Loan<'a, T>(&'a Value<T>);

impl<T> Drop for Loan<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let left = self.0.lent.get() - 1;
        self.0.lent.set(left);
        if left == ORPHANED {
            // SAFETY: its table has let it go (`ORPHANED`) and this was its
            // last loan, so nothing else refers to it: it is ours to drop.
            unsafe { drop_orphan(std::ptr::from_ref(self.0).cast_mut()) };
        }
    }
}

/// Drops a value whose last loan ended after its table went.
///
/// # Safety
///
/// `value` must be an orphaned `Box<Value<T>>` with no loan left.
#[cold]
#[inline(never)]
unsafe fn drop_orphan<T>(value: *mut Value<T>) {
    // A panic in its destructor cannot go where the table's would have
    // gone (that context has ended): debug mode reports it. (During an
    // unwind it aborts, as a panic in any destructor does then.)
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract.
        drop(unsafe { Box::from_raw(value) });
    }));
    if let Err(payload) = outcome {
        crate::debug::warn(format_args!(
            "a task-local value, dropped late because a generator held it past the end of its \
             green thread or thread, panicked in its destructor: {}",
            crate::task::panic_message(&*payload).unwrap_or("<non-string payload>")
        ));
        crate::task::raw::discard_payload(payload);
    }
}

/// Drops a `Box<Value<T>>` erased by `Table::insert`, or, while it is lent,
/// leaves that to its last loan (see [`Value`]).
///
/// # Safety
///
/// `ptr` must come from `Box::<Value<T>>::into_raw`, and its table must let
/// it go by this call (once).
unsafe fn drop_value<T>(ptr: *mut ()) {
    let value = ptr.cast::<Value<T>>();
    // SAFETY: per the contract, alive until dropped here or by its last loan.
    let lent = unsafe { &*value }.lent.get();
    if lent > 0 {
        // SAFETY: as above.
        unsafe { &*value }.lent.set(lent | ORPHANED);
        return;
    }
    // SAFETY: per the contract, and not lent: ours alone.
    drop(unsafe { Box::from_raw(value) });
}

/// A green thread's table: the one pointer its header holds for
/// task-locals, null until the first access.
pub(crate) struct Slot(UnsafeCell<Option<Box<Table>>>);

impl Slot {
    pub(crate) const fn new() -> Slot {
        Slot(UnsafeCell::new(None))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A green thread's values are dropped by the green thread as it ends
        // (`drop_current`), which leaves an empty table behind. A table that
        // still holds values belongs to a green thread that never finished
        // on its stack: they may not be `Send`, and this may be another
        // thread, so they are leaked, not dropped.
        if let Some(table) = self.0.get_mut().take()
            && table.ptrs.iter().any(|p| !p.is_null())
        {
            std::mem::forget(table);
        }
    }
}

thread_local! {
    /// The values of this OS thread's own code, outside green threads.
    static THREAD: ThreadTable = const { ThreadTable(UnsafeCell::new(None)) };
}

struct ThreadTable(UnsafeCell<Option<Box<Table>>>);

impl Drop for ThreadTable {
    fn drop(&mut self) {
        if let Some(mut table) = self.0.get_mut().take()
            && let Some(payload) = table.take_for_drop().drop_all()
        {
            crate::debug::warn(format_args!(
                "a task-local's destructor panicked at thread exit: {}",
                crate::task::panic_message(&*payload).unwrap_or("<non-string payload>")
            ));
            crate::task::raw::discard_payload(payload);
        }
    }
}

/// Runs `f` with the calling context's table (made if need be): the running
/// green thread's, or the OS thread's. `None` while the OS thread exits.
#[inline]
fn with_table<R>(f: impl FnOnce(Option<&mut Table>) -> R) -> R {
    let slot = crate::runtime::worker::current_locals();
    if !slot.is_null() {
        // SAFETY: `current_locals` points at the running green thread's slot,
        // which only the green thread touches, on this thread; `f` does not
        // keep the borrow: it ends before any user code runs (see `make`).
        return f(Some(get_or_make(unsafe { &mut *(*slot).0.get() })));
    }
    let mut f = Some(f);
    let done = THREAD.try_with(|t| {
        // SAFETY: a thread-local only this thread touches; see above.
        let table = get_or_make(unsafe { &mut *t.0.get() });
        (f.take().expect("called once"))(Some(table))
    });
    match done {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called"))(None),
    }
}

/// The fast path of `try_with`: the calling context's value at `index`,
/// if it has been made.
#[inline]
fn lookup(index: usize) -> Option<*mut ()> {
    let slot = crate::runtime::worker::current_locals();
    let find = |table: &Option<Box<Table>>| {
        let ptr = *table.as_ref()?.ptrs.get(index)?;
        (!ptr.is_null()).then_some(ptr)
    };
    if !slot.is_null() {
        // SAFETY: `current_locals` points at the running green thread's
        // slot, which only the green thread touches, on this thread; the
        // borrow ends here.
        return find(unsafe { &*(*slot).0.get() });
    }
    // SAFETY: a thread-local only this thread touches; the borrow ends here.
    THREAD
        .try_with(|t| find(unsafe { &*t.0.get() }))
        .ok()
        .flatten()
}

fn get_or_make(slot: &mut Option<Box<Table>>) -> &mut Table {
    slot.get_or_insert_with(Box::default)
}

/// Drops the task-locals of the green thread running now, as it ends, on
/// its own stack: called by its root frame after its body returned or
/// unwound, before its outcome is stored. Inside a shield, so destructors
/// that wait are not cut short by the green thread's cancellation. Returns
/// the first panic of a destructor.
pub(crate) fn drop_current() -> Option<Box<dyn Any + Send>> {
    let slot = crate::runtime::worker::current_locals();
    // SAFETY: as in `with_table`: the running green thread's slot, touched
    // only by it; this borrow ends at once.
    if slot.is_null() || unsafe { (*(*slot).0.get()).is_none() } {
        return None;
    }
    // SAFETY: as above. The table stays in its slot, marked as being
    // dropped, so accesses from the destructors find it and get an
    // `AccessError`. The borrow ends before any destructor runs.
    let values = unsafe { (*(*slot).0.get()).as_deref_mut() }
        .expect("checked above")
        .take_for_drop();
    crate::time::shield(|| values.drop_all())
}
