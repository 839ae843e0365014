//! The user query side: a SQLite read model fed by a projection of the
//! user streams, and the queries the HTTP API answers from it.
//!
//! The model lags the log by a poll interval: a user just signed up may
//! not be found yet. Its checkpoint is in the same SQLite transaction as
//! its rows, so after a restart it resumes exactly where it stopped.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use steledb::{EventFilter, RecordedEvent};
use steledb_sdk::{open_database, CodecError, EventCodec, Projection, Source};
use uuid::Uuid;

use crate::user::{normalize_email, UserEvent, USER_STREAM_PREFIX};

/// The projection's name: its checkpoint row's key.
pub const USERS_PROJECTION: &str = "users";

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("read-model database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("user event cannot be decoded: {0}")]
    Decode(#[from] CodecError),
    #[error("stored user id '{0}' is not a UUID")]
    BadId(String),
}

/// Keeps the `users` table.
#[derive(Debug, Default)]
pub struct UsersProjection {
    codec: EventCodec<UserEvent>,
}

impl Projection for UsersProjection {
    type Error = ReadModelError;

    fn name(&self) -> &str {
        USERS_PROJECTION
    }

    fn source(&self) -> Source {
        Source::AllFiltered(EventFilter::StreamPrefix(vec![USER_STREAM_PREFIX.to_owned()]))
    }

    fn init(&mut self, db: &Connection) -> Result<(), ReadModelError> {
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                email TEXT NOT NULL UNIQUE,
                status TEXT NOT NULL,
                signed_up_at_us INTEGER NOT NULL,
                activated_at_us INTEGER
            )",
        )?;
        Ok(())
    }

    fn apply(&mut self, db: &Connection, event: &RecordedEvent) -> Result<(), ReadModelError> {
        match self.codec.decode_recorded(event)? {
            UserEvent::SignedUp { user_id, name, email, signed_up_at_us } => {
                db.execute(
                    "INSERT INTO users (id, name, email, status, signed_up_at_us) VALUES (?1, ?2, ?3, 'pending', ?4)",
                    params![user_id.to_string(), name, email, to_sql(signed_up_at_us)],
                )?;
            }
            UserEvent::Activated { user_id, activated_at_us } => {
                db.execute(
                    "UPDATE users SET status = 'active', activated_at_us = ?2 WHERE id = ?1",
                    params![user_id.to_string(), to_sql(activated_at_us)],
                )?;
            }
        }
        Ok(())
    }

    fn reset(&mut self, db: &Connection) -> Result<(), ReadModelError> {
        db.execute_batch("DROP TABLE IF EXISTS users")?;
        Ok(())
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    /// `pending` until activated, then `active`.
    pub status: String,
    pub signed_up_at_us: u64,
    pub activated_at_us: Option<u64>,
}

/// Queries over the model, on a connection of their own (WAL lets them
/// read while the projection writes).
pub struct UserQueries {
    connection: Mutex<Connection>,
}

const SELECT_USER: &str = "SELECT id, name, email, status, signed_up_at_us, activated_at_us FROM users";

impl UserQueries {
    pub fn open(path: &Path) -> Result<Self, ReadModelError> {
        let connection = open_database(path)?;
        // The projection creates the table too; both may run first.
        UsersProjection::default().init(&connection)?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    pub fn by_id(&self, user_id: Uuid) -> Result<Option<UserView>, ReadModelError> {
        self.one(&format!("{SELECT_USER} WHERE id = ?1"), &user_id.to_string())
    }

    /// The user with `email` (compared in normalized form).
    pub fn by_email(&self, email: &str) -> Result<Option<UserView>, ReadModelError> {
        let Ok(email) = normalize_email(email) else { return Ok(None) };
        self.one(&format!("{SELECT_USER} WHERE email = ?1"), &email)
    }

    fn one(&self, sql: &str, key: &str) -> Result<Option<UserView>, ReadModelError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let row = connection.query_row(sql, [key], raw_user).optional()?;
        row.map(RawUser::into_view).transpose()
    }
}

struct RawUser {
    id: String,
    name: String,
    email: String,
    status: String,
    signed_up_at_us: i64,
    activated_at_us: Option<i64>,
}

fn raw_user(row: &Row<'_>) -> rusqlite::Result<RawUser> {
    Ok(RawUser {
        id: row.get(0)?,
        name: row.get(1)?,
        email: row.get(2)?,
        status: row.get(3)?,
        signed_up_at_us: row.get(4)?,
        activated_at_us: row.get(5)?,
    })
}

impl RawUser {
    fn into_view(self) -> Result<UserView, ReadModelError> {
        let id = Uuid::parse_str(&self.id).map_err(|_| ReadModelError::BadId(self.id.clone()))?;
        Ok(UserView {
            id,
            name: self.name,
            email: self.email,
            status: self.status,
            signed_up_at_us: self.signed_up_at_us as u64,
            activated_at_us: self.activated_at_us.map(|t| t as u64),
        })
    }
}

// SQLite integers are i64; microsecond timestamps stay below 2^63 until the year 294247.
fn to_sql(value_us: u64) -> i64 {
    i64::try_from(value_us).unwrap_or(i64::MAX)
}
