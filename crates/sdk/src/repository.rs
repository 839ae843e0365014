//! The repository: load, decide, append, with retries, idempotency and
//! snapshots.

use std::collections::VecDeque;

use serde::de::DeserializeOwned;
use serde::Serialize;
use steledb::{AppendResult, ExpectedRevision, RecordedEvent};
use uuid::Uuid;

use crate::codec::{CodecError, EventCodec};
use crate::decider::{Context, Decider};
use crate::limits::{ATTEMPTS_MAX_DEFAULT, COMMANDS_REMEMBERED_MAX_DEFAULT, READ_PAGE_EVENTS};
use crate::snapshot::{
    self, Snapshot, SnapshotConfig, SnapshotError, SnapshotOutcome, SnapshotPolicy, SnapshotUse, StateCodec,
};
use crate::store::{EventStore, StoreError};

/// A command could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError<E> {
    /// The decider refused the command; nothing was written.
    #[error("command rejected: {0:?}")]
    Rejected(E),
    /// Every attempt lost the race for the stream to another writer;
    /// nothing was written.
    #[error("stream '{stream}' changed under each of {attempts} attempts")]
    Conflict { stream: String, attempts: u32 },
    #[error("event at revision {revision} of '{stream}' cannot be decoded: {source}")]
    Decode { stream: String, revision: u64, source: CodecError },
    #[error("a decided event for '{stream}' cannot be encoded: {source}")]
    Encode { stream: String, source: CodecError },
    /// Reading back a command's original events found them gone (the
    /// stream was deleted or truncated since).
    #[error("stream '{stream}' no longer holds revisions {first_revision}..={last_revision}")]
    Missing { stream: String, first_revision: u64, last_revision: u64 },
    #[error("stream '{stream}' starts with '{prefix}', which this repository uses for snapshots")]
    ReservedStreamName { stream: String, prefix: String },
    #[error("snapshots are not configured for this repository")]
    SnapshotsDisabled,
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The snapshot a load starts from (if usable), and what became of it.
type SnapshotStart<S> = (Option<Snapshot<S>>, SnapshotUse);

/// The events of one handled command and where they went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRecord {
    pub command_id: Uuid,
    pub first_revision: u64,
    pub last_revision: u64,
}

/// The last commands handled on a stream, oldest first, at most `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecentCommands {
    records: VecDeque<CommandRecord>,
    max: usize,
}

impl RecentCommands {
    pub fn new(max: usize) -> Self {
        Self { records: VecDeque::new(), max }
    }

    pub fn push(&mut self, record: CommandRecord) {
        if self.max == 0 {
            return;
        }
        if self.records.len() == self.max {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// Notes an event read or written at `revision`: consecutive events of
    /// one command form one record.
    fn note(&mut self, command_id: Option<Uuid>, revision: u64) {
        let Some(command_id) = command_id else { return };
        if let Some(last) = self.records.back_mut() {
            if last.command_id == command_id && last.last_revision.checked_add(1) == Some(revision) {
                last.last_revision = revision;
                return;
            }
        }
        self.push(CommandRecord { command_id, first_revision: revision, last_revision: revision });
    }

    fn find(&self, command_id: Uuid) -> Option<CommandRecord> {
        self.records.iter().rev().find(|r| r.command_id == command_id).copied()
    }

    pub fn records(&self) -> impl Iterator<Item = &CommandRecord> {
        self.records.iter()
    }
}

/// An aggregate as loaded.
#[derive(Debug)]
pub struct Loaded<S> {
    pub state: S,
    /// The last revision folded into `state`; `None` for a stream with no
    /// events. The next append expects exactly this.
    pub revision: Option<u64>,
    pub snapshot: SnapshotUse,
    /// Events read from the stream and folded (those after the snapshot).
    pub events_replayed: u64,
    recent: RecentCommands,
}

impl<S> Loaded<S> {
    fn expected(&self) -> ExpectedRevision {
        self.revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact)
    }

    /// The revision the newest usable snapshot covers.
    fn snapshot_revision(&self) -> Option<u64> {
        match self.snapshot {
            SnapshotUse::Used { revision } => Some(revision),
            _ => None,
        }
    }
}

/// What handling a command did.
#[derive(Debug)]
pub struct Handled<E> {
    /// The command's events: the ones decided now, or, when the command
    /// had been handled before, the ones stored then (decoded anew).
    pub events: Vec<E>,
    /// Where they are; `None` when the decision was no events.
    /// `duplicate` is true when this is the original result of an earlier
    /// handling of the same command id, and nothing was written now.
    pub append: Option<AppendResult>,
    /// The stream's revision the command was decided at (or, for a
    /// duplicate, the one before its original events).
    pub decided_at: Option<u64>,
    /// 1 when the first attempt succeeded; more after conflicts.
    pub attempts: u32,
    pub snapshot: SnapshotOutcome,
}

/// Loads aggregates from an [`EventStore`], handles commands against them
/// with a [`Decider`], and appends the results.
///
/// # Concurrency
/// An append expects the revision the aggregate was loaded at (or "no
/// stream"). When another writer got there first, the repository reloads
/// and decides again, up to `attempts_max` times in all, then gives up
/// with [`RepositoryError::Conflict`]. No update is lost: each decision
/// saw every event before the one it appended after.
///
/// # Idempotency
/// A command is identified by [`Context::command_id`]. Its events get ids
/// derived from it (UUID v5 of command id, stream and index), and its id
/// is kept in each event's metadata. Handling a command id that the
/// stream already holds returns the original events and revisions with
/// `append.duplicate == true`, writes nothing, and does not decide again
/// (a retry after a lost reply must not be refused by a rule the first
/// attempt's own events now trigger, nor applied twice). This holds while
/// the command is among the last `commands_remembered_max` commands that
/// wrote to the stream (snapshots carry that list). Past that window the
/// command is decided again; if the decision is the same number of events,
/// the store's own idempotency check usually still refuses it
/// (`AppendError::DuplicateEventIds`), but that is not guaranteed. A
/// command that decided no events leaves no trace, and its retry decides
/// again.
///
/// # Snapshots
/// See [`SnapshotConfig`]: a snapshot only ever shortens a load; an
/// unusable one is ignored. Streams named with the snapshot prefix are
/// refused, so an aggregate and a snapshot can never share a stream.
/// Deleting an aggregate's stream must delete its snapshot stream too,
/// or a recreated stream would continue from the old snapshot.
pub struct Repository<D: Decider, S> {
    decider: D,
    store: S,
    codec: EventCodec<D::Event>,
    attempts_max: u32,
    commands_remembered_max: usize,
    snapshots: Option<(SnapshotConfig, StateCodec<D::State>)>,
}

impl<D, S> Repository<D, S>
where
    D: Decider,
    D::Event: Serialize + DeserializeOwned,
    S: EventStore,
{
    pub fn new(decider: D, store: S, codec: EventCodec<D::Event>) -> Self {
        Self {
            decider,
            store,
            codec,
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            commands_remembered_max: COMMANDS_REMEMBERED_MAX_DEFAULT,
            snapshots: None,
        }
    }

    /// # Panics
    /// If `attempts_max` is 0.
    pub fn with_attempts_max(mut self, attempts_max: u32) -> Self {
        assert!(attempts_max > 0, "a command needs at least one attempt");
        self.attempts_max = attempts_max;
        self
    }

    pub fn with_commands_remembered_max(mut self, commands_remembered_max: usize) -> Self {
        self.commands_remembered_max = commands_remembered_max;
        self
    }

    pub fn with_snapshots(mut self, config: SnapshotConfig) -> Self
    where
        D::State: Serialize + DeserializeOwned,
    {
        self.snapshots = Some((config, StateCodec::serde()));
        self
    }

    pub fn decider(&self) -> &D {
        &self.decider
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn codec(&self) -> &EventCodec<D::Event> {
        &self.codec
    }

    /// The aggregate's current state: the newest usable snapshot, then
    /// every event after it.
    pub fn load(&self, stream: &str) -> Result<Loaded<D::State>, RepositoryError<D::Error>> {
        self.check_stream(stream)?;
        let (mut state, mut revision, mut recent, snapshot) = match self.load_snapshot(stream)? {
            (Some(s), used) => (s.state, Some(s.revision), s.recent, used),
            (None, used) => {
                (self.decider.initial_state(), None, RecentCommands::new(self.commands_remembered_max), used)
            }
        };
        let mut events_replayed = 0;
        loop {
            let from = revision.map_or(0, |r| r + 1);
            let page = self.store.read_forward(stream, from, READ_PAGE_EVENTS)?;
            for event in &page {
                let (decoded, metadata) = self.decode(stream, event)?;
                state = self.decider.evolve(state, &decoded);
                recent.note(metadata.command_id, event.revision);
                revision = Some(event.revision);
            }
            events_replayed += page.len() as u64;
            // A short page is the end: the store returns `limit` events
            // whenever that many exist.
            if page.len() < READ_PAGE_EVENTS {
                break;
            }
        }
        Ok(Loaded { state, revision, snapshot, events_replayed, recent })
    }

    /// Handles `command` on the aggregate in `stream`: load, decide,
    /// append; see the type's documentation for retries and idempotency.
    /// Every attempt decides with the same `ctx` (same time, same ids).
    pub fn handle(
        &self,
        stream: &str,
        command: &D::Command,
        ctx: &Context,
    ) -> Result<Handled<D::Event>, RepositoryError<D::Error>> {
        for attempt in 1..=self.attempts_max {
            let loaded = self.load(stream)?;
            if let Some(record) = loaded.recent.find(ctx.command_id) {
                return self.original_result(stream, record, attempt);
            }
            let events = self.decider.decide(&loaded.state, command, ctx).map_err(RepositoryError::Rejected)?;
            if events.is_empty() {
                let snapshot = SnapshotOutcome::NotDue;
                return Ok(Handled { events, append: None, decided_at: loaded.revision, attempts: attempt, snapshot });
            }
            let new_events = self
                .codec
                .encode_command(&events, stream, ctx.command_id)
                .map_err(|source| RepositoryError::Encode { stream: stream.to_owned(), source })?;
            match self.store.append(stream, loaded.expected(), new_events) {
                // The same command, decided on the same revision, got there
                // first (a concurrent retry): answer with what it wrote.
                Ok(result) if result.duplicate => {
                    let record = CommandRecord {
                        command_id: ctx.command_id,
                        first_revision: result.first_revision,
                        last_revision: result.last_revision,
                    };
                    return self.original_result(stream, record, attempt);
                }
                Ok(result) => {
                    let snapshot = self.snapshot_after(stream, loaded, &events, ctx.command_id, &result);
                    let decided_at = result.first_revision.checked_sub(1);
                    return Ok(Handled { events, append: Some(result), decided_at, attempts: attempt, snapshot });
                }
                Err(StoreError::WrongExpectedRevision { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(RepositoryError::Conflict { stream: stream.to_owned(), attempts: self.attempts_max })
    }

    /// Takes a snapshot of the aggregate now, whatever the policy. Returns
    /// the revision it covers, or `None` for a stream with no events.
    pub fn snapshot(&self, stream: &str) -> Result<Option<u64>, RepositoryError<D::Error>> {
        let Some((config, codec)) = &self.snapshots else { return Err(RepositoryError::SnapshotsDisabled) };
        let loaded = self.load(stream)?;
        let Some(revision) = loaded.revision else { return Ok(None) };
        if loaded.snapshot_revision() == Some(revision) {
            return Ok(Some(revision));
        }
        let snapshot = Snapshot { revision, state: loaded.state, recent: loaded.recent };
        self.write_snapshot(config, codec, stream, &snapshot)?;
        Ok(Some(revision))
    }

    fn check_stream(&self, stream: &str) -> Result<(), RepositoryError<D::Error>> {
        match &self.snapshots {
            Some((config, _)) if stream.starts_with(&config.stream_prefix) => {
                Err(RepositoryError::ReservedStreamName {
                    stream: stream.to_owned(),
                    prefix: config.stream_prefix.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    fn decode(
        &self,
        stream: &str,
        event: &RecordedEvent,
    ) -> Result<(D::Event, crate::codec::EventMetadata), RepositoryError<D::Error>> {
        self.codec.decode_recorded_with_metadata(event).map_err(|source| RepositoryError::Decode {
            stream: stream.to_owned(),
            revision: event.revision,
            source,
        })
    }

    fn load_snapshot(&self, stream: &str) -> Result<SnapshotStart<D::State>, RepositoryError<D::Error>> {
        let Some((config, codec)) = &self.snapshots else { return Ok((None, SnapshotUse::None)) };
        let Some(event) = self.store.read_last(&config.stream_of(stream))? else {
            return Ok((None, SnapshotUse::None));
        };
        match snapshot::decode(codec, config.schema, self.commands_remembered_max, &event) {
            Ok(snapshot) => {
                let revision = snapshot.revision;
                Ok((Some(snapshot), SnapshotUse::Used { revision }))
            }
            Err(ignored) => Ok((None, SnapshotUse::Ignored(ignored))),
        }
    }

    /// The result of a command already in the stream, read back from it.
    fn original_result(
        &self,
        stream: &str,
        record: CommandRecord,
        attempts: u32,
    ) -> Result<Handled<D::Event>, RepositoryError<D::Error>> {
        let count = (record.last_revision - record.first_revision + 1) as usize;
        let stored = self.store.read_forward(stream, record.first_revision, count)?;
        let missing = || RepositoryError::Missing {
            stream: stream.to_owned(),
            first_revision: record.first_revision,
            last_revision: record.last_revision,
        };
        let (Some(first), Some(last)) = (stored.first(), stored.last()) else { return Err(missing()) };
        if stored.len() != count || first.revision != record.first_revision {
            return Err(missing());
        }
        let events = stored.iter().map(|e| self.decode(stream, e).map(|(event, _)| event)).collect::<Result<_, _>>()?;
        let append = AppendResult {
            first_revision: record.first_revision,
            last_revision: record.last_revision,
            first_position: first.position,
            last_position: last.position,
            duplicate: true,
        };
        let decided_at = record.first_revision.checked_sub(1);
        Ok(Handled { events, append: Some(append), decided_at, attempts, snapshot: SnapshotOutcome::NotDue })
    }

    /// Takes the snapshot the policy asks for after `result`, folding the
    /// just-written events into the state they were decided on.
    fn snapshot_after(
        &self,
        stream: &str,
        loaded: Loaded<D::State>,
        events: &[D::Event],
        command_id: Uuid,
        result: &AppendResult,
    ) -> SnapshotOutcome {
        let Some((config, codec)) = &self.snapshots else { return SnapshotOutcome::NotDue };
        let SnapshotPolicy::EveryEvents(interval) = config.policy else { return SnapshotOutcome::NotDue };
        let covered = loaded.snapshot_revision().map_or(0, |r| r + 1);
        if result.last_revision + 1 - covered < interval {
            return SnapshotOutcome::NotDue;
        }
        let state = self.decider.fold(loaded.state, events);
        let mut recent = loaded.recent;
        for revision in result.first_revision..=result.last_revision {
            recent.note(Some(command_id), revision);
        }
        let snapshot = Snapshot { revision: result.last_revision, state, recent };
        match self.write_snapshot(config, codec, stream, &snapshot) {
            Ok(()) => SnapshotOutcome::Written { revision: result.last_revision },
            Err(error) => SnapshotOutcome::Failed(error),
        }
    }

    fn write_snapshot(
        &self,
        config: &SnapshotConfig,
        codec: &StateCodec<D::State>,
        stream: &str,
        snapshot: &Snapshot<D::State>,
    ) -> Result<(), SnapshotError> {
        let event = snapshot::encode(codec, config.schema, stream, snapshot)?;
        // Any: snapshots of one stream from racing writers are each valid
        // for the revision they name; the newest read wins.
        self.store.append(&config.stream_of(stream), ExpectedRevision::Any, vec![event])?;
        Ok(())
    }
}
