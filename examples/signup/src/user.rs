//! The user aggregate: sign-up rules and activation, as a pure [`Decider`].
//!
//! Email uniqueness is not decided here: no single aggregate sees every
//! address. The command side enforces it in the store, by reserving the
//! address in its own stream in the same atomic append (see
//! [`crate::commands`]).

use serde::{Deserialize, Serialize};
use steledb_sdk::{Context, Decider};
use uuid::Uuid;

/// Streams of user accounts: `user-<uuid>`.
pub const USER_STREAM_PREFIX: &str = "user-";
/// Streams reserving an address: `email-<normalized address>`.
pub const EMAIL_STREAM_PREFIX: &str = "email-";
/// A display name longer than this is refused (it goes into mail headers).
pub const NAME_CHARS_MAX: usize = 100;
/// RFC 5321 limits a forward path to 256 octets including the angle
/// brackets, so an address is at most 254 bytes.
pub const EMAIL_BYTES_MAX: usize = 254;

pub fn user_stream(user_id: Uuid) -> String {
    format!("{USER_STREAM_PREFIX}{user_id}")
}

pub fn email_stream(email_normalized: &str) -> String {
    format!("{EMAIL_STREAM_PREFIX}{email_normalized}")
}

/// The form field a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Name,
    Email,
}

/// Why a field is refused. The serialized names are the API's stable codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldCode {
    Blank,
    TooLong,
    /// Control characters (they would break the mail headers).
    InvalidCharacters,
    Malformed,
    Taken,
}

impl FieldCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blank => "blank",
            Self::TooLong => "too_long",
            Self::InvalidCharacters => "invalid_characters",
            Self::Malformed => "malformed",
            Self::Taken => "taken",
        }
    }
}

/// A sign-up field refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field:?}: {}", code.as_str())]
pub struct FieldError {
    pub field: Field,
    pub code: FieldCode,
}

impl FieldError {
    fn new(field: Field, code: FieldCode) -> Self {
        Self { field, code }
    }
}

/// A sign-up as entered, trimmed, checked, and with the address in the
/// form uniqueness is decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSignUp {
    pub name: String,
    /// Lower-cased: `Ann@Example.org` and `ann@example.org` are one
    /// account. (Strictly the local part is case-sensitive, but no
    /// mail provider in use treats it so, and two accounts differing
    /// only in case are a support problem.)
    pub email: String,
}

/// Checks a sign-up form. Pure: the same input always gives the same answer.
pub fn validate_sign_up(name: &str, email: &str) -> Result<ValidSignUp, FieldError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::new(Field::Name, FieldCode::Blank));
    }
    if name.chars().count() > NAME_CHARS_MAX {
        return Err(FieldError::new(Field::Name, FieldCode::TooLong));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(Field::Name, FieldCode::InvalidCharacters));
    }
    let email = normalize_email(email).map_err(|code| FieldError::new(Field::Email, code))?;
    Ok(ValidSignUp { name: name.to_owned(), email })
}

/// The address as stored and searched: trimmed and lower-cased, or why it
/// is not an address. Deliberately stricter than RFC 5322 (no quoted local
/// parts, no comments, no IP literals): what a sign-up form sees in practice.
pub fn normalize_email(email: &str) -> Result<String, FieldCode> {
    let email = email.trim();
    if email.is_empty() {
        return Err(FieldCode::Blank);
    }
    if email.len() > EMAIL_BYTES_MAX {
        return Err(FieldCode::TooLong);
    }
    if email.chars().any(char::is_control) {
        return Err(FieldCode::InvalidCharacters);
    }
    let (local, domain) = email.split_once('@').ok_or(FieldCode::Malformed)?;
    let local_ok = !local.is_empty()
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !local_ok || !domain_ok {
        return Err(FieldCode::Malformed);
    }
    Ok(email.to_ascii_lowercase())
}

/// The events of a user stream. Variant names are the stored event types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserEvent {
    SignedUp { user_id: Uuid, name: String, email: String, signed_up_at_us: u64 },
    Activated { user_id: Uuid, activated_at_us: u64 },
}

/// The event of an email stream: the address belongs to `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmailEvent {
    EmailReserved { email: String, user_id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    SignUp { user_id: Uuid, name: String, email: String },
    Activate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserState {
    None,
    Pending { user_id: Uuid, email: String },
    Active { user_id: Uuid, email: String },
}

/// Why the user aggregate refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserRefusal {
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("this account already signed up")]
    AlreadySignedUp,
    #[error("no such account")]
    NotFound,
}

/// The user aggregate's rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Users;

impl Decider for Users {
    type State = UserState;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserRefusal;

    fn initial_state(&self) -> UserState {
        UserState::None
    }

    fn decide(&self, state: &UserState, command: &UserCommand, ctx: &Context) -> Result<Vec<UserEvent>, UserRefusal> {
        match (state, command) {
            (UserState::None, UserCommand::SignUp { user_id, name, email }) => {
                let valid = validate_sign_up(name, email)?;
                Ok(vec![UserEvent::SignedUp {
                    user_id: *user_id,
                    name: valid.name,
                    email: valid.email,
                    signed_up_at_us: ctx.now_us,
                }])
            }
            (_, UserCommand::SignUp { .. }) => Err(UserRefusal::AlreadySignedUp),
            (UserState::None, UserCommand::Activate) => Err(UserRefusal::NotFound),
            (UserState::Pending { user_id, .. }, UserCommand::Activate) => {
                Ok(vec![UserEvent::Activated { user_id: *user_id, activated_at_us: ctx.now_us }])
            }
            // Activating twice is a no-op, so a double click is harmless.
            (UserState::Active { .. }, UserCommand::Activate) => Ok(Vec::new()),
        }
    }

    fn evolve(&self, state: UserState, event: &UserEvent) -> UserState {
        match (state, event) {
            (_, UserEvent::SignedUp { user_id, email, .. }) => {
                UserState::Pending { user_id: *user_id, email: email.clone() }
            }
            (
                UserState::Pending { user_id, email } | UserState::Active { user_id, email },
                UserEvent::Activated { .. },
            ) => UserState::Active { user_id, email },
            (UserState::None, UserEvent::Activated { .. }) => UserState::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use steledb_sdk::testkit::given;

    use super::*;

    const NOW_US: u64 = 1_700_000_000_000_000;

    #[test]
    fn field_errors_name_the_field_and_a_stable_code() {
        let cases = [
            ("", "a@b.io", Field::Name, FieldCode::Blank),
            ("   ", "a@b.io", Field::Name, FieldCode::Blank),
            ("Ann\r\nBcc: x", "a@b.io", Field::Name, FieldCode::InvalidCharacters),
            ("Ann", " ", Field::Email, FieldCode::Blank),
            ("Ann", "ann", Field::Email, FieldCode::Malformed),
            ("Ann", "ann@localhost", Field::Email, FieldCode::Malformed),
            ("Ann", "ann@@b.io", Field::Email, FieldCode::Malformed),
            ("Ann", "a..n@b.io", Field::Email, FieldCode::Malformed),
            ("Ann", "ann@-b.io", Field::Email, FieldCode::Malformed),
            ("Ann", "an n@b.io", Field::Email, FieldCode::Malformed),
        ];
        for (name, email, field, code) in cases {
            assert_eq!(validate_sign_up(name, email), Err(FieldError { field, code }), "{name:?} {email:?}");
        }
        let long_name = "n".repeat(NAME_CHARS_MAX + 1);
        assert_eq!(validate_sign_up(&long_name, "a@b.io").unwrap_err().code, FieldCode::TooLong);
        let long_email = format!("{}@b.io", "a".repeat(EMAIL_BYTES_MAX));
        assert_eq!(validate_sign_up("Ann", &long_email).unwrap_err().code, FieldCode::TooLong);
    }

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        let valid = validate_sign_up("  Ann Lee ", " Ann.Lee+x@Example.ORG ").unwrap();
        assert_eq!(valid, ValidSignUp { name: "Ann Lee".into(), email: "ann.lee+x@example.org".into() });
    }

    #[test]
    fn sign_up_then_activate_once() {
        let user_id = Uuid::from_u128(1);
        let sign_up = UserCommand::SignUp { user_id, name: "Ann".into(), email: "ann@example.org".into() };
        let signed_up = UserEvent::SignedUp {
            user_id,
            name: "Ann".into(),
            email: "ann@example.org".into(),
            signed_up_at_us: NOW_US,
        };
        let activated = UserEvent::Activated { user_id, activated_at_us: NOW_US };
        let ctx = Context::new(NOW_US, Uuid::from_u128(2));
        given(Users, []).at(ctx).when(sign_up.clone()).then([signed_up.clone()]);
        given(Users, [signed_up.clone()]).at(ctx).when(sign_up).then_error(UserRefusal::AlreadySignedUp);
        given(Users, [signed_up.clone()]).at(ctx).when(UserCommand::Activate).then([activated.clone()]);
        given(Users, [signed_up, activated]).when(UserCommand::Activate).then([]);
        given(Users, []).when(UserCommand::Activate).then_error(UserRefusal::NotFound);
    }
}
