//! The repository on a real store on disk: load, decide, append, conflicts,
//! retries and idempotent commands.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use steledb::{AppendError, ExpectedRevision, StreamAppend};
use steledb_sdk::{ids, EventStore, Repository, RepositoryError, SnapshotUse, StoreError};

fn open(owner: &str) -> AccountCommand {
    AccountCommand::Open { owner: owner.to_owned() }
}

fn deposit(amount_cents: u64) -> AccountCommand {
    AccountCommand::Deposit { amount_cents }
}

#[test]
fn handle_appends_the_decided_events_and_load_folds_them() {
    let (_dir, store) = open_store();
    let bank = Repository::new(Bank, &store, bank_codec());

    let empty = bank.load("account-1").unwrap();
    assert_eq!((empty.state, empty.revision, empty.events_replayed), (Account::default(), None, 0));

    let opened = bank.handle("account-1", &open("ann"), &ctx(1_000, 1)).unwrap();
    assert_eq!(opened.attempts, 1);
    assert_eq!(opened.decided_at, None);
    let append = opened.append.unwrap();
    assert_eq!((append.first_revision, append.last_revision, append.duplicate), (0, 0, false));
    bank.handle("account-1", &deposit(700), &ctx(2_000, 2)).unwrap();
    // Close sweeps the balance: two events from one command.
    let closed = bank.handle("account-1", &AccountCommand::Close, &ctx(3_000, 3)).unwrap();
    assert_eq!(closed.decided_at, Some(1));
    assert_eq!(closed.events, vec![AccountEvent::Withdrawn { amount_cents: 700 }, AccountEvent::Closed]);
    let append = closed.append.unwrap();
    assert_eq!((append.first_revision, append.last_revision), (2, 3));

    let loaded = bank.load("account-1").unwrap();
    assert_eq!(loaded.revision, Some(3));
    assert_eq!(loaded.events_replayed, 4);
    assert_eq!(loaded.snapshot, SnapshotUse::None);
    assert_eq!(loaded.state, Account { owner: Some("ann".to_owned()), balance_cents: 0, deposits: 1, closed: true });

    // Stored as documented: ids derived from the command id, the schema
    // version and the command id in the metadata.
    let stored = store.read_forward("account-1", 0, 10).unwrap();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[2].id, ids::event_id(uuid::Uuid::from_u128(3), "account-1", 0));
    assert_eq!(stored[3].id, ids::event_id(uuid::Uuid::from_u128(3), "account-1", 1));
    let command_3 = uuid::Uuid::from_u128(3).to_string();
    assert_eq!(metadata_json(&stored[3]), serde_json::json!({"schema": 1, "command_id": command_3}));
    assert_eq!(metadata_json(&stored[1])["schema"], 3, "Deposited is at version 3");
    // The context's time and derived id reached the event.
    let opened = &opened.events[0];
    let AccountEvent::Opened { opened_at_us, account_number, .. } = opened else { panic!("{opened:?}") };
    assert_eq!(*opened_at_us, 1_000);
    assert_eq!(account_number, &ctx(1_000, 1).id("account-number").to_string());
}

#[test]
fn a_rejected_command_writes_nothing() {
    let (_dir, store) = open_store();
    let bank = Repository::new(Bank, &store, bank_codec());
    let error = bank.handle("account-1", &deposit(5), &ctx(0, 1)).unwrap_err();
    assert!(matches!(error, RepositoryError::Rejected(AccountError::NotOpen)), "{error:?}");

    bank.handle("account-1", &open("ann"), &ctx(0, 2)).unwrap();
    let end_position = store.end_position();
    let error = bank.handle("account-1", &AccountCommand::Withdraw { amount_cents: 1 }, &ctx(0, 3)).unwrap_err();
    assert!(
        matches!(
            error,
            RepositoryError::Rejected(AccountError::InsufficientFunds { balance_cents: 0, requested_cents: 1 })
        ),
        "{error:?}"
    );
    assert_eq!(store.end_position(), end_position);
    assert_eq!(store.stream_revision("account-1").unwrap(), Some(0));
}

#[test]
fn two_repositories_racing_on_one_stream_retry_and_lose_no_update() {
    let (_dir, store) = open_store();
    Repository::new(Bank, &store, bank_codec()).handle("account-1", &open("ann"), &ctx(0, 1)).unwrap();

    // Both load revision 0 before either appends: exactly one must conflict.
    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = [(100, 10), (200, 11)]
            .into_iter()
            .map(|(amount_cents, command)| {
                let racing = RendezvousStore::new(&store, barrier.clone());
                scope.spawn(move || {
                    let bank = Repository::new(Bank, racing, bank_codec());
                    bank.handle("account-1", &deposit(amount_cents), &ctx(0, command)).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut attempts: Vec<u32> = results.iter().map(|r| r.attempts).collect();
    attempts.sort();
    // One wins at once, the other conflicts and reloads. It may conflict
    // more than once: when both appends share a group commit, the store
    // answers the loser before the winner's event is readable, so the
    // first reload can still see revision 0.
    assert_eq!(attempts[0], 1, "{attempts:?}");
    assert!(attempts[1] >= 2, "{attempts:?}");
    let loser = results.iter().find(|r| r.attempts >= 2).unwrap();
    assert_eq!(loser.decided_at, Some(1), "the retry decided on the winner's event");
    let account = Repository::new(Bank, &store, bank_codec()).load("account-1").unwrap();
    assert_eq!((account.state.balance_cents, account.state.deposits, account.revision), (300, 2, Some(2)));
}

#[test]
fn a_conflict_on_every_attempt_is_an_error_and_writes_nothing() {
    let (_dir, store) = open_store();
    Repository::new(Bank, &store, bank_codec()).handle("account-1", &open("ann"), &ctx(0, 1)).unwrap();

    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = [(100, 10), (200, 11)]
            .into_iter()
            .map(|(amount_cents, command)| {
                let racing = RendezvousStore::new(&store, barrier.clone());
                scope.spawn(move || {
                    let bank = Repository::new(Bank, racing, bank_codec()).with_attempts_max(1);
                    bank.handle("account-1", &deposit(amount_cents), &ctx(0, command)).map(|h| h.events)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!((won.len(), lost.len()), (1, 1));
    let error = lost.into_iter().next().unwrap().unwrap_err();
    assert!(
        matches!(error, RepositoryError::Conflict { ref stream, attempts: 1 } if stream == "account-1"),
        "{error:?}"
    );
    let won = won.into_iter().next().unwrap().unwrap();
    let AccountEvent::Deposited { amount_cents, .. } = won[0] else { panic!("{won:?}") };
    let account = Repository::new(Bank, &store, bank_codec()).load("account-1").unwrap();
    assert_eq!((account.state.balance_cents, account.revision), (amount_cents, Some(1)));
}

#[test]
fn many_concurrent_deposits_are_all_applied() {
    let (_dir, store) = open_store();
    Repository::new(Bank, &store, bank_codec()).handle("account-1", &open("ann"), &ctx(0, 1)).unwrap();
    let per_thread = 20u64;
    let attempts_total: u32 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2u64)
            .map(|thread| {
                let store = &store;
                scope.spawn(move || {
                    let bank = Repository::new(Bank, store, bank_codec()).with_attempts_max(100);
                    (0..per_thread)
                        .map(|i| {
                            let command = 1_000 + u128::from(thread * per_thread + i);
                            bank.handle("account-1", &deposit(1 + thread), &ctx(0, command)).unwrap().attempts
                        })
                        .sum::<u32>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let account = Repository::new(Bank, &store, bank_codec()).load("account-1").unwrap();
    assert_eq!(account.state.deposits, 2 * per_thread);
    assert_eq!(account.state.balance_cents, per_thread * (1 + 2), "thread 0 deposits 1, thread 1 deposits 2");
    assert_eq!(account.revision, Some(2 * per_thread));
    assert!(attempts_total >= 2 * per_thread as u32);
}

#[test]
fn a_repeated_command_returns_the_original_result_and_writes_nothing() {
    let (_dir, store) = open_store();
    let bank = Repository::new(Bank, &store, bank_codec());
    bank.handle("account-1", &open("ann"), &ctx(0, 1)).unwrap();
    bank.handle("account-1", &deposit(500), &ctx(0, 2)).unwrap();
    let withdraw_all = AccountCommand::Withdraw { amount_cents: 500 };
    let first = bank.handle("account-1", &withdraw_all, &ctx(10, 3)).unwrap();
    bank.handle("account-1", &deposit(40), &ctx(20, 4)).unwrap();
    let end_position = store.end_position();

    // The reply was lost; the caller retries later with the same command
    // id. Decided again it would be refused (balance 40 < 500).
    let retry = bank.handle("account-1", &withdraw_all, &ctx(99, 3)).unwrap();
    assert_eq!(retry.events, first.events);
    let (first_append, retry_append) = (first.append.unwrap(), retry.append.unwrap());
    assert!(!first_append.duplicate && retry_append.duplicate);
    assert_eq!(
        (
            retry_append.first_revision,
            retry_append.last_revision,
            retry_append.first_position,
            retry_append.last_position
        ),
        (
            first_append.first_revision,
            first_append.last_revision,
            first_append.first_position,
            first_append.last_position
        )
    );
    assert_eq!(retry.decided_at, first.decided_at);
    assert_eq!(store.end_position(), end_position, "nothing written");
    assert_eq!(bank.load("account-1").unwrap().state.balance_cents, 40);

    // A two-event command is recognised whole.
    let close = bank.handle("account-1", &AccountCommand::Close, &ctx(30, 5)).unwrap();
    let end_position = store.end_position();
    let retry = bank.handle("account-1", &AccountCommand::Close, &ctx(31, 5)).unwrap();
    assert_eq!(retry.events, close.events);
    assert_eq!(retry.events.len(), 2);
    assert_eq!(store.end_position(), end_position);
}

#[test]
fn the_same_command_submitted_concurrently_is_written_once() {
    let (_dir, store) = open_store();
    Repository::new(Bank, &store, bank_codec()).handle("account-1", &open("ann"), &ctx(0, 1)).unwrap();

    // Both copies decide on revision 0 with the same ids.
    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let racing = RendezvousStore::new(&store, barrier.clone());
                scope.spawn(move || {
                    let bank = Repository::new(Bank, racing, bank_codec());
                    bank.handle("account-1", &deposit(100), &ctx(0, 7)).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let appends: Vec<_> = results.iter().map(|r| r.append.unwrap()).collect();
    assert_eq!(appends.iter().filter(|a| a.duplicate).count(), 1);
    assert_eq!(appends[0].first_position, appends[1].first_position);
    assert_eq!(results[0].events, results[1].events);
    // Which path recognises the copy depends on timing: in separate group
    // commits the store answers `duplicate`; in the same one the store
    // reports a conflict and the reload finds the command id. Both answer
    // with the original.
    assert!(results.iter().all(|r| r.attempts <= 2));
    let account = Repository::new(Bank, &store, bank_codec()).load("account-1").unwrap();
    assert_eq!((account.state.balance_cents, account.revision), (100, Some(1)));
}

#[test]
fn a_retry_older_than_the_remembered_commands_is_still_refused_by_the_store() {
    let (_dir, store) = open_store();
    let bank = Repository::new(Bank, &store, bank_codec()).with_commands_remembered_max(2);
    bank.handle("account-1", &open("ann"), &ctx(0, 1)).unwrap();
    bank.handle("account-1", &deposit(100), &ctx(0, 2)).unwrap();
    for command in 3..6 {
        bank.handle("account-1", &deposit(1), &ctx(0, command)).unwrap();
    }
    let end_position = store.end_position();
    // Command 2 is forgotten by the repository, so it is decided again; the
    // same ids at another revision are refused by the store's own check.
    let error = bank.handle("account-1", &deposit(100), &ctx(0, 2)).unwrap_err();
    assert!(
        matches!(error, RepositoryError::Store(StoreError::Append(AppendError::DuplicateEventIds { revision: 1, .. }))),
        "{error:?}"
    );
    assert_eq!(store.end_position(), end_position);
    // Command 5 is remembered.
    assert!(bank.handle("account-1", &deposit(1), &ctx(0, 5)).unwrap().append.unwrap().duplicate);
}

#[test]
fn multi_stream_append_through_the_trait_is_atomic() {
    let (_dir, store) = open_store();
    let events = || vec![raw_event(0, "Reserved", "{}", 1)];
    let event_store: &dyn EventStore = &store;
    let results = event_store
        .append_multi(vec![
            StreamAppend::new("email-ann@example.com", ExpectedRevision::NoStream, events()),
            StreamAppend::new("user-1", ExpectedRevision::NoStream, vec![raw_event(1, "Registered", "{}", 1)]),
        ])
        .unwrap();
    assert_eq!(results.len(), 2);

    let end_position = store.end_position();
    let error = event_store
        .append_multi(vec![
            StreamAppend::new("user-2", ExpectedRevision::NoStream, vec![raw_event(2, "Registered", "{}", 1)]),
            StreamAppend::new(
                "email-ann@example.com",
                ExpectedRevision::NoStream,
                vec![raw_event(3, "Reserved", "{}", 1)],
            ),
        ])
        .unwrap_err();
    assert!(
        matches!(error, StoreError::WrongExpectedRevision { ref stream, .. } if stream == "email-ann@example.com"),
        "{error:?}"
    );
    assert_eq!(store.end_position(), end_position);
    assert!(event_store.read_forward("user-2", 0, 10).unwrap().is_empty());
    assert_eq!(event_store.read_last("user-1").unwrap().map(|e| e.revision), Some(0));
}

#[test]
fn a_stream_with_an_event_the_codec_cannot_read_fails_to_load() {
    let (_dir, store) = open_store();
    store.append("account-1", ExpectedRevision::NoStream, vec![raw_event(1, "Frozen", "{}", 1)]).unwrap();
    let error = Repository::new(Bank, &store, bank_codec()).load("account-1").unwrap_err();
    assert!(matches!(error, RepositoryError::Decode { revision: 0, .. }), "{error:?}");
}
