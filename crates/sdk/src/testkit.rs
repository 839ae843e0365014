//! Given events, when a command, then events or an error: tests of a
//! decider's rules without a store.
//!
//! ```
//! use steledb_sdk::{testkit::given, Context, Decider};
//!
//! struct Counter;
//! impl Decider for Counter {
//!     type State = u32;
//!     type Command = u32;
//!     type Event = u32;
//!     type Error = String;
//!     fn initial_state(&self) -> u32 { 0 }
//!     fn decide(&self, state: &u32, add: &u32, _: &Context) -> Result<Vec<u32>, String> {
//!         if state + add > 10 { Err("too many".into()) } else { Ok(vec![*add]) }
//!     }
//!     fn evolve(&self, state: u32, added: &u32) -> u32 { state + added }
//! }
//!
//! let state = given(Counter, [3, 4]).when(2).then([2]);
//! assert_eq!(state, 9);
//! given(Counter, [9]).when(2).then_error("too many".to_owned());
//! ```
//!
//! Projections: [`replay`] a recorded log (a list of events) or
//! [`replay_store`] a whole store into a projection's model in an
//! in-memory SQLite database, then query it.

use std::fmt::Debug;

use uuid::Uuid;

use crate::decider::{Context, Decider};

/// The context scenarios decide with unless [`Given::at`] sets one: time 0
/// and a fixed command id, so scenarios are reproducible.
pub const CONTEXT_DEFAULT: Context = Context { now_us: 0, command_id: Uuid::from_u128(0x7e57) };

/// Starts a scenario: the aggregate has had `events`.
pub fn given<D: Decider>(decider: D, events: impl IntoIterator<Item = D::Event>) -> Given<D> {
    Given { decider, events: events.into_iter().collect(), ctx: CONTEXT_DEFAULT }
}

pub struct Given<D: Decider> {
    decider: D,
    events: Vec<D::Event>,
    ctx: Context,
}

impl<D: Decider> Given<D> {
    /// Decides with `ctx` (a time, a command id) instead of the default.
    pub fn at(mut self, ctx: Context) -> Self {
        self.ctx = ctx;
        self
    }

    /// Folds the given events and decides `command`.
    pub fn when(self, command: D::Command) -> When<D> {
        let state = self.decider.fold(self.decider.initial_state(), &self.events);
        let outcome = self.decider.decide(&state, &command, &self.ctx);
        When { decider: self.decider, given: self.events, command, state, outcome }
    }
}

pub struct When<D: Decider> {
    decider: D,
    given: Vec<D::Event>,
    command: D::Command,
    state: D::State,
    outcome: Result<Vec<D::Event>, D::Error>,
}

impl<D: Decider> When<D>
where
    D::Event: Debug + PartialEq,
    D::Command: Debug,
    D::Error: Debug,
{
    /// Asserts the command was accepted with exactly `expected`, and returns
    /// the state after them for further assertions.
    ///
    /// # Panics
    /// With both lists when the events differ, or with the error when the
    /// command was refused.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = D::Event>) -> D::State {
        let expected: Vec<D::Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(actual) if actual == expected => self.decider.fold(self.state, &actual),
            Ok(actual) => panic!(
                "{}\nexpected events: {expected:#?}\n  actual events: {actual:#?}",
                scenario(&self.given, &self.command)
            ),
            Err(error) => panic!(
                "{}\nexpected events: {expected:#?}\n but was refused: {error:#?}",
                scenario(&self.given, &self.command)
            ),
        }
    }

    /// Asserts the command was refused with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: D::Error)
    where
        D::Error: PartialEq,
    {
        match self.outcome {
            Err(actual) if actual == expected => {}
            Err(actual) => panic!(
                "{}\nexpected error: {expected:#?}\n  actual error: {actual:#?}",
                scenario(&self.given, &self.command)
            ),
            Ok(events) => panic!(
                "{}\nexpected error: {expected:#?}\nbut was accepted with events: {events:#?}",
                scenario(&self.given, &self.command)
            ),
        }
    }

    /// Asserts the command was refused with an error `matches` accepts
    /// (for errors without `PartialEq`).
    #[track_caller]
    pub fn then_error_matches(self, description: &str, matches: impl FnOnce(&D::Error) -> bool) {
        match self.outcome {
            Err(actual) if matches(&actual) => {}
            Err(actual) => panic!(
                "{}\nexpected an error: {description}\n      actual error: {actual:#?}",
                scenario(&self.given, &self.command)
            ),
            Ok(events) => panic!(
                "{}\nexpected an error: {description}\nbut was accepted with events: {events:#?}",
                scenario(&self.given, &self.command)
            ),
        }
    }
}

fn scenario<E: Debug, C: Debug>(given: &[E], command: &C) -> String {
    format!("given events: {given:#?}\nwhen command: {command:#?}")
}

/// Applies `events` (those the projection's source matches, in the order
/// given) to a fresh model in an in-memory SQLite database, in one
/// transaction, and returns the database for assertions.
///
/// ```
/// # use steledb_sdk::Projection;
/// # struct Counts;
/// # impl Projection for Counts {
/// #     type Error = rusqlite::Error;
/// #     fn name(&self) -> &str { "counts" }
/// #     fn init(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> {
/// #         db.execute_batch("CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)")
/// #     }
/// #     fn apply(&mut self, db: &rusqlite::Connection, event: &steledb::RecordedEvent) -> rusqlite::Result<()> {
/// #         db.execute("INSERT INTO counts VALUES (?1, 1) ON CONFLICT(stream) DO UPDATE SET n = n + 1", [event.stream()])?;
/// #         Ok(())
/// #     }
/// #     fn reset(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> { db.execute_batch("DROP TABLE counts") }
/// # }
/// use steledb::{RecordedEvent, RecordedEventParts, Uuid};
/// use steledb_sdk::testkit::{query_i64, replay};
///
/// let event = |stream, position| RecordedEvent::new(RecordedEventParts {
///     id: Uuid::new_v4(), stream, revision: 0, position, event_type: "Placed",
///     content_type: "application/json", data: b"{}", metadata: b"", recorded_at_us: 0,
/// });
/// let db = replay(Counts, [event("order-1", 0), event("order-1", 100), event("order-2", 200)])?;
/// assert_eq!(query_i64(&db, "SELECT n FROM counts WHERE stream = 'order-1'")?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "sqlite")]
pub fn replay<P: crate::Projection>(
    mut projection: P,
    events: impl IntoIterator<Item = steledb::RecordedEvent>,
) -> Result<rusqlite::Connection, crate::ProjectionError> {
    use crate::ProjectionError;
    let mut connection = rusqlite::Connection::open_in_memory()?;
    let transaction = connection.transaction()?;
    projection.init(&transaction).map_err(|e| ProjectionError::setup(projection.name(), "create", e))?;
    let source = projection.source();
    for event in events.into_iter().filter(|e| source.matches(e)) {
        projection.apply(&transaction, &event).map_err(|e| ProjectionError::apply(projection.name(), &event, e))?;
    }
    transaction.commit()?;
    Ok(connection)
}

/// Runs `projection` over everything in `store` into a fresh in-memory
/// SQLite database (the real runner, batches and checkpoint included) and
/// returns the database for assertions.
#[cfg(feature = "sqlite")]
pub fn replay_store<P: crate::Projection>(
    projection: P,
    store: &dyn crate::EventStore,
) -> Result<rusqlite::Connection, crate::ProjectionError> {
    let mut runner = crate::ProjectionRunner::new(store, rusqlite::Connection::open_in_memory()?, projection)?;
    runner.run_until_caught_up()?;
    Ok(runner.into_connection())
}

/// The single integer a query returns (a count, a sum): for assertions.
#[cfg(feature = "sqlite")]
pub fn query_i64(connection: &rusqlite::Connection, sql: &str) -> Result<i64, rusqlite::Error> {
    connection.query_row(sql, [], |row| row.get(0))
}
