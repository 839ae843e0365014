//! The SteleDB example application: a user sign-up flow built from
//! separate components that talk only through the event log.
//!
//! - [`http`]: the HTTP API (axum). Sign-ups and activations go to the
//!   command side and are answered synchronously; reads come from the read model.
//! - [`commands`] and [`user`]: the user aggregate (a `Decider`) and its
//!   repository; unique emails through an atomic multi-stream append.
//! - [`read_model`]: users in SQLite, fed by a projection.
//! - [`mail`] and [`smtp`]: activation and reminder emails over SMTP, through
//!   an sdk gateway (retries, back-off, circuit breaker, checkpoint).
//! - [`reminders`]: an activation-reminder timer per account, scheduled at
//!   sign-up and cancelled on activation.
//! - [`app`]: starts them all on one data directory.

pub mod app;
pub mod commands;
pub mod http;
pub mod mail;
pub mod read_model;
pub mod reminders;
pub mod smtp;
pub mod user;

pub use app::{App, ComponentError, Config, StartError};
