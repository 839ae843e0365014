//! SQLite plumbing shared by projections and consumers: opening a database
//! the way read models want it, and the checkpoint table.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::consumer::{Checkpoint, CheckpointError, CheckpointStore, CHECKPOINT_TABLE};

/// Opens (or creates) a read-model database.
///
/// WAL with `synchronous=NORMAL`: a power loss may drop the last few
/// committed transactions, but never splits one, and the checkpoint is in
/// the same transaction as the model. A dropped transaction is therefore
/// replayed from the log: durability of the model is not needed, only
/// atomicity, so paying an fsync per batch would buy nothing.
pub fn open_database(path: impl AsRef<Path>) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    // Readers (an HTTP API over the model) and the runner share the file.
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(connection)
}

pub(crate) fn create_checkpoint_table(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
            name TEXT PRIMARY KEY,
            after_position INTEGER,
            next_revision INTEGER NOT NULL,
            last_event_position INTEGER,
            events_handled INTEGER NOT NULL
        )"
    ))
}

// SQLite integers are i64; positions and counts stay far below 2^63.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).expect("checkpoint values are below 2^63")
}

pub(crate) fn load_checkpoint(connection: &Connection, name: &str) -> Result<Option<Checkpoint>, rusqlite::Error> {
    connection
        .query_row(
            &format!(
                "SELECT after_position, next_revision, last_event_position, events_handled
                 FROM {CHECKPOINT_TABLE} WHERE name = ?1"
            ),
            params![name],
            |row| {
                Ok(Checkpoint {
                    after_position: row.get::<_, Option<i64>>(0)?.map(|p| p as u64),
                    next_revision: row.get::<_, i64>(1)? as u64,
                    last_event_position: row.get::<_, Option<i64>>(2)?.map(|p| p as u64),
                    events_handled: row.get::<_, i64>(3)? as u64,
                })
            },
        )
        .optional()
}

pub(crate) fn save_checkpoint(
    connection: &Connection,
    name: &str,
    checkpoint: &Checkpoint,
) -> Result<(), rusqlite::Error> {
    connection.execute(
        &format!(
            "INSERT INTO {CHECKPOINT_TABLE} (name, after_position, next_revision, last_event_position, events_handled)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET after_position = ?2, next_revision = ?3,
                 last_event_position = ?4, events_handled = ?5"
        ),
        params![
            name,
            checkpoint.after_position.map(to_sql),
            to_sql(checkpoint.next_revision),
            checkpoint.last_event_position.map(to_sql),
            to_sql(checkpoint.events_handled)
        ],
    )?;
    Ok(())
}

pub(crate) fn delete_checkpoint(connection: &Connection, name: &str) -> Result<(), rusqlite::Error> {
    connection.execute(&format!("DELETE FROM {CHECKPOINT_TABLE} WHERE name = ?1"), params![name])?;
    Ok(())
}

/// Checkpoints in a SQLite database (for process managers and gateways;
/// projections keep theirs in their own model's database).
pub struct SqliteCheckpoints {
    connection: Connection,
}

impl SqliteCheckpoints {
    /// Opens the database at `path` (see [`open_database`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        Self::new(open_database(path)?)
    }

    pub fn new(connection: Connection) -> Result<Self, CheckpointError> {
        create_checkpoint_table(&connection)?;
        Ok(Self { connection })
    }
}

impl CheckpointStore for SqliteCheckpoints {
    fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(load_checkpoint(&self.connection, name)?)
    }
    fn save(&mut self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        Ok(save_checkpoint(&self.connection, name, checkpoint)?)
    }
}
