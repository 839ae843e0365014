//! Snapshots: an aggregate's state at a revision, so a load reads only the
//! events after it.
//!
//! A snapshot is an ordinary event in the stream `<prefix><stream>`
//! (default prefix `snapshot-`), type `Snapshot`, content JSON:
//!
//! ```text
//! metadata  {"format":1,"schema":<the application's state schema version>}
//! data      {"revision":41,"state":<the state as serde JSON>,
//!            "commands":[["<command id>",40,41], ...]}
//! ```
//!
//! `revision` is the last stream revision the state includes; `commands`
//! are the recently handled command ids with the revisions their events
//! got, so idempotent retries keep working for commands older than the
//! snapshot. `format` versions this envelope (ours), `schema` the state
//! (the application's: bump it whenever `State`'s shape or `evolve`
//! changes meaning). A snapshot is only a cache: one whose format or
//! schema is not exactly the current one, or that fails to decode, is
//! ignored and the stream is replayed in full, so it can never produce a
//! wrong state, only a slower load.
//!
//! Why JSON: the state already has serde derives; a snapshot is written
//! once per N events, so its size is amortised; and it stays readable with
//! `stele read` and the HTTP API. A binary codec would add a dependency
//! for a saving that only matters for very large states.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steledb::{NewEvent, RecordedEvent, CONTENT_TYPE_JSON};
use uuid::Uuid;

use crate::ids::{name_of, uuid_v5, SNAPSHOT_ID_NAMESPACE};
use crate::limits::SNAPSHOT_STREAM_PREFIX_DEFAULT;
use crate::repository::{CommandRecord, RecentCommands};
use crate::store::StoreError;

/// Version of the snapshot envelope described above.
pub const SNAPSHOT_FORMAT: u32 = 1;
pub const SNAPSHOT_EVENT_TYPE: &str = "Snapshot";

/// When the repository takes snapshots by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Only through [`Repository::snapshot`](crate::Repository::snapshot).
    OnDemand,
    /// After an append that leaves at least this many events newer than
    /// the snapshot the command was decided on.
    EveryEvents(u64),
}

/// How a repository snapshots its aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConfig {
    pub policy: SnapshotPolicy,
    /// The application's version of its state's shape and meaning.
    pub schema: u32,
    pub stream_prefix: String,
}

impl SnapshotConfig {
    /// # Panics
    /// If `events` is 0: a snapshot after every 0 events means nothing.
    pub fn every_events(events: u64, schema: u32) -> Self {
        assert!(events > 0, "snapshot interval must be at least one event");
        Self { policy: SnapshotPolicy::EveryEvents(events), ..Self::on_demand(schema) }
    }

    pub fn on_demand(schema: u32) -> Self {
        Self { policy: SnapshotPolicy::OnDemand, schema, stream_prefix: SNAPSHOT_STREAM_PREFIX_DEFAULT.to_owned() }
    }

    pub fn with_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = prefix.into();
        self
    }

    pub fn stream_of(&self, stream: &str) -> String {
        format!("{}{stream}", self.stream_prefix)
    }
}

/// What a load did with the newest snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotUse {
    /// There was none (or snapshots are not configured).
    None,
    /// The state started from the snapshot of this revision.
    Used { revision: u64 },
    /// The snapshot was ignored and the stream replayed from the start.
    Ignored(SnapshotIgnored),
}

/// Why a snapshot was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotIgnored {
    /// Written by another envelope format or state schema than the current.
    UnknownVersion { format: u32, schema: u32 },
    /// The versions matched but the content did not decode.
    Undecodable { reason: String },
}

/// Writing a snapshot failed. The command it followed is unaffected.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("serializing the state failed: {0}")]
    Encode(serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happened to the snapshot after a command.
#[derive(Debug)]
pub enum SnapshotOutcome {
    /// Not due under the policy (or snapshots are not configured).
    NotDue,
    Written {
        revision: u64,
    },
    /// The command succeeded; only the snapshot is missing, and the next
    /// due one replaces it.
    Failed(SnapshotError),
}

/// A decoded snapshot.
pub(crate) struct Snapshot<S> {
    pub revision: u64,
    pub state: S,
    pub recent: RecentCommands,
}

/// The state's serde functions, captured where `S: Serialize +
/// DeserializeOwned` is known so the repository needs no such bound
/// unless snapshots are configured.
pub(crate) struct StateCodec<S> {
    pub encode: fn(&S) -> Result<Value, serde_json::Error>,
    pub decode: fn(Value) -> Result<S, serde_json::Error>,
}

impl<S: Serialize + DeserializeOwned> StateCodec<S> {
    pub fn serde() -> Self {
        Self { encode: |state| serde_json::to_value(state), decode: serde_json::from_value }
    }
}

#[derive(Serialize, Deserialize)]
struct Versions {
    format: u32,
    schema: u32,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    revision: u64,
    state: Value,
    commands: Vec<(String, u64, u64)>,
}

pub(crate) fn encode<S>(
    codec: &StateCodec<S>,
    schema: u32,
    stream: &str,
    snapshot: &Snapshot<S>,
) -> Result<NewEvent, SnapshotError> {
    let commands =
        snapshot.recent.records().map(|r| (r.command_id.to_string(), r.first_revision, r.last_revision)).collect();
    let state = (codec.encode)(&snapshot.state).map_err(SnapshotError::Encode)?;
    let envelope = Envelope { revision: snapshot.revision, state, commands };
    let data = serde_json::to_vec(&envelope).map_err(SnapshotError::Encode)?;
    let metadata = serde_json::to_vec(&Versions { format: SNAPSHOT_FORMAT, schema }).map_err(SnapshotError::Encode)?;
    // Derived from what the snapshot covers, so writing the same snapshot
    // twice is recognised by the store as a retry.
    let label = format!("{stream}@{}", snapshot.revision);
    let id = uuid_v5(SNAPSHOT_ID_NAMESPACE, &name_of(Uuid::nil(), label.as_bytes(), schema));
    Ok(NewEvent::json(id, SNAPSHOT_EVENT_TYPE, data).with_metadata(metadata))
}

pub(crate) fn decode<S>(
    codec: &StateCodec<S>,
    schema: u32,
    commands_remembered_max: usize,
    event: &RecordedEvent,
) -> Result<Snapshot<S>, SnapshotIgnored> {
    let undecodable = |reason: String| SnapshotIgnored::Undecodable { reason };
    let (event_type, content_type) = (event.event_type(), event.content_type());
    if event_type != SNAPSHOT_EVENT_TYPE || content_type != CONTENT_TYPE_JSON {
        return Err(undecodable(format!("an event of type '{event_type}' ({content_type}) is not a snapshot")));
    }
    let versions: Versions =
        serde_json::from_slice(event.metadata()).map_err(|e| undecodable(format!("metadata: {e}")))?;
    if versions.format != SNAPSHOT_FORMAT || versions.schema != schema {
        return Err(SnapshotIgnored::UnknownVersion { format: versions.format, schema: versions.schema });
    }
    let envelope: Envelope = serde_json::from_slice(event.data()).map_err(|e| undecodable(e.to_string()))?;
    let state = (codec.decode)(envelope.state).map_err(|e| undecodable(format!("state: {e}")))?;
    let mut recent = RecentCommands::new(commands_remembered_max);
    for (id, first_revision, last_revision) in envelope.commands {
        let command_id = Uuid::parse_str(&id).map_err(|e| undecodable(format!("command id: {e}")))?;
        if first_revision > last_revision || last_revision > envelope.revision {
            return Err(undecodable(format!("command {id} has revisions {first_revision}..={last_revision}")));
        }
        recent.push(CommandRecord { command_id, first_revision, last_revision });
    }
    Ok(Snapshot { revision: envelope.revision, state, recent })
}
