//! The user command side: sign-up and activation, written to the log.
//!
//! Sign-up writes two streams in one atomic `append_multi`: the account
//! (`user-<id>`, new) and the address reservation (`email-<address>`,
//! expected not to exist). The store decides the race: of two sign-ups
//! with one address, exactly one reservation finds "no stream"; the other
//! append fails whole, so no account exists without its address.

use std::sync::Arc;

use steledb::{ExpectedRevision, StreamAppend};
use steledb_sdk::{CodecError, Context, Decider, EventCodec, EventStore, Repository, RepositoryError, StoreError};
use uuid::Uuid;

use crate::user::{
    email_stream, user_stream, EmailEvent, Field, FieldCode, FieldError, UserCommand, UserEvent, UserRefusal, Users,
};

/// A sign-up was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    #[error("sign-up refused: {0}")]
    Field(FieldError),
    #[error("the generated account stream already exists (a user id was reused)")]
    AccountExists,
    #[error("encoding the sign-up events failed: {0}")]
    Encode(#[from] CodecError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An activation was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("no account {user_id}")]
    NotFound { user_id: Uuid },
    #[error(transparent)]
    Repository(RepositoryError<UserRefusal>),
}

/// An account just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUp {
    pub user_id: Uuid,
    pub email: String,
    /// True when this command id had already been recorded (a retry).
    pub duplicate: bool,
}

/// Handles user commands against the store.
pub struct UserCommands {
    users: Repository<Users, Arc<dyn EventStore>>,
    emails: EventCodec<EmailEvent>,
}

impl UserCommands {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { users: Repository::new(Users, store, EventCodec::new()), emails: EventCodec::new() }
    }

    /// Signs a user up. The user id is derived from the command id, so a
    /// retry of one command (same id) names the same account and its
    /// append is recognised by the store as a repeat (`duplicate`).
    ///
    /// The command is decided against a new account without reading the
    /// stream: the `NoStream` expectation is the check that it is new, and
    /// only it tells a retry (same event ids, answered as a duplicate) from
    /// a reused id. Deciding against the loaded account would refuse the
    /// retry as "already signed up" before the store could recognise it.
    pub fn sign_up(&self, name: &str, email: &str, ctx: &Context) -> Result<SignedUp, SignUpError> {
        let user_id = ctx.id("user");
        let stream = user_stream(user_id);
        let decider = self.users.decider();
        let command = UserCommand::SignUp { user_id, name: name.to_owned(), email: email.to_owned() };
        let events = match decider.decide(&decider.initial_state(), &command, ctx) {
            Ok(events) => events,
            Err(UserRefusal::Field(error)) => return Err(SignUpError::Field(error)),
            Err(UserRefusal::AlreadySignedUp | UserRefusal::NotFound) => return Err(SignUpError::AccountExists),
        };
        let Some(UserEvent::SignedUp { email, .. }) = events.first() else {
            unreachable!("a sign-up decides exactly one SignedUp event")
        };
        let email = email.clone();
        let reservation_stream = email_stream(&email);
        let account = self.users.codec().encode_command(&events, &stream, ctx.command_id)?;
        let reserved = [EmailEvent::EmailReserved { email: email.clone(), user_id }];
        let reservation = self.emails.encode_command(&reserved, &reservation_stream, ctx.command_id)?;
        let parts = vec![
            StreamAppend::new(&stream, ExpectedRevision::NoStream, account),
            StreamAppend::new(&reservation_stream, ExpectedRevision::NoStream, reservation),
        ];
        match self.users.store().append_multi(parts) {
            Ok(results) => Ok(SignedUp { user_id, email, duplicate: results.iter().all(|r| r.duplicate) }),
            Err(StoreError::WrongExpectedRevision { stream: failed, .. }) if failed == reservation_stream => {
                Err(SignUpError::Field(FieldError { field: Field::Email, code: FieldCode::Taken }))
            }
            Err(StoreError::WrongExpectedRevision { .. }) => Err(SignUpError::AccountExists),
            Err(other) => Err(other.into()),
        }
    }

    /// Activates an account (a no-op when it is already active).
    pub fn activate(&self, user_id: Uuid, ctx: &Context) -> Result<(), ActivateError> {
        match self.users.handle(&user_stream(user_id), &UserCommand::Activate, ctx) {
            Ok(_) => Ok(()),
            Err(RepositoryError::Rejected(UserRefusal::NotFound)) => Err(ActivateError::NotFound { user_id }),
            Err(other) => Err(ActivateError::Repository(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use steledb::Store;

    use super::*;

    const NOW_US: u64 = 1_700_000_000_000_000;

    fn commands(dir: &std::path::Path) -> (UserCommands, Arc<dyn EventStore>) {
        let store: Arc<dyn EventStore> = Arc::new(Store::open(dir).unwrap());
        (UserCommands::new(Arc::clone(&store)), store)
    }

    #[test]
    fn a_retried_sign_up_is_answered_as_a_duplicate_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (commands, store) = commands(dir.path());
        let ctx = Context::new(NOW_US, Uuid::from_u128(7));

        let first = commands.sign_up("Ann", "ann@example.org", &ctx).unwrap();
        assert!(!first.duplicate);
        let position = store.last_position().unwrap();
        let retry = commands.sign_up("Ann", "ann@example.org", &ctx).unwrap();

        assert_eq!(retry, SignedUp { duplicate: true, ..first.clone() });
        assert_eq!(store.last_position().unwrap(), position, "the retry wrote nothing");
        assert_eq!(store.read_forward(&user_stream(first.user_id), 0, 10).unwrap().len(), 1);
        assert_eq!(store.read_forward(&email_stream("ann@example.org"), 0, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_reused_command_id_with_another_address_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (commands, store) = commands(dir.path());
        let ctx = Context::new(NOW_US, Uuid::from_u128(7));
        commands.sign_up("Ann", "ann@example.org", &ctx).unwrap();
        let position = store.last_position().unwrap();

        let reused = commands.sign_up("Ann", "other@example.org", &ctx);

        assert!(matches!(reused, Err(SignUpError::AccountExists)), "{reused:?}");
        assert_eq!(store.last_position().unwrap(), position, "nothing was written");
        assert!(store.read_forward(&email_stream("other@example.org"), 0, 10).unwrap().is_empty());
    }

    #[test]
    fn a_second_account_for_a_taken_address_gets_a_field_error() {
        let dir = tempfile::tempdir().unwrap();
        let (commands, _store) = commands(dir.path());
        commands.sign_up("Ann", "ann@example.org", &Context::new(NOW_US, Uuid::from_u128(1))).unwrap();

        let second = commands.sign_up("Bob", "ann@example.org", &Context::new(NOW_US, Uuid::from_u128(2)));

        let taken = FieldError { field: Field::Email, code: FieldCode::Taken };
        assert!(matches!(second, Err(SignUpError::Field(ref e)) if *e == taken), "{second:?}");
    }
}
