//! A process manager on a real store: payments received deposit into the
//! account, once per payment, across a crash and restart.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{bank_codec, ctx, AccountCommand, Bank};
use serde_json::json;
use steledb::{EventFilter, ExpectedRevision, NewEvent, RecordedEvent, Store, Uuid};
use steledb_sdk::{
    command_id_for, Context, MemoryCheckpoints, ProcessManager, ProcessManagerRunner, Repository, RepositoryError,
    Source, SqliteCheckpoints, StopHandle,
};

struct Payments<'s> {
    accounts: Repository<Bank, &'s Store>,
    /// Panic right after issuing the command for this payment (a crash
    /// between the command and the checkpoint).
    crash_after_amount: Option<u64>,
    issued: u64,
    duplicates: u64,
}

impl ProcessManager for Payments<'_> {
    type Error = RepositoryError<common::AccountError>;
    fn name(&self) -> &str {
        "payments"
    }
    fn source(&self) -> Source {
        Source::AllFiltered(EventFilter::StreamPrefix(vec!["payment-".into()]))
    }
    fn react(&mut self, event: &RecordedEvent) -> Result<(), Self::Error> {
        let data: serde_json::Value = serde_json::from_slice(event.data()).unwrap();
        let amount_cents = data["amount_cents"].as_u64().unwrap();
        let ctx = Context::new(event.recorded_at_us, command_id_for(event, "deposit"));
        let handled =
            self.accounts.handle(data["account"].as_str().unwrap(), &AccountCommand::Deposit { amount_cents }, &ctx)?;
        self.issued += 1;
        self.duplicates += u64::from(handled.append.is_some_and(|a| a.duplicate));
        if self.crash_after_amount == Some(amount_cents) {
            panic!("crash after the command for {amount_cents}");
        }
        Ok(())
    }
}

fn pay(store: &Store, amounts: impl IntoIterator<Item = u64>) {
    for amount_cents in amounts {
        let data = serde_json::to_vec(&json!({ "account": "account-1", "amount_cents": amount_cents })).unwrap();
        let event = NewEvent::json(Uuid::new_v4(), "PaymentReceived", data);
        store.append(&format!("payment-{amount_cents}"), ExpectedRevision::NoStream, vec![event]).unwrap();
    }
}

fn payments(store: &Store, crash_after_amount: Option<u64>) -> Payments<'_> {
    Payments { accounts: Repository::new(Bank, store, bank_codec()), crash_after_amount, issued: 0, duplicates: 0 }
}

#[test]
fn each_event_issues_its_command_once_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let accounts = Repository::new(Bank, &store, bank_codec());
    accounts.handle("account-1", &AccountCommand::Open { owner: "ann".into() }, &ctx(0, 1)).unwrap();
    pay(&store, 1..=10);
    let checkpoints_path = dir.path().join("checkpoints.sqlite");

    // Checkpoint every 4 events; crash right after the command for payment 7.
    let runner = ProcessManagerRunner::new(
        &store,
        payments(&store, Some(7)),
        SqliteCheckpoints::open(&checkpoints_path).unwrap(),
    )
    .with_checkpoint_every_events(4);
    let crashed = catch_unwind(AssertUnwindSafe(move || {
        let mut runner = runner;
        runner.run_until_caught_up()
    }));
    assert!(crashed.is_err());
    let state = accounts.load("account-1").unwrap().state;
    assert_eq!((state.deposits, state.balance_cents), (7, 28), "payments 1..=7 took effect");

    // Restart: the checkpoint says 4 events; payments 5, 6, 7 come again.
    let mut runner =
        ProcessManagerRunner::new(&store, payments(&store, None), SqliteCheckpoints::open(&checkpoints_path).unwrap())
            .with_checkpoint_every_events(4);
    let report = runner.run_until_caught_up().unwrap();
    assert_eq!(report.events_handled, 6);
    assert_eq!((runner.process().issued, runner.process().duplicates), (6, 3), "5, 6, 7 recognised as repeats");
    let state = accounts.load("account-1").unwrap().state;
    assert_eq!((state.deposits, state.balance_cents), (10, 55), "each payment deposited exactly once");
    assert_eq!(report.checkpoint.events_handled, 10);

    // Live: new payments are handled as they come, until stopped.
    let stop = StopHandle::new();
    let mut runner =
        ProcessManagerRunner::new(&store, payments(&store, None), SqliteCheckpoints::open(&checkpoints_path).unwrap())
            .with_poll_interval_ms(5);
    std::thread::scope(|s| {
        let following = s.spawn(|| runner.run(&stop));
        pay(&store, 11..=12);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while accounts.load("account-1").unwrap().state.deposits < 12 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        stop.stop();
        let report = following.join().unwrap().unwrap();
        assert!(report.stopped);
        assert_eq!(report.events_handled, 2);
    });
    assert_eq!(accounts.load("account-1").unwrap().state.balance_cents, 78);
}

#[test]
fn an_error_keeps_the_checkpoint_before_the_failing_event() {
    let (_dir, store) = common::open_store();
    // No account opened: every deposit is refused (NotOpen).
    pay(&store, [3]);
    let checkpoints = MemoryCheckpoints::new();
    let mut runner = ProcessManagerRunner::new(&store, payments(&store, None), checkpoints.clone());
    let error = runner.run_until_caught_up().unwrap_err();
    assert!(
        matches!(error, steledb_sdk::ConsumerError::Handler { ref consumer, .. } if consumer == "payments"),
        "{error}"
    );
    assert_eq!(checkpoints.get("payments").unwrap_or_default().events_handled, 0);
}

/// The checkpoint outlived the store (a development store wiped and
/// started again): resuming must fail and say why, not skip every event
/// written until the new log grows past the old position.
#[test]
fn a_checkpoint_from_a_replaced_store_is_refused_not_skipped() {
    let (_old_dir, old) = common::open_store();
    let (_dir, store) = common::open_store();
    let open = AccountCommand::Open { owner: "ann".into() };
    Repository::new(Bank, &old, bank_codec()).handle("account-1", &open, &ctx(0, 1)).unwrap();
    pay(&old, 1..=50);
    let checkpoints = MemoryCheckpoints::new();
    ProcessManagerRunner::new(&old, payments(&old, None), checkpoints.clone()).run_until_caught_up().unwrap();
    pay(&store, [7]);

    let mut runner = ProcessManagerRunner::new(&store, payments(&store, None), checkpoints.clone());
    let error = runner.run_until_caught_up().unwrap_err();
    assert!(error.to_string().contains("past the end of the log"), "{error}");
    assert_eq!(checkpoints.get("payments").unwrap().events_handled, 50, "the checkpoint is left as it was");
}
