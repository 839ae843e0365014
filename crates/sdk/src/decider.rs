//! The decider: the pure heart of an aggregate.

use uuid::Uuid;

use crate::ids::{name_of, uuid_v5, CONTEXT_ID_NAMESPACE};

/// An aggregate as two pure functions: `decide` turns a command and the
/// current state into new events (or a refusal), `evolve` folds one event
/// into the state. Neither may read a clock, a random source or anything
/// else outside its arguments: time and ids come from the [`Context`]. That
/// is what makes a decision reproducible in tests and on a retry.
///
/// `&self` lets a decider carry configuration (limits, prices); it must not
/// carry mutable state.
pub trait Decider {
    type State;
    type Command;
    type Event;
    /// Why a command is refused (a business rule, not an I/O failure).
    type Error;

    /// The state of an aggregate with no events.
    fn initial_state(&self) -> Self::State;

    fn decide(
        &self,
        state: &Self::State,
        command: &Self::Command,
        ctx: &Context,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    fn evolve(&self, state: Self::State, event: &Self::Event) -> Self::State;

    /// Folds `events` into `state`.
    fn fold<'a>(&self, state: Self::State, events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(state, |state, event| self.evolve(state, event))
    }
}

/// What a decision may know beyond the state and the command: the time and
/// the command's id, both chosen by the caller.
///
/// The command id names one intent of the caller: a retry after a lost
/// reply must reuse it, and the repository then answers with the original
/// result instead of deciding again (see [`Repository::handle`](crate::Repository::handle)).
/// Ids a decision needs (a new order line, a transfer) come from
/// [`Context::id`], derived from the command id, so a retried command
/// produces the same ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context {
    /// The caller's time, microseconds since the Unix epoch.
    pub now_us: u64,
    pub command_id: Uuid,
}

impl Context {
    pub fn new(now_us: u64, command_id: Uuid) -> Self {
        Self { now_us, command_id }
    }

    /// A deterministic id for `label`, unique to this command: the same
    /// command id and label always give the same id.
    ///
    /// ```
    /// # use steledb_sdk::Context;
    /// # use uuid::Uuid;
    /// let ctx = Context::new(0, Uuid::from_u128(7));
    /// assert_eq!(ctx.id("line-1"), ctx.id("line-1"));
    /// assert_ne!(ctx.id("line-1"), ctx.id("line-2"));
    /// ```
    pub fn id(&self, label: &str) -> Uuid {
        uuid_v5(CONTEXT_ID_NAMESPACE, &name_of(self.command_id, label.as_bytes(), 0))
    }
}
