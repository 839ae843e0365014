//! Snapshots on a real store: taken by policy or on demand, used by loads,
//! ignored (full replay, right state) when their version is unknown or they
//! do not decode.

mod common;

use common::*;
use steledb::ExpectedRevision;
use steledb_sdk::{
    EventStore, Repository, RepositoryError, SnapshotConfig, SnapshotIgnored, SnapshotOutcome, SnapshotUse,
    SNAPSHOT_EVENT_TYPE,
};

fn deposit(amount_cents: u64) -> AccountCommand {
    AccountCommand::Deposit { amount_cents }
}

/// Opens account-1 and deposits 1..=`deposits` cents, one command each.
fn fill<S: EventStore>(bank: &Repository<Bank, S>, deposits: u64) -> Vec<SnapshotOutcome> {
    let mut outcomes =
        vec![bank.handle("account-1", &AccountCommand::Open { owner: "ann".into() }, &ctx(0, 1)).unwrap().snapshot];
    for i in 1..=deposits {
        outcomes.push(bank.handle("account-1", &deposit(i), &ctx(0, 100 + u128::from(i))).unwrap().snapshot);
    }
    outcomes
}

fn expected_account(deposits: u64) -> Account {
    Account { owner: Some("ann".into()), balance_cents: deposits * (deposits + 1) / 2, deposits, closed: false }
}

#[test]
fn a_snapshot_every_n_events_is_taken_and_shortens_the_load() {
    let (_dir, store) = open_store();
    let counting = CountingStore::new(&store);
    let bank = Repository::new(Bank, &counting, bank_codec()).with_snapshots(SnapshotConfig::every_events(4, 1));

    // Revisions 0..=10: snapshots when 4 events are past the last one.
    let outcomes = fill(&bank, 10);
    let written: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| match o {
            SnapshotOutcome::Written { revision } => Some(*revision),
            SnapshotOutcome::NotDue => None,
            SnapshotOutcome::Failed(error) => panic!("{error}"),
        })
        .collect();
    assert_eq!(written, vec![3, 7]);
    let snapshots = store.read_forward("snapshot-account-1", 0, 10).unwrap();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(metadata_json(&snapshots[1]), serde_json::json!({"format": 1, "schema": 1}));

    counting.take();
    let loaded = bank.load("account-1").unwrap();
    assert_eq!(loaded.snapshot, SnapshotUse::Used { revision: 7 });
    assert_eq!(loaded.revision, Some(10));
    assert_eq!(loaded.events_replayed, 3);
    assert_eq!(counting.take(), (1, 3), "one read of the 3 events after the snapshot");
    assert_eq!(loaded.state, expected_account(10));

    // The same without snapshots reads all 11.
    let plain = Repository::new(Bank, &counting, bank_codec());
    assert_eq!(plain.load("account-1").unwrap().state, expected_account(10));
    assert_eq!(counting.take(), (1, 11));
}

#[test]
fn a_snapshot_of_another_schema_version_is_ignored_for_a_full_replay() {
    let (_dir, store) = open_store();
    let v1 = Repository::new(Bank, &store, bank_codec()).with_snapshots(SnapshotConfig::every_events(3, 1));
    fill(&v1, 7);
    assert!(matches!(v1.load("account-1").unwrap().snapshot, SnapshotUse::Used { revision: 5 }));

    // The application moved its state to schema 2 (say, evolve changed):
    // the v1 snapshot must not be trusted.
    let v2 = Repository::new(Bank, &store, bank_codec()).with_snapshots(SnapshotConfig::every_events(3, 2));
    let loaded = v2.load("account-1").unwrap();
    assert_eq!(loaded.snapshot, SnapshotUse::Ignored(SnapshotIgnored::UnknownVersion { format: 1, schema: 1 }));
    assert_eq!(loaded.events_replayed, 8);
    assert_eq!(loaded.state, expected_account(7));

    // A newer schema (a rolled-back deployment reading what the new one
    // wrote) is ignored the same way.
    let handled = v2.handle("account-1", &deposit(8), &ctx(0, 900)).unwrap();
    assert!(matches!(handled.snapshot, SnapshotOutcome::Written { revision: 8 }), "{:?}", handled.snapshot);
    let loaded = v1.load("account-1").unwrap();
    assert_eq!(loaded.snapshot, SnapshotUse::Ignored(SnapshotIgnored::UnknownVersion { format: 1, schema: 2 }));
    assert_eq!(loaded.state, expected_account(8));
    assert_eq!(v2.load("account-1").unwrap().snapshot, SnapshotUse::Used { revision: 8 });
}

#[test]
fn a_snapshot_that_does_not_decode_is_ignored_for_a_full_replay() {
    let (_dir, store) = open_store();
    let bank = Repository::new(Bank, &store, bank_codec()).with_snapshots(SnapshotConfig::on_demand(1));
    fill(&bank, 5);

    // Right versions, wrong content: a state of another shape, then bytes
    // that are not JSON at all.
    let bad_state = r#"{"revision":5,"state":{"balance":"lots"},"commands":[]}"#;
    for (id, data) in [(1, bad_state), (2, "\u{1}garbage")] {
        let event = steledb::NewEvent::json(uuid::Uuid::from_u128(id), SNAPSHOT_EVENT_TYPE, data.as_bytes().to_vec())
            .with_metadata(br#"{"format":1,"schema":1}"#.to_vec());
        store.append("snapshot-account-1", ExpectedRevision::Any, vec![event]).unwrap();
        let loaded = bank.load("account-1").unwrap();
        assert!(
            matches!(loaded.snapshot, SnapshotUse::Ignored(SnapshotIgnored::Undecodable { .. })),
            "{:?}",
            loaded.snapshot
        );
        assert_eq!((loaded.state, loaded.events_replayed), (expected_account(5), 6));
    }
}

#[test]
fn an_on_demand_snapshot_is_used_by_the_next_load() {
    let (_dir, store) = open_store();
    let bank = Repository::new(Bank, &store, bank_codec()).with_snapshots(SnapshotConfig::on_demand(1));
    assert_eq!(bank.snapshot("account-1").unwrap(), None, "nothing to snapshot");
    let outcomes = fill(&bank, 4);
    assert!(outcomes.iter().all(|o| matches!(o, SnapshotOutcome::NotDue)), "on demand only");
    assert!(store.read_forward("snapshot-account-1", 0, 10).unwrap().is_empty());

    assert_eq!(bank.snapshot("account-1").unwrap(), Some(4));
    let loaded = bank.load("account-1").unwrap();
    assert_eq!((loaded.snapshot, loaded.events_replayed), (SnapshotUse::Used { revision: 4 }, 0));
    assert_eq!(loaded.state, expected_account(4));
    // Snapshotting again at the same revision writes nothing new.
    assert_eq!(bank.snapshot("account-1").unwrap(), Some(4));
    assert_eq!(store.read_forward("snapshot-account-1", 0, 10).unwrap().len(), 1);

    let plain = Repository::new(Bank, &store, bank_codec());
    assert!(matches!(plain.snapshot("account-1"), Err(RepositoryError::SnapshotsDisabled)));
}

#[test]
fn commands_older_than_the_snapshot_are_still_recognised() {
    let (_dir, store) = open_store();
    let counting = CountingStore::new(&store);
    let bank = Repository::new(Bank, &counting, bank_codec()).with_snapshots(SnapshotConfig::every_events(2, 1));
    fill(&bank, 6);
    let loaded = bank.load("account-1").unwrap();
    assert_eq!(loaded.snapshot, SnapshotUse::Used { revision: 5 });

    // Deposit #2 (command 102, revision 2) is before the snapshot, so only
    // the snapshot's command list can recognise it.
    let end_position = store.end_position();
    counting.take();
    let retry = bank.handle("account-1", &deposit(2), &ctx(0, 102)).unwrap();
    let append = retry.append.unwrap();
    assert!(append.duplicate);
    assert_eq!((append.first_revision, append.last_revision), (2, 2));
    assert_eq!(retry.events, vec![AccountEvent::Deposited { amount_cents: 2, currency: "EUR".into() }]);
    assert_eq!(store.end_position(), end_position);
    // The load read the one event after the snapshot; the answer re-read the original event.
    assert_eq!(counting.take(), (2, 2));
}

#[test]
fn snapshot_streams_cannot_be_aggregates() {
    let (_dir, store) = open_store();
    let bank = Repository::new(Bank, &store, bank_codec())
        .with_snapshots(SnapshotConfig::every_events(2, 1).with_stream_prefix("snap:"));
    let error = bank.load("snap:account-1").unwrap_err();
    assert!(matches!(error, RepositoryError::ReservedStreamName { ref prefix, .. } if prefix == "snap:"), "{error:?}");
    fill(&bank, 2);
    assert_eq!(store.read_forward("snap:account-1", 0, 10).unwrap().len(), 1);
}
