//! Shared by the integration tests: a bank-account decider, its codec, and
//! store wrappers that count reads or hold a reader at a barrier.
#![allow(dead_code)] // each test file uses its own part

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use serde::{Deserialize, Serialize};
use steledb::{AppendResult, NewEvent, RecordedEvent, Store, StreamAppend};
use steledb_sdk::{Context, Decider, EventCodec, EventStore, EventSubscription, StoreError, SubscribeTo};

pub struct Bank;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    Opened {
        owner: String,
        account_number: String,
        opened_at_us: u64,
    },
    /// Schema v3. v1 was `{"amount": <whole euros>}`; v2 renamed it to
    /// `amount_cents`; v3 added `currency`.
    Deposited {
        amount_cents: u64,
        currency: String,
    },
    Withdrawn {
        amount_cents: u64,
    },
    Closed,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Open { owner: String },
    Deposit { amount_cents: u64 },
    Withdraw { amount_cents: u64 },
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    AlreadyOpen,
    NotOpen,
    Closed,
    ZeroAmount,
    InsufficientFunds { balance_cents: u64, requested_cents: u64 },
    BalanceNotZero { balance_cents: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub owner: Option<String>,
    pub balance_cents: u64,
    pub deposits: u64,
    pub closed: bool,
}

impl Decider for Bank {
    type State = Account;
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn initial_state(&self) -> Account {
        Account::default()
    }

    fn decide(
        &self,
        state: &Account,
        command: &AccountCommand,
        ctx: &Context,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        use AccountCommand as C;
        use AccountEvent as E;
        if let C::Open { owner } = command {
            if state.owner.is_some() {
                return Err(AccountError::AlreadyOpen);
            }
            let account_number = ctx.id("account-number").to_string();
            return Ok(vec![E::Opened { owner: owner.clone(), account_number, opened_at_us: ctx.now_us }]);
        }
        if state.owner.is_none() {
            return Err(AccountError::NotOpen);
        }
        if state.closed {
            return Err(AccountError::Closed);
        }
        match *command {
            C::Open { .. } => unreachable!("handled above"),
            C::Deposit { amount_cents: 0 } | C::Withdraw { amount_cents: 0 } => Err(AccountError::ZeroAmount),
            C::Deposit { amount_cents } => Ok(vec![E::Deposited { amount_cents, currency: "EUR".to_owned() }]),
            C::Withdraw { amount_cents } if amount_cents > state.balance_cents => {
                Err(AccountError::InsufficientFunds {
                    balance_cents: state.balance_cents,
                    requested_cents: amount_cents,
                })
            }
            C::Withdraw { amount_cents } => Ok(vec![E::Withdrawn { amount_cents }]),
            // Closing sweeps the balance out first: two events from one command.
            C::Close if state.balance_cents > 0 => {
                Ok(vec![E::Withdrawn { amount_cents: state.balance_cents }, E::Closed])
            }
            C::Close => Ok(vec![E::Closed]),
        }
    }

    fn evolve(&self, mut state: Account, event: &AccountEvent) -> Account {
        match event {
            AccountEvent::Opened { owner, .. } => state.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount_cents, .. } => {
                state.balance_cents += amount_cents;
                state.deposits += 1;
            }
            AccountEvent::Withdrawn { amount_cents } => state.balance_cents -= amount_cents,
            AccountEvent::Closed => state.closed = true,
        }
        state
    }
}

/// The codec with the `Deposited` chain v1 -> v2 -> v3.
pub fn bank_codec() -> EventCodec<AccountEvent> {
    EventCodec::new()
        .upcaster("Deposited", 1, |data| {
            let euros = data["amount"].as_u64().ok_or_else(|| "v1 Deposited without an integer amount".to_owned())?;
            Ok(serde_json::json!({ "amount_cents": euros * 100 }))
        })
        .upcaster("Deposited", 2, |mut data| {
            data["currency"] = "EUR".into();
            Ok(data)
        })
}

pub fn ctx(now_us: u64, command: u128) -> Context {
    Context::new(now_us, uuid::Uuid::from_u128(command))
}

pub fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

/// Single point of access to `RecordedEvent`'s payload, whose
/// representation is being reworked in the engine.
pub fn data(event: &RecordedEvent) -> &[u8] {
    event.data()
}

pub fn metadata_json(event: &RecordedEvent) -> serde_json::Value {
    serde_json::from_slice(event.metadata()).expect("metadata is JSON")
}

/// Counts what goes through it, to prove how much a load read.
pub struct CountingStore<'a> {
    pub inner: &'a Store,
    pub reads: AtomicU64,
    pub events_read: AtomicU64,
}

impl<'a> CountingStore<'a> {
    pub fn new(inner: &'a Store) -> Self {
        Self { inner, reads: AtomicU64::new(0), events_read: AtomicU64::new(0) }
    }

    /// (read calls, events read) since the last call.
    pub fn take(&self) -> (u64, u64) {
        (self.reads.swap(0, Ordering::SeqCst), self.events_read.swap(0, Ordering::SeqCst))
    }
}

impl EventStore for CountingStore<'_> {
    fn read_forward(&self, stream: &str, from_revision: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_forward(stream, from_revision, limit)?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.events_read.fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(events)
    }
    fn read_last(&self, stream: &str) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.read_last(stream)
    }
    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        EventStore::append_multi(self.inner, parts)
    }
    fn subscribe(&self, to: SubscribeTo<'_>) -> Result<Box<dyn EventSubscription>, StoreError> {
        EventStore::subscribe(self.inner, to)
    }
    fn last_position(&self) -> Result<Option<u64>, StoreError> {
        EventStore::last_position(self.inner)
    }
}

/// Holds its first `read_forward` at a barrier shared with other
/// wrappers, so several repositories are known to have loaded the same
/// revision before any of them appends: a conflict is certain, not likely.
pub struct RendezvousStore<S> {
    inner: S,
    barrier: Arc<Barrier>,
    passed: AtomicBool,
}

impl<S: EventStore> RendezvousStore<S> {
    pub fn new(inner: S, barrier: Arc<Barrier>) -> Self {
        Self { inner, barrier, passed: AtomicBool::new(false) }
    }
}

impl<S: EventStore> EventStore for RendezvousStore<S> {
    fn read_forward(&self, stream: &str, from_revision: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_forward(stream, from_revision, limit)?;
        if !self.passed.swap(true, Ordering::SeqCst) {
            self.barrier.wait();
        }
        Ok(events)
    }
    fn read_last(&self, stream: &str) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.read_last(stream)
    }
    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.append_multi(parts)
    }
    fn subscribe(&self, to: SubscribeTo<'_>) -> Result<Box<dyn EventSubscription>, StoreError> {
        self.inner.subscribe(to)
    }
    fn last_position(&self) -> Result<Option<u64>, StoreError> {
        self.inner.last_position()
    }
}

/// A raw event as an older version of the application wrote it.
pub fn raw_event(id: u128, event_type: &str, data: &str, schema: u32) -> NewEvent {
    NewEvent::json(uuid::Uuid::from_u128(id), event_type, data.as_bytes().to_vec())
        .with_metadata(format!(r#"{{"schema":{schema}}}"#).into_bytes())
}
