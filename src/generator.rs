//! Python's generator protocol on real stacks.
//!
//! A [`Generator<Y, S, R>`](Generator) runs a body on a stack of its own. The
//! body yields values of type `Y` with [`Co::yield_`], receives values of
//! type `S` from [`Generator::send`], and finally returns an `R`: Python's
//! `Generator[Y, S, R]`. Because the stack is real, any ordinary function
//! the body calls can yield, given the `&Co`; nothing needs to be `async`.
//!
//! | Python | stackful |
//! |---|---|
//! | `g = gen()` | `let mut g = Generator::new(\|co, first\| ..)` |
//! | `g.send(None)` (priming) | the first `g.send(s)`: `s` is the body's argument |
//! | `x = yield v` | `let x = co.yield_(v);` |
//! | `g.send(x)` | `g.send(x)` → `Yielded(v)` or `Complete(r)` |
//! | `next(g)`, `for v in g` | `g.resume()`, `for v in g` (when `S = ()`) |
//! | `return r` / `StopIteration(r)` | the body returns `r` → `Complete(r)` |
//! | `g.close()` / `GeneratorExit` | `g.close()`: unwinds the body, destructors run |
//! | `g.throw(exc)` | `g.throw(Box::new(exc))`: a panic at the body's `yield_` |
//! | `r = yield from sub` | `let r = co.yield_from(sub, first);` |
//!
//! # Lifecycle
//!
//! A generator is *unstarted* until the first `send`, *suspended* in a
//! `yield_` after that, and *done* once the body returns, panics (a
//! [thrown](Generator::throw) payload it lets through included) or is
//! closed. Dropping it closes it. Its stack comes from the stack pool and
//! goes back there when it is done, so creating generators in a loop is
//! cheap (see the benchmarks in the README).

use std::any::Any;
use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe, Location};

use corosensei::stack::Stack as _;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use stackful_arch::{DEFAULT_STACK_SIZE, Label, Owner, PooledStack, StackError};

use crate::cancel::{Cancelled, Cause};
use crate::debug;
use crate::scopes::{self, GeneratorMeta};

/// What [`Generator::send`] returns: the next yielded value, or the body's
/// return value once it completes.
///
/// # Examples
///
/// ```
/// use stackful::{Generator, GeneratorState};
///
/// // Yields running totals; returns how many numbers it was sent.
/// let mut totals = Generator::new(|co, first: u32| {
///     let (mut sum, mut next, mut count) = (0, first, 0);
///     while next != 0 {
///         sum += next;
///         count += 1;
///         next = co.yield_(sum);
///     }
///     count
/// });
/// assert_eq!(totals.send(3), GeneratorState::Yielded(3));
/// assert_eq!(totals.send(4), GeneratorState::Yielded(7));
/// match totals.send(0) {
///     GeneratorState::Yielded(sum) => panic!("still running at {sum}"),
///     GeneratorState::Complete(count) => assert_eq!(count, 2),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeneratorState<Y, R> {
    /// The body yielded this value and is suspended.
    Yielded(Y),
    /// The body returned this value; the generator is done.
    Complete(R),
}

/// What the caller sends into the coroutine.
enum Resume<S> {
    /// A value for the pending `yield_` (or the body's first argument).
    Value(S),
    /// Close the generator: the pending `yield_` starts the close unwind,
    /// tagged with this token.
    Close(u64),
    /// Raise this payload at the pending `yield_` (or at the body's start).
    /// Boxed once more so that `Resume` stays as small as it was (a thin
    /// pointer): every switch moves one, and a throw is rare.
    Throw(Box<Box<dyn Any + Send>>),
}

/// How the body ended, as the coroutine reports it to the caller.
enum Outcome<R> {
    Returned(R),
    Closed,
    Panicked(Box<dyn Any + Send>),
}

type Core<Y, S, R> = Coroutine<Resume<S>, Y, Outcome<R>, PooledStack>;

static GENERATOR: Owner = Owner {
    kind: "generator",
    hint: "give it a larger stack with `stackful::generator::Builder::stack_size`",
};

/// The body's handle on its generator: yield through it.
///
/// A `&Co` is passed to the body and may be handed down to any function the
/// body calls, at any depth, which can then yield on the generator's behalf.
/// It cannot leave the generator's thread (`Co` is neither `Send` nor `Sync`),
/// so no other thread or green thread can yield on the generator's behalf:
///
/// ```compile_fail,E0277
/// stackful::run(|| {
///     let mut g = stackful::Generator::new(|co, ()| {
///         stackful::scope(|s| {
///             s.spawn(|| co.yield_(1)); // error: `&Co` is not `Send`
///         });
///     });
///     g.resume();
/// });
/// ```
pub struct Co<Y, S = ()> {
    /// corosensei's yielder, which lives at the top of the generator's stack
    /// for as long as the body runs.
    yielder: *const Yielder<Resume<S>, Y>,
    /// What timeouts opened on this stack need (see `scopes`).
    meta: GeneratorMeta,
}

impl<Y, S> Co<Y, S> {
    /// Suspends the body, hands `value` to the caller of `send`, and returns
    /// the next value sent in. Python's `x = yield value`.
    ///
    /// # Panics
    ///
    /// If a payload is [thrown](Generator::throw) in while suspended here,
    /// this raises it, as `resume_unwind` does. If the generator is closed
    /// while suspended here, this does not return:
    /// it starts the close unwind (see [`Cancelled`]). A body that yields
    /// again while it is being closed (from a destructor, or after a
    /// `catch_unwind` swallowed the unwind) is never resumed: see
    /// [`Generator::close`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::{Generator, GeneratorState};
    ///
    /// let mut running_total = Generator::new(|co, mut n: i32| {
    ///     let mut total = 0;
    ///     loop {
    ///         total += n;
    ///         n = co.yield_(total);
    ///     }
    /// });
    /// assert_eq!(running_total.send(5), GeneratorState::<_, ()>::Yielded(5));
    /// assert_eq!(running_total.send(10), GeneratorState::Yielded(15));
    /// ```
    #[inline]
    #[track_caller]
    pub fn yield_(&self, value: Y) -> S {
        match self.suspend(value) {
            Resume::Value(s) => s,
            Resume::Close(token) => Cancelled::raise(Cause::Close(token)),
            Resume::Throw(payload) => raise_thrown(*payload),
        }
    }

    /// Suspends the body and returns what the caller resumed it with.
    #[inline]
    fn suspend(&self, value: Y) -> Resume<S> {
        // Timeouts and shields opened on this stack stop applying while the
        // generator is suspended (PEP 789); one load when there are none.
        let scoped = self.meta.open_scopes.get() != 0;
        if scoped {
            scopes::generator_suspending(&self.meta);
        }
        // SAFETY: `yielder` was set by the coroutine's entry closure from the
        // reference corosensei passed it, and the body (the only place a
        // `&Co` exists) runs inside that closure's call.
        let resumed = unsafe { &*self.yielder }.suspend(value);
        // Back in the context that resumed it before anything is raised, so
        // a close or a throw unwinds through its scopes where they now are.
        if scoped {
            scopes::generator_resumed(&self.meta);
        }
        resumed
    }

    /// Runs the sub-generator `sub` to completion inside this one and returns
    /// its return value: Python's `r = yield from sub`.
    ///
    /// `sub` is started with `first`. Each value it yields is yielded out of
    /// this generator, and each value sent in is passed on to it, as is a
    /// payload [thrown](Generator::throw) in (PEP 380): `sub` sees it at its
    /// own `yield_`, and only if it lets it propagate does it reach this
    /// body, out of `yield_from`. If this generator is closed meanwhile,
    /// `sub` is closed too (it is dropped during the unwind).
    ///
    /// # Panics
    ///
    /// If `sub` panics, the panic propagates into this body. If `sub` is
    /// already done, this panics as [`Generator::send`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::Generator;
    ///
    /// fn count(n: u32) -> Generator<u32, (), u32> {
    ///     Generator::new(move |co, ()| {
    ///         (0..n).for_each(|i| co.yield_(i));
    ///         n
    ///     })
    /// }
    /// let outer = Generator::new(|co, ()| {
    ///     let a = co.yield_from(count(2), ());
    ///     let b = co.yield_from(count(3), ());
    ///     a + b
    /// });
    /// assert_eq!(outer.collect::<Vec<_>>(), [0, 1, 0, 1, 2]);
    /// ```
    pub fn yield_from<R2>(&self, mut sub: Generator<Y, S, R2>, first: S) -> R2 {
        let mut state = sub.send(first);
        loop {
            match state {
                GeneratorState::Yielded(y) => {
                    state = match self.suspend(y) {
                        Resume::Value(s) => sub.send(s),
                        Resume::Throw(payload) => sub.throw(*payload),
                        Resume::Close(token) => Cancelled::raise(Cause::Close(token)),
                    }
                }
                GeneratorState::Complete(r) => return r,
            }
        }
    }
}

/// Raises a payload thrown in by [`Generator::throw`] at the `yield_` (or
/// the start of the body) where the body is.
#[cold]
fn raise_thrown(payload: Box<dyn Any + Send>) -> ! {
    panic::resume_unwind(payload)
}

impl<Y, S> fmt::Debug for Co<Y, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Co").finish_non_exhaustive()
    }
}

/// The machinery shared by [`Generator`] and [`ScopedGenerator`].
struct Raw<Y, S, R> {
    /// `None` only once `leak` gave up on the body (an ignored close, or a
    /// close under `panic = "abort"`).
    core: Option<Core<Y, S, R>>,
    /// Identity of this generator's close unwind: its unique id.
    token: u64,
    /// The name the stack's overflow label points into; dropped after `core`.
    name: Option<Box<str>>,
    /// Where the generator was created, for diagnostics.
    site: &'static Location<'static>,
    /// A [`ScopedGenerator`]: its body borrows from the caller's frame, so
    /// it may never be leaked (see `leak`).
    scoped: bool,
}

impl<Y, S, R> Raw<Y, S, R> {
    /// Creates the coroutine on a pooled stack.
    ///
    /// # Safety
    ///
    /// The returned value must be dropped (which closes the body) before
    /// anything `body` borrows goes out of scope, and before the types `Y`,
    /// `S` and `R` stop being valid. `'static` bounds prove it for
    /// [`Generator`]; the closure scope of [`scoped`] proves it for
    /// [`ScopedGenerator`], which passes `scoped`: such a generator is never
    /// leaked (the process aborts where a `'static` one would be leaked),
    /// since leaking is sound only for a body that borrows nothing: code it
    /// started (a thread inside a `std::thread::scope` on its stack, say)
    /// could go on using the caller's frame after `scoped` returned.
    unsafe fn new_unchecked<F>(
        builder: Builder,
        site: &'static Location<'static>,
        scoped: bool,
        body: F,
    ) -> Result<Self, StackError>
    where
        F: FnOnce(&Co<Y, S>, S) -> R,
    {
        let stack = PooledStack::take(builder.stack_size)?;
        // A unique id, not the stack's address: a stack is reused, and a
        // close payload kept from an earlier generator must not match.
        let token = scopes::next_generator_id();
        let range = (stack.guard_end(), stack.base().get());
        let name = builder.name.map(String::into_boxed_str);
        let label = Label {
            owner: &GENERATOR,
            name: name.as_deref(),
            site: Some(site),
        };
        // SAFETY: the name lives on the heap, owned by the returned Raw, whose
        // fields drop the coroutine (returning the stack, which clears the
        // label) before the name; a leaked coroutine's name is leaked too
        // (see Raw's Drop). Code only runs on the stack inside Raw's
        // methods, while the name is alive.
        unsafe { stack.set_label(label) };
        let wrapper = move |yielder: &Yielder<Resume<S>, Y>, first: Resume<S>| {
            let first = match first {
                Resume::Value(first) => first,
                // Closed before it started: `body` is dropped unrun.
                Resume::Close(_) => return Outcome::Closed,
                // Thrown into before it started: raised at the start of the
                // body, where nothing can catch it (Python's throw into a
                // just-created generator). `body` is dropped unrun.
                Resume::Throw(payload) => return Outcome::Panicked(*payload),
            };
            let co = Co {
                yielder,
                meta: GeneratorMeta::new(token, range),
            };
            scopes::register_generator(&co.meta);
            let outcome = match panic::catch_unwind(AssertUnwindSafe(|| body(&co, first))) {
                Ok(r) => Outcome::Returned(r),
                Err(p) if Cancelled::cause_of(&*p) == Some(Cause::Close(token)) => Outcome::Closed,
                Err(payload) => Outcome::Panicked(payload),
            };
            scopes::unregister_generator(&co.meta);
            outcome
        };
        // SAFETY: passed on to our caller: the coroutine, and with it the
        // closure's borrows, does not outlive what it borrows.
        let core = unsafe { Coroutine::with_stack_unchecked(stack, wrapper) };
        Ok(Raw {
            core: Some(core),
            token,
            name,
            site,
            scoped,
        })
    }

    #[inline]
    #[track_caller]
    fn send(&mut self, value: S) -> GeneratorState<Y, R> {
        let core = match &mut self.core {
            Some(core) if !core.done() => core,
            _ => panic!(
                "`send` called on a generator that is already done (it returned, panicked or \
                 was closed); check `is_done()` first, a generator cannot be restarted"
            ),
        };
        state(core.resume(Resume::Value(value)))
    }

    fn throw(&mut self, payload: Box<dyn Any + Send>) -> GeneratorState<Y, R> {
        match &mut self.core {
            Some(core) if !core.done() => state(core.resume(Resume::Throw(Box::new(payload)))),
            // Python re-raises an exception thrown into an exhausted
            // generator in the caller; so does this.
            _ => panic::resume_unwind(payload),
        }
    }

    fn is_done(&self) -> bool {
        self.core.as_ref().is_none_or(|core| core.done())
    }

    /// Closes the body; `in_drop` when called from `Drop`, which must not
    /// panic for a body that ignores the close (it leaks it instead).
    fn close(&mut self, in_drop: bool) {
        let Some(core) = &mut self.core else { return };
        if core.done() {
            return;
        }
        if !core.started() {
            if debug::enabled() {
                debug::warn(format_args!(
                    "generator {}created at {} was dropped without ever being started",
                    self.name
                        .as_deref()
                        .map(|n| format!("`{n}` "))
                        .unwrap_or_default(),
                    self.site
                ));
            }
            // Drops the body without running it. corosensei marks the
            // coroutine done only once that drop has returned: if a capture's
            // destructor panics, it stays "unstarted", and a second
            // `force_unwind` (ours from `Drop`, or corosensei's own) would
            // drop the captures again. The drop glue has run for every
            // capture by then (it goes on with the others when one panics),
            // so mark it done without touching the stack.
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| core.force_unwind())) {
                // SAFETY: the coroutine never started, so nothing is on its
                // stack but its initial closure, which has just been dropped
                // (in full: a panic in one capture's destructor does not stop
                // the drop glue from dropping the rest).
                unsafe { core.force_reset() };
                if in_drop && std::thread::panicking() {
                    // As below: a panic out of a destructor during an
                    // unwind would abort. The hook has printed it.
                    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
                    return;
                }
                panic::resume_unwind(payload);
            }
            return;
        }
        if cfg!(panic = "abort") {
            let who = describe(self.name.as_deref(), self.site);
            self.leak(
                &who,
                "was closed while suspended under panic = \"abort\", so its body cannot be \
                 unwound (run generators to completion, or build with panic = \"unwind\")",
            );
            return;
        }

        // A body that yields while being closed (from a destructor, or after
        // a `catch_unwind` swallowed the close unwind) ignores the close,
        // like a Python generator that ignores `GeneratorExit`. It is not
        // resumed again, so nothing loops, and it is not made to panic at
        // that `yield_` either: inside a destructor that runs during the
        // unwind, a panic would abort the process. It is leaked, and the
        // caller of `close` gets the panic (`RuntimeError` in Python).
        match core.resume(Resume::Close(self.token)) {
            CoroutineResult::Yield(_) => {
                let who = describe(self.name.as_deref(), self.site);
                self.leak(&who, "ignored `close` (it yielded while being closed)");
                if !in_drop {
                    panic!(
                        "{who} ignored `close`: it yielded while being closed, so its stack is \
                         leaked with everything on it. A body must not yield from a destructor, \
                         and a `catch_unwind` in the body must re-raise stackful's close unwind \
                         (check `stackful::Cancelled::is(&*payload)`, or use \
                         `stackful::catch_unwind`)"
                    );
                }
            }
            CoroutineResult::Return(Outcome::Returned(_) | Outcome::Closed) => {}
            CoroutineResult::Return(Outcome::Panicked(payload)) => {
                if in_drop && std::thread::panicking() {
                    // A second panic out of a destructor that runs during an
                    // unwind would abort the process. The panic hook has
                    // printed it; drop it (its own drop may panic too).
                    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
                    return;
                }
                panic::resume_unwind(payload)
            }
        }
    }

    /// Gives up on a body that cannot be unwound (it ignored `close`, or
    /// `panic = "abort"`): its stack is leaked with everything on it, as by
    /// `mem::forget`, so nothing on it is freed while still borrowed, and it
    /// never runs again. Warns once. A scoped generator cannot be leaked:
    /// its body borrows from the caller's frame, and what it started (a
    /// thread in a `std::thread::scope` on its stack, say) would go on using
    /// that frame after `scoped` returned; the process stops instead.
    #[cold]
    fn leak(&mut self, who: &str, why: &str) {
        if self.scoped {
            debug::note(format_args!(
                "scoped {who} {why}. Its body borrows from the caller's frame, so its stack \
                 cannot be leaked either: aborting. A body must not yield from a destructor, and \
                 a `catch_unwind` in it must re-raise `stackful::Cancelled` payloads \
                 (`stackful::catch_unwind` does)."
            ));
            std::process::abort();
        }
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            debug::note(format_args!(
                "{who} {why}, so its stack is leaked with everything on it and no destructor \
                 on it runs. (Shown once.)"
            ))
        });
        std::mem::forget(self.core.take());
    }
}

/// What `send` or `throw` returns, given how the resumed body stopped.
#[inline]
fn state<Y, R>(result: CoroutineResult<Y, Outcome<R>>) -> GeneratorState<Y, R> {
    match result {
        CoroutineResult::Yield(y) => GeneratorState::Yielded(y),
        CoroutineResult::Return(Outcome::Returned(r)) => GeneratorState::Complete(r),
        CoroutineResult::Return(Outcome::Panicked(payload)) => panic::resume_unwind(payload),
        // Only `close` resumes with this generator's close token, and a close
        // payload that escapes a body (a `catch_unwind` that kept it) can
        // only be thrown back once that close is over and the generator done.
        CoroutineResult::Return(Outcome::Closed) => {
            unreachable!("a generator reported a close it was never asked for")
        }
    }
}

impl<Y, S, R> Drop for Raw<Y, S, R> {
    fn drop(&mut self) {
        self.close(true);
        if self.core.is_none() {
            // Leaked (see `leak`): its stack is never dropped, so it keeps
            // the overflow label set in `new_unchecked`, which points into
            // the name. Keep the name for as long, as that label's contract
            // asks.
            std::mem::forget(self.name.take());
        }
    }
}

/// Sets the name and stack size of a generator before creating it.
///
/// # Examples
///
/// ```
/// use stackful::generator::Builder;
///
/// let g = Builder::new()
///     .name("parser")
///     .stack_size(1 << 20)
///     .build(|co, ()| co.yield_(1))
///     .expect("could not map the stack");
/// assert_eq!(g.collect::<Vec<_>>(), [1]);
///
/// let err = Builder::new().stack_size(0).build(|co, ()| co.yield_(1)).unwrap_err();
/// assert!(err.to_string().contains("invalid coroutine stack size"));
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with no name and the default stack size,
    /// [`DEFAULT_STACK_SIZE`].
    pub fn new() -> Builder {
        Builder {
            name: None,
            stack_size: DEFAULT_STACK_SIZE,
        }
    }

    /// Names the generator; the name appears in the stack overflow message.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Sets the usable stack size in bytes, rounded up to whole pages. It
    /// must lie between [`MIN_STACK_SIZE`](crate::stack::MIN_STACK_SIZE) and
    /// [`MAX_STACK_SIZE`](crate::stack::MAX_STACK_SIZE); `build` reports an
    /// error otherwise.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Creates the generator. The body does not run until the first `send`.
    ///
    /// # Errors
    ///
    /// A [`StackError`] if the stack size is invalid or the stack cannot be
    /// mapped (for example when `vm.max_map_count` is reached).
    #[track_caller]
    pub fn build<Y, S, R, F>(self, body: F) -> Result<Generator<Y, S, R>, StackError>
    where
        F: FnOnce(&Co<Y, S>, S) -> R + 'static,
        Y: 'static,
        S: 'static,
        R: 'static,
    {
        // SAFETY: the body and Y, S, R are 'static, so nothing they borrow can
        // go out of scope while the generator exists.
        let raw = unsafe { Raw::new_unchecked(self, Location::caller(), false, body)? };
        Ok(Generator {
            raw,
            _not_send: PhantomData,
        })
    }

    /// As [`scoped`], with this builder's settings.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`]; `f` is not called then.
    #[track_caller]
    pub fn scoped<'env, Y, S, R, F, T>(
        self,
        body: F,
        f: impl FnOnce(&mut ScopedGenerator<'env, Y, S, R>) -> T,
    ) -> Result<T, StackError>
    where
        F: FnOnce(&Co<Y, S>, S) -> R + 'env,
    {
        // SAFETY: the generator lives in this frame and `f` only gets a
        // `&mut` to it, so it cannot be moved out or forgotten; it is dropped
        // (closing the body) when this function returns or unwinds, while
        // everything the body borrows for 'env is still alive. `scoped`
        // makes a close that cannot unwind the body abort instead of leak.
        let raw = unsafe { Raw::new_unchecked(self, Location::caller(), true, body)? };
        let mut generator = ScopedGenerator {
            raw,
            _env: PhantomData,
            _not_send: PhantomData,
        };
        Ok(f(&mut generator))
    }
}

/// A generator: a body running on its own stack that yields `Y`, receives
/// `S` and returns `R`. See the [module docs](self) for the protocol.
///
/// # Examples
///
/// ```
/// use stackful::{Generator, GeneratorState};
///
/// let mut consumer = Generator::new(|co, first: Option<u32>| {
///     let mut next = first;
///     let mut served = 0;
///     while let Some(n) = next {
///         served += 1;
///         next = co.yield_(format!("200 OK {n}"));
///     }
///     served
/// });
/// assert_eq!(consumer.send(Some(1)), GeneratorState::Yielded("200 OK 1".to_string()));
/// assert_eq!(consumer.send(None), GeneratorState::Complete(1));
/// ```
///
/// A generator stays on the thread that created it, because values on its
/// stack may be `!Send`:
///
/// ```compile_fail,E0277
/// let g = stackful::Generator::new(|co, ()| co.yield_(1));
/// std::thread::spawn(move || drop(g)); // error: `Generator` is not `Send`
/// ```
pub struct Generator<Y, S = (), R = ()> {
    raw: Raw<Y, S, R>,
    /// Makes the type `!Send` and `!Sync`: its stack may hold `!Send` values.
    _not_send: PhantomData<*mut ()>,
}

impl<Y: 'static, S: 'static, R: 'static> Generator<Y, S, R> {
    /// Creates a generator on a pooled stack of the default size. The body
    /// does not run until the first [`send`](Generator::send), whose value
    /// becomes its second argument.
    ///
    /// # Panics
    ///
    /// If no stack can be mapped; use [`Builder::build`] to handle that error.
    #[track_caller]
    pub fn new<F>(body: F) -> Generator<Y, S, R>
    where
        F: FnOnce(&Co<Y, S>, S) -> R + 'static,
    {
        match Builder::new().build(body) {
            Ok(g) => g,
            Err(e) => panic!("stackful: could not create a generator: {e}"),
        }
    }
}

/// The methods shared by [`Generator`] and [`ScopedGenerator`].
macro_rules! protocol {
    () => {
        /// Resumes the body with `value` and runs it to its next `yield_` or
        /// to its end. The first call starts the body, passing `value` as its
        /// argument (Python's priming `send(None)`).
        ///
        /// # Panics
        ///
        /// If the generator is already done, with a message saying so. If the
        /// body panics, the panic propagates out of `send`, and the generator
        /// is done.
        #[inline]
        #[track_caller]
        pub fn send(&mut self, value: S) -> GeneratorState<Y, R> {
            self.raw.send(value)
        }

        /// Raises `payload` as a panic inside the body, at the `yield_` where
        /// it is suspended, and runs the body on: Python's `g.throw(exc)`.
        /// The payload is `resume_unwind`'s, so any `Box<dyn Any + Send>`.
        ///
        /// The `yield_` unwinds with the payload (no panic message is
        /// printed): destructors run, and the body may catch it with
        /// `catch_unwind` (Python's `except`). If the body then yields
        /// again, `throw` returns [`Yielded`](GeneratorState::Yielded) with
        /// that value; if it returns, [`Complete`](GeneratorState::Complete).
        /// If the panic propagates out of the body, `throw` re-raises it
        /// here with [`std::panic::resume_unwind`], the same payload, and
        /// the generator is done.
        ///
        /// - Unstarted: the payload is raised at the start of the body,
        ///   before its first statement, where nothing can catch it, as in
        ///   Python. The body is dropped unrun, the payload propagates out
        ///   of `throw`, and the generator is done.
        /// - Done: the payload is re-raised in the caller at once, as Python
        ///   does for an exhausted generator.
        /// - Inside [`Co::yield_from`]: the payload goes to the innermost
        ///   sub-generator first, as Python's `yield from` forwards `throw`.
        /// - A [`Cancelled`] payload (one caught from a cancellation, a
        ///   timeout or another generator's close) acts as it did where it
        ///   was caught: [`stackful::catch_unwind`](crate::catch_unwind) in
        ///   the body lets it pass, and once out of the body `throw`
        ///   re-raises it, so its own catcher (the green thread, the
        ///   `timeout`) takes it as before. A throw never counts as a
        ///   [`close`](Self::close) of this generator; closing is `close`'s
        ///   (and drop's) alone.
        ///
        /// Timeouts and shields the body opened are back in force in the
        /// caller's context while the payload unwinds through them, as after
        /// a `send`.
        ///
        /// # Panics
        ///
        /// With `payload` itself (not a new panic) whenever it propagates:
        /// out of the body, into an unstarted body, or into a done
        /// generator. Also if the body panics with another payload while
        /// handling it. Under `panic = "abort"` any throw aborts the
        /// process, as any panic does; so does a throw into a body left
        /// suspended in a destructor during an unwind (which a body must not
        /// do; see `close`), as a panic during an unwind does.
        ///
        /// # Examples
        ///
        /// Python's
        ///
        /// ```python
        /// def reader():
        ///     count = 0
        ///     try:
        ///         while True:
        ///             yield count
        ///             count += 1
        ///     except Stop as e:
        ///         return f"stopped at {count}: {e.why}"
        /// ```
        ///
        /// with `g.throw(Stop("bad input"))`:
        ///
        /// ```
        /// use std::panic::{self, AssertUnwindSafe};
        /// use stackful::{Generator, GeneratorState};
        ///
        /// struct Stop(&'static str);
        ///
        /// let mut reader = Generator::new(|co, ()| {
        ///     let mut count = 0;
        ///     let caught: std::thread::Result<()> =
        ///         // stackful's catch_unwind lets a close of the generator pass.
        ///         stackful::catch_unwind(AssertUnwindSafe(|| loop {
        ///             co.yield_(count);
        ///             count += 1;
        ///         }));
        ///     match caught.unwrap_err().downcast::<Stop>() {
        ///         Ok(stop) => format!("stopped at {count}: {}", stop.0),
        ///         Err(other) => panic::resume_unwind(other), // not ours: re-raise
        ///     }
        /// });
        /// assert_eq!(reader.resume(), GeneratorState::Yielded(0));
        /// assert_eq!(reader.resume(), GeneratorState::Yielded(1));
        /// assert_eq!(
        ///     reader.throw(Box::new(Stop("bad input"))),
        ///     GeneratorState::Complete("stopped at 1: bad input".to_string())
        /// );
        ///
        /// // A payload the body does not catch comes back out of `throw`.
        /// let mut g = Generator::new(|co, ()| co.yield_(1));
        /// g.resume();
        /// let out = panic::catch_unwind(AssertUnwindSafe(|| g.throw(Box::new(404_u16))));
        /// assert_eq!(out.unwrap_err().downcast_ref::<u16>(), Some(&404));
        /// assert!(g.is_done());
        /// ```
        pub fn throw(&mut self, payload: Box<dyn Any + Send>) -> GeneratorState<Y, R> {
            self.raw.throw(payload)
        }

        /// Whether the body has returned, panicked or been closed.
        pub fn is_done(&self) -> bool {
            self.raw.is_done()
        }

        /// Closes the generator: Python's `close()`. A suspended body is
        /// unwound from its `yield_`, so every destructor on its stack runs
        /// exactly once, and its stack goes back to the pool. An unstarted
        /// body is dropped without running. Closing a done generator does
        /// nothing. Dropping a generator closes it.
        ///
        /// A body that catches the close unwind and returns normally is done.
        /// One that yields instead (from a destructor, or after a
        /// `catch_unwind` swallowed the unwind) *ignores* the close, as a
        /// Python generator that ignores `GeneratorExit`: it is never
        /// resumed again, its stack is leaked with everything on it (no
        /// further destructor runs, nothing borrowed is freed under it; a
        /// one-time warning is printed), the generator counts as done, and
        /// `close` panics. Dropping such a generator leaks it the same way,
        /// without the panic. A [`ScopedGenerator`] cannot be leaked (its
        /// body borrows from the caller's frame, and whatever it started
        /// would outlive that), so there the process aborts with a message
        /// instead. (A body left suspended in a destructor during
        /// its unwind also leaves [`std::thread::panicking`] true on this
        /// thread for good, since that unwind never ends.)
        ///
        /// A body must not yield from a destructor. One that does so while
        /// it unwinds from a panic is left suspended in the middle of that
        /// unwind; closing it then raises the close unwind inside that
        /// destructor, which aborts the process, as a panic during an
        /// unwind does.
        ///
        /// A destructor that waits during the close unwind (a lock, a
        /// channel, a sleep) is not cancelled there; see
        /// [the `cancel` module](crate::cancel#destructors-may-wait).
        ///
        /// Under `panic = "abort"` the body cannot be unwound: its stack is
        /// leaked with everything on it (no destructor runs), and a one-time
        /// warning is printed (a [`ScopedGenerator`] aborts). Run generators
        /// to completion there.
        ///
        /// # Panics
        ///
        /// If the body ignores the close (above), with a message naming the
        /// generator and where it was created: Python's `RuntimeError:
        /// generator ignored GeneratorExit`. If the body panics while it is
        /// being closed (after catching the close unwind), the panic
        /// propagates out of `close`. A destructor that panics *during* the
        /// close unwind aborts the process, as any panic during unwinding
        /// does in Rust.
        #[track_caller]
        pub fn close(&mut self) {
            self.raw.close(false)
        }
    };
}

impl<Y, S, R> Generator<Y, S, R> {
    protocol!();
}

impl<Y, R> Generator<Y, (), R> {
    /// [`send`](Generator::send) for generators that receive nothing: Python's `next(g)`.
    #[inline]
    #[track_caller]
    pub fn resume(&mut self) -> GeneratorState<Y, R> {
        self.send(())
    }
}

impl<Y, S, R> fmt::Debug for Generator<Y, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug(&self.raw, "Generator", f)
    }
}

/// Iterates over the yielded values until the body completes; its return
/// value is dropped.
impl<Y, R> Iterator for Generator<Y, (), R> {
    type Item = Y;

    fn next(&mut self) -> Option<Y> {
        next(&mut self.raw)
    }
}

impl<Y, R> FusedIterator for Generator<Y, (), R> {}

/// A generator whose body may borrow from the caller's frame, lent out for
/// the duration of a [`scoped`] call.
///
/// The generator is only ever reachable through a `&mut` inside the scope,
/// and the scope closes it before returning, so nothing it borrows can go
/// out of scope first, even if the `&mut` is leaked with `mem::forget`.
///
/// The lifetime is invariant, so generators of different scopes cannot be
/// swapped:
///
/// ```compile_fail,E0597
/// use stackful::generator::scoped;
///
/// let outer_data = vec![1];
/// scoped(|co, ()| co.yield_(outer_data[0]), |outer| {
///     let inner_data = vec![2];
///     scoped(|co, ()| co.yield_(inner_data[0]), |inner| {
///         std::mem::swap(outer, inner); // error: lifetimes differ
///     });
/// });
/// ```
pub struct ScopedGenerator<'env, Y, S = (), R = ()> {
    raw: Raw<Y, S, R>,
    /// Makes the type invariant in `'env`.
    _env: PhantomData<fn(&'env ()) -> &'env ()>,
    /// Makes the type `!Send` and `!Sync`, like [`Generator`].
    _not_send: PhantomData<*mut ()>,
}

impl<Y, S, R> ScopedGenerator<'_, Y, S, R> {
    protocol!();
}

impl<Y, R> ScopedGenerator<'_, Y, (), R> {
    /// [`send`](ScopedGenerator::send) for generators that receive nothing.
    #[inline]
    #[track_caller]
    pub fn resume(&mut self) -> GeneratorState<Y, R> {
        self.send(())
    }
}

impl<Y, S, R> fmt::Debug for ScopedGenerator<'_, Y, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug(&self.raw, "ScopedGenerator", f)
    }
}

impl<Y, R> Iterator for ScopedGenerator<'_, Y, (), R> {
    type Item = Y;

    fn next(&mut self) -> Option<Y> {
        next(&mut self.raw)
    }
}

impl<Y, R> FusedIterator for ScopedGenerator<'_, Y, (), R> {}

fn next<Y, R>(raw: &mut Raw<Y, (), R>) -> Option<Y> {
    if raw.is_done() {
        return None;
    }
    match raw.send(()) {
        GeneratorState::Yielded(y) => Some(y),
        GeneratorState::Complete(_) => None,
    }
}

/// `generator `name` created at file:line:col`, for messages.
fn describe(name: Option<&str>, site: &Location<'_>) -> String {
    match name {
        Some(n) => format!("generator `{n}` created at {site}"),
        None => format!("generator created at {site}"),
    }
}

fn debug<Y, S, R>(raw: &Raw<Y, S, R>, ty: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let state = match &raw.core {
        None => "leaked",
        Some(core) if core.done() => "done",
        Some(core) if core.started() => "suspended",
        Some(_) => "unstarted",
    };
    f.debug_struct(ty)
        .field("name", &raw.name)
        .field("state", &state)
        .finish()
}

/// Runs `f` with a generator whose body may borrow from the caller's frame,
/// like corosensei's `ScopedCoroutine` or std's `thread::scope`. The
/// generator is closed (its body unwound, destructors run) before `scoped`
/// returns, so no borrow outlives its data.
///
/// # Panics
///
/// If no stack can be mapped; use [`Builder::scoped`] to handle that error.
///
/// # Examples
///
/// ```
/// use stackful::generator::scoped;
///
/// let words = vec!["alpha".to_string(), "beta".to_string()];
/// let lengths = scoped(
///     |co, ()| {
///         for w in &words {
///             co.yield_(w.len()); // borrows `words`, which is not 'static
///         }
///     },
///     |g| g.collect::<Vec<_>>(),
/// );
/// assert_eq!(lengths, [5, 4]);
/// ```
#[track_caller]
pub fn scoped<'env, Y, S, R, F, T>(
    body: F,
    f: impl FnOnce(&mut ScopedGenerator<'env, Y, S, R>) -> T,
) -> T
where
    F: FnOnce(&Co<Y, S>, S) -> R + 'env,
{
    match Builder::new().scoped(body, f) {
        Ok(t) => t,
        Err(e) => panic!("stackful: could not create a generator: {e}"),
    }
}
