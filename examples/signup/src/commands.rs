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
    #[error(transparent)]
    Load(RepositoryError<UserRefusal>),
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
    /// append is recognised by the store as a repeat.
    pub fn sign_up(&self, name: &str, email: &str, ctx: &Context) -> Result<SignedUp, SignUpError> {
        let user_id = ctx.id("user");
        let stream = user_stream(user_id);
        let loaded = self.users.load(&stream).map_err(SignUpError::Load)?;
        let command = UserCommand::SignUp { user_id, name: name.to_owned(), email: email.to_owned() };
        let events = match self.users.decider().decide(&loaded.state, &command, ctx) {
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
