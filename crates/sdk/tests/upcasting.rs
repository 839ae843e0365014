//! Schema evolution on a real store: events written by older versions of
//! the application are upcast on read and never rewritten.

mod common;

use common::*;
use steledb::ExpectedRevision;
use steledb_sdk::{CodecError, EventStore, Repository, RepositoryError};

#[test]
fn events_of_versions_1_2_and_3_load_as_the_current_shape_and_stay_as_stored() {
    let (_dir, store) = open_store();
    // What three generations of the application wrote.
    let opened = r#"{"owner":"ann","account_number":"n-1","opened_at_us":5}"#;
    let old = vec![
        raw_event(1, "Opened", opened, 1),
        raw_event(2, "Deposited", r#"{"amount":3}"#, 1),
        raw_event(3, "Deposited", r#"{"amount_cents":250}"#, 2),
        raw_event(4, "Deposited", r#"{"amount_cents":7,"currency":"EUR"}"#, 3),
    ];
    store.append("account-1", ExpectedRevision::NoStream, old).unwrap();

    let bank = Repository::new(Bank, &store, bank_codec());
    // And the current one, through the repository.
    bank.handle("account-1", &AccountCommand::Deposit { amount_cents: 40 }, &ctx(0, 9)).unwrap();

    let loaded = bank.load("account-1").unwrap();
    assert_eq!(loaded.state.balance_cents, 300 + 250 + 7 + 40);
    assert_eq!(loaded.state.deposits, 4);

    let stored = store.read_forward("account-1", 0, 10).unwrap();
    let decoded: Vec<AccountEvent> = stored.iter().map(|e| bank.codec().decode_recorded(e).unwrap()).collect();
    let eur = |amount_cents| AccountEvent::Deposited { amount_cents, currency: "EUR".to_owned() };
    assert_eq!(&decoded[1..], &[eur(300), eur(250), eur(7), eur(40)]);

    // Nothing was rewritten: the old bytes are still there.
    assert_eq!(data(&stored[1]), br#"{"amount":3}"#);
    assert_eq!(metadata_json(&stored[1])["schema"], 1);
    assert_eq!(data(&stored[2]), br#"{"amount_cents":250}"#);
    assert_eq!(metadata_json(&stored[4])["schema"], 3);
}

#[test]
fn an_event_from_a_future_version_is_a_typed_error_not_a_guess() {
    let (_dir, store) = open_store();
    let events = vec![
        raw_event(1, "Opened", r#"{"owner":"ann","account_number":"n-1","opened_at_us":5}"#, 1),
        raw_event(2, "Deposited", r#"{"amount_cents":1,"currency":"EUR","fee_cents":0}"#, 4),
    ];
    store.append("account-1", ExpectedRevision::NoStream, events).unwrap();
    let error = Repository::new(Bank, &store, bank_codec()).load("account-1").unwrap_err();
    let RepositoryError::Decode { revision, source, .. } = error else { panic!("{error:?}") };
    assert_eq!(revision, 1);
    assert!(
        matches!(source, CodecError::FutureSchema { ref event_type, version: 4, current: 3 } if event_type == "Deposited"),
        "{source:?}"
    );
}

#[test]
fn a_v1_event_the_upcaster_cannot_read_names_the_step() {
    let (_dir, store) = open_store();
    store
        .append("account-1", ExpectedRevision::NoStream, vec![raw_event(1, "Deposited", r#"{"amount":"x"}"#, 1)])
        .unwrap();
    let stored = store.read_last("account-1").unwrap().unwrap();
    let error = bank_codec().decode_recorded(&stored).unwrap_err();
    assert!(matches!(error, CodecError::Upcast { from_version: 1, .. }), "{error:?}");
}
