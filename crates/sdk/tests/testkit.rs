//! The test kit on the bank-account decider: the rules, and what a failing
//! expectation says.

mod common;

use common::*;
use steledb_sdk::testkit::given;

fn opened() -> AccountEvent {
    AccountEvent::Opened { owner: "ann".into(), account_number: "n-1".into(), opened_at_us: 0 }
}

fn deposited(amount_cents: u64) -> AccountEvent {
    AccountEvent::Deposited { amount_cents, currency: "EUR".into() }
}

#[test]
fn the_bank_rules() {
    let state = given(Bank, [opened(), deposited(500)])
        .when(AccountCommand::Withdraw { amount_cents: 200 })
        .then([AccountEvent::Withdrawn { amount_cents: 200 }]);
    assert_eq!(state.balance_cents, 300);

    given(Bank, [opened(), deposited(500)])
        .when(AccountCommand::Withdraw { amount_cents: 501 })
        .then_error(AccountError::InsufficientFunds { balance_cents: 500, requested_cents: 501 });
    given(Bank, []).when(AccountCommand::Deposit { amount_cents: 1 }).then_error(AccountError::NotOpen);
    given(Bank, [opened()]).when(AccountCommand::Deposit { amount_cents: 0 }).then_error(AccountError::ZeroAmount);
    given(Bank, [opened(), deposited(70)])
        .when(AccountCommand::Close)
        .then([AccountEvent::Withdrawn { amount_cents: 70 }, AccountEvent::Closed]);
    given(Bank, [opened(), AccountEvent::Closed])
        .when(AccountCommand::Deposit { amount_cents: 1 })
        .then_error_matches("the account is closed", |e| *e == AccountError::Closed);
}

#[test]
fn the_context_supplies_time_and_ids() {
    let at = ctx(1_234, 42);
    let expected = AccountEvent::Opened {
        owner: "bob".into(),
        account_number: at.id("account-number").to_string(),
        opened_at_us: 1_234,
    };
    let state = given(Bank, []).at(at).when(AccountCommand::Open { owner: "bob".into() }).then([expected]);
    assert_eq!(state.owner.as_deref(), Some("bob"));
}

fn panic_message(run: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(run).expect_err("the expectation should have failed");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .expect("a text panic")
}

#[test]
fn a_failed_expectation_shows_expected_and_actual() {
    let message = panic_message(|| {
        given(Bank, [opened()]).when(AccountCommand::Deposit { amount_cents: 5 }).then([deposited(6)]);
    });
    assert!(message.contains("when command: Deposit"), "{message}");
    assert!(message.contains("expected events: [\n    Deposited {\n        amount_cents: 6"), "{message}");
    assert!(message.contains("actual events: [\n    Deposited {\n        amount_cents: 5"), "{message}");

    let message = panic_message(|| {
        given(Bank, []).when(AccountCommand::Deposit { amount_cents: 5 }).then([deposited(5)]);
    });
    assert!(message.contains("but was refused: NotOpen"), "{message}");

    let message = panic_message(|| {
        given(Bank, [opened()]).when(AccountCommand::Deposit { amount_cents: 5 }).then_error(AccountError::NotOpen);
    });
    assert!(message.contains("expected error: NotOpen"), "{message}");
    assert!(message.contains("but was accepted with events"), "{message}");

    let message = panic_message(|| {
        given(Bank, []).when(AccountCommand::Close).then_error(AccountError::Closed);
    });
    assert!(message.contains("expected error: Closed\n  actual error: NotOpen"), "{message}");
}
