//! The mail component: an sdk gateway that sends an activation email for
//! every `SignedUp` event and a reminder for every fired activation timer.
//!
//! The gateway checkpoints after each delivery, so an SMTP outage only
//! delays mail (retries with back-off, then the circuit breaker) and a
//! restart repeats at most the message in flight. Each message carries a
//! Message-ID derived from the event, so a repeat is recognisable.

use steledb::{EventFilter, RecordedEvent};
use steledb_sdk::limits::TIMER_STREAM_DEFAULT;
use steledb_sdk::{EventCodec, Gateway, GatewayError, Source, TimerEvent};
use uuid::Uuid;

use crate::reminders::{ReminderPayload, REMINDER_TIMER_PREFIX};
use crate::smtp::{Email, SmtpClient};
use crate::user::{UserEvent, USER_STREAM_PREFIX};

/// The gateway's name: its checkpoint row's key.
pub const MAIL_GATEWAY: &str = "mail";
/// The domain of Message-IDs and the EHLO greeting.
pub const MAIL_DOMAIN: &str = "signup.stele.example";

/// Which message an email is, for the receiving side (and tests).
pub const KIND_ACTIVATION: &str = "activation";
pub const KIND_REMINDER: &str = "reminder";

pub struct Mailer {
    smtp: SmtpClient,
    from: String,
    /// Where the links in the messages point (the HTTP API).
    base_url: String,
    users: EventCodec<UserEvent>,
}

impl Mailer {
    pub fn new(smtp: SmtpClient, from: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self { smtp, from: from.into(), base_url: base_url.into(), users: EventCodec::new() }
    }

    /// The message `event` asks for, if any.
    pub fn message_for(&self, event: &RecordedEvent) -> Result<Option<Email>, GatewayError> {
        let permanent = |e: &dyn std::fmt::Display| GatewayError::Permanent(format!("event {}: {e}", event.id));
        if event.stream().starts_with(USER_STREAM_PREFIX) {
            return match self.users.decode_recorded(event).map_err(|e| permanent(&e))? {
                UserEvent::SignedUp { user_id, name, email, .. } => Ok(Some(self.activation(user_id, &name, &email))),
                UserEvent::Activated { .. } => Ok(None),
            };
        }
        if event.stream() != TIMER_STREAM_DEFAULT {
            return Ok(None);
        }
        match TimerEvent::decode(event).map_err(|e| permanent(&e))? {
            TimerEvent::TimerFired { timer_id, payload, .. } if timer_id.starts_with(REMINDER_TIMER_PREFIX) => {
                let payload: ReminderPayload = serde_json::from_value(payload).map_err(|e| permanent(&e))?;
                Ok(Some(self.reminder(&payload)))
            }
            _ => Ok(None),
        }
    }

    fn activation(&self, user_id: Uuid, name: &str, email: &str) -> Email {
        Email {
            from: self.from.clone(),
            to: email.to_owned(),
            subject: "Activate your account".to_owned(),
            message_id: format!("{KIND_ACTIVATION}-{user_id}@{MAIL_DOMAIN}"),
            body: format!(
                "Hello {name},\n\nto activate your account, POST to {}/users/{user_id}/activate\n",
                self.base_url
            ),
        }
    }

    fn reminder(&self, payload: &ReminderPayload) -> Email {
        let ReminderPayload { user_id, name, email } = payload;
        Email {
            from: self.from.clone(),
            to: email.clone(),
            subject: "Reminder: activate your account".to_owned(),
            message_id: format!("{KIND_REMINDER}-{user_id}@{MAIL_DOMAIN}"),
            body: format!(
                "Hello {name},\n\nyour account is not active yet. POST to {}/users/{user_id}/activate\n",
                self.base_url
            ),
        }
    }
}

impl Gateway for Mailer {
    fn name(&self) -> &str {
        MAIL_GATEWAY
    }

    fn source(&self) -> Source {
        let streams = vec![USER_STREAM_PREFIX.to_owned(), TIMER_STREAM_DEFAULT.to_owned()];
        Source::AllFiltered(EventFilter::StreamPrefix(streams))
    }

    fn deliver(&mut self, event: &RecordedEvent) -> Result<(), GatewayError> {
        let Some(email) = self.message_for(event)? else { return Ok(()) };
        self.smtp.send(&email).map_err(|error| {
            let text = format!("{} via {}: {error}", email.message_id, self.smtp.address());
            if error.is_transient() {
                GatewayError::Transient(text)
            } else {
                GatewayError::Permanent(text)
            }
        })
    }
}
