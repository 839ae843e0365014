//! The sign-up flow end to end: the app on a real store in a temporary
//! directory, real HTTP over a socket, a real SQLite read model, and real
//! SMTP to a test server. Time for reminders is a simulated clock.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use serde_json::json;
use stele_example_signup::mail::MAIL_GATEWAY;
use stele_example_signup::user::email_stream;
use steledb_sdk::dead_letter_stream;
use support::{http, wait_for, SmtpMode, SmtpServer, TestApp, REMINDER_DELAY_US, START_US};

#[test]
fn sign_up_answers_201_with_the_id_and_field_errors_with_stable_codes() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let app = TestApp::start(dir.path(), &smtp);

    let created = app.sign_up("Ann Lee", " Ann@Example.org ");
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(created.headers["location"], format!("/users/{id}"));
    assert_eq!(created.json()["email"], "ann@example.org");

    let cases = [
        (json!({ "name": "", "email": "b@example.org" }), 400, "name", "blank"),
        (json!({ "name": "  ", "email": "b@example.org" }), 400, "name", "blank"),
        (json!({ "email": "b@example.org" }), 400, "name", "blank"),
        (json!({ "name": "Bob", "email": "" }), 400, "email", "blank"),
        (json!({ "name": "Bob" }), 400, "email", "blank"),
        (json!({ "name": "Bob", "email": "bob.example.org" }), 400, "email", "malformed"),
        (json!({ "name": "Bob", "email": "bob@example" }), 400, "email", "malformed"),
        (json!({ "name": "Bob\r\nBcc: x@y.z", "email": "b@example.org" }), 400, "name", "invalid_characters"),
        // Taken, in another case and with spaces: the normalized address is what is unique.
        (json!({ "name": "Ann Again", "email": "ANN@example.ORG" }), 409, "email", "taken"),
    ];
    for (body, status, field, code) in cases {
        let response = http(app.address(), "POST", "/signups", Some(&body.to_string()));
        assert_eq!(response.status, status, "{body}: {}", response.body);
        assert_eq!(response.json(), json!({ "field": field, "code": code }), "{body}");
    }
    let not_json = http(app.address(), "POST", "/signups", Some("{not json"));
    assert_eq!((not_json.status, not_json.json()["code"].as_str()), (400, Some("invalid_body")));

    // Refused sign-ups wrote nothing: one account stream, one reservation.
    assert_eq!(app.read(&email_stream("ann@example.org")).len(), 1);
}

#[test]
fn concurrent_sign_ups_with_one_email_give_exactly_one_201_and_one_409() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let app = TestApp::start(dir.path(), &smtp);
    let address = app.address();
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let email = format!("race{round}@example.org");
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|racer| {
                let (barrier, email) = (barrier.clone(), email.clone());
                std::thread::spawn(move || {
                    let body = json!({ "name": format!("Racer {racer}"), "email": email }).to_string();
                    barrier.wait();
                    http(address, "POST", "/signups", Some(&body))
                })
            })
            .collect();
        let mut responses: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        responses.sort_by_key(|r| r.status);
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [201, 409], "round {round}: {:?}", responses.iter().map(|r| &r.body).collect::<Vec<_>>());
        assert_eq!(responses[1].json(), json!({ "field": "email", "code": "taken" }));

        // The reservation names the winner, and only the winner.
        let winner = responses[0].json()["id"].as_str().unwrap().to_owned();
        let reservation = app.read(&email_stream(&email));
        assert_eq!(reservation.len(), 1, "round {round}");
        let data: serde_json::Value = serde_json::from_slice(reservation[0].data()).unwrap();
        assert_eq!(data["user_id"], winner.as_str(), "round {round}");
    }
    // The read model ends with one account per address.
    for round in 0..ROUNDS {
        let email = format!("race{round}@example.org");
        let user = wait_for(&format!("{email} in the read model"), || {
            let response = app.get(&format!("/users?email={email}"));
            (response.status == 200).then(|| response.json())
        });
        assert_eq!(user["email"], email.as_str());
    }
}

#[test]
fn users_are_found_by_id_and_by_email_once_the_projection_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let app = TestApp::start(dir.path(), &smtp);
    let id = app.sign_up_ok("Cleo", "Cleo@Example.org");

    let user = app.wait_for_user(&id);
    assert_eq!(
        user,
        json!({
            "id": id, "name": "Cleo", "email": "cleo@example.org", "status": "pending",
            "signed_up_at_us": START_US, "activated_at_us": null,
        })
    );
    // Searched in any case: the query normalizes like the command side.
    let by_email = app.get("/users?email=CLEO@example.org");
    assert_eq!((by_email.status, by_email.json()), (200, user));

    let activated = app.post(&format!("/users/{id}/activate"));
    assert_eq!((activated.status, activated.json()), (200, json!({ "id": id, "status": "active" })));
    let active = wait_for("the activation in the read model", || {
        let user = app.get(&format!("/users/{id}")).json();
        (user["status"] == "active").then_some(user)
    });
    assert_eq!(active["activated_at_us"], START_US);
    // A second activation is a no-op, not an error.
    assert_eq!(app.post(&format!("/users/{id}/activate")).status, 200);

    assert_eq!(app.get("/users/00000000-0000-0000-0000-000000000000").status, 404);
    assert_eq!(app.get("/users/not-a-uuid").status, 404);
    assert_eq!(app.get("/users?email=nobody@example.org").status, 404);
    assert_eq!(app.get("/users?email=").json(), json!({ "field": "email", "code": "blank" }));
    let unknown = app.post("/users/00000000-0000-0000-0000-000000000000/activate");
    assert_eq!((unknown.status, unknown.json()), (404, json!({ "code": "user_not_found" })));
}

#[test]
fn one_activation_email_per_account() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let app = TestApp::start(dir.path(), &smtp);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.sign_up_ok(&format!("User {i}"), &format!("user{i}@example.org")));
    }
    wait_for("5 activation emails", || (smtp.count_by_recipient("activation").len() == 5).then_some(()));
    // The mailer delivers in log order: once a later account's mail is
    // out, any repeat of the earlier ones would have been sent already.
    app.sign_up_ok("Last", "last@example.org");
    wait_for("the last activation email", || {
        smtp.count_by_recipient("activation").contains_key("last@example.org").then_some(())
    });

    let counts = smtp.count_by_recipient("activation");
    for i in 0..5 {
        assert_eq!(counts[&format!("user{i}@example.org")], 1, "{counts:?}");
    }
    let message = smtp.messages().into_iter().find(|m| m.to == "user0@example.org").unwrap();
    assert_eq!(message.header("subject"), Some("Activate your account"));
    assert_eq!(message.message_id(), format!("<activation-{}@signup.stele.example>", ids[0]));
    assert!(message.data.contains(&format!("/users/{}/activate", ids[0])), "{}", message.data);
    assert_eq!(smtp.connections_turned_away(), 0);
}

/// A mailbox the SMTP server refuses for good does not hold up anyone
/// else's mail: the refusal is recorded in the mailer's dead-letter stream.
#[test]
fn a_refused_mailbox_becomes_a_dead_letter_and_the_mail_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let app = TestApp::start(dir.path(), &smtp);
    app.sign_up_ok("First", "first@example.org");
    let refused = app.sign_up_ok("Nobody", "nobody@example.org");
    app.sign_up_ok("Last", "last@example.org");
    wait_for("the mail after the refused one", || {
        smtp.count_by_recipient("activation").contains_key("last@example.org").then_some(())
    });
    let counts = smtp.count_by_recipient("activation");
    assert_eq!(counts.len(), 2, "{counts:?}");

    let store = app.app().store();
    let letters = store.read_forward(&dead_letter_stream(MAIL_GATEWAY), 0, 10).unwrap();
    assert_eq!(letters.len(), 1);
    let letter: serde_json::Value = serde_json::from_slice(letters[0].data()).unwrap();
    assert_eq!(letter["stream"], format!("user-{refused}"), "{letter}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("550") && reason.contains("mailbox unavailable"), "{letter}");
}

#[test]
fn emails_queued_during_an_smtp_outage_are_all_delivered_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let app = TestApp::start(dir.path(), &smtp);
    app.sign_up_ok("Before", "before@example.org");
    wait_for("the mail before the outage", || (!smtp.messages().is_empty()).then_some(()));

    for (phase, mode) in [("down", SmtpMode::Down), ("refusing", SmtpMode::Refuse)] {
        smtp.set_mode(mode);
        let turned_away_before = smtp.connections_turned_away();
        let emails: Vec<String> = (0..3).map(|i| format!("{phase}{i}@example.org")).collect();
        for email in &emails {
            app.sign_up_ok("Patient", email);
        }
        // Sign-ups do not wait for mail: all three answered while SMTP is out.
        // Let the mailer fail enough times to open its breaker (threshold 3).
        wait_for(&format!("the mailer to retry while SMTP is {phase}"), || {
            (smtp.connections_turned_away() >= turned_away_before + 4).then_some(())
        });
        let counts = smtp.count_by_recipient("activation");
        assert!(emails.iter().all(|e| !counts.contains_key(e)), "delivered while {phase}: {counts:?}");

        smtp.set_mode(SmtpMode::Up);
        wait_for(&format!("the mail queued while SMTP was {phase}"), || {
            let counts = smtp.count_by_recipient("activation");
            emails.iter().all(|e| counts.contains_key(e)).then_some(())
        });
    }
    // At least once, never lost; and no repeats of mail delivered before.
    let counts = smtp.count_by_recipient("activation");
    assert_eq!(counts.len(), 7, "{counts:?}");
    assert_eq!(counts["before@example.org"], 1);
}

#[test]
fn the_reminder_fires_for_an_account_not_activated_in_time_and_not_for_an_activated_one() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let app = TestApp::start(dir.path(), &smtp);
    let idle = app.sign_up_ok("Idle", "idle@example.org");
    let eager = app.sign_up_ok("Eager", "eager@example.org");
    assert_eq!(app.post(&format!("/users/{eager}/activate")).status, 200);

    let idle_timer = format!("activation-reminder-{idle}");
    let eager_timer = format!("activation-reminder-{eager}");
    wait_for("the idle timer scheduled and the eager one cancelled", || {
        let events = app.timer_events();
        let has = |kind: &str, id: &str| events.iter().any(|(k, t)| k == kind && t == id);
        (has("TimerScheduled", &idle_timer) && has("TimerCancelled", &eager_timer)).then_some(())
    });

    // One second before the due time: ticks go by and nothing fires.
    app.clock.set_us(START_US + REMINDER_DELAY_US - 1_000_000);
    let ticks = app.app().timer_ticks();
    wait_for("two more timer ticks", || (app.app().timer_ticks() >= ticks + 2).then_some(()));
    assert!(!app.timer_events().iter().any(|(kind, _)| kind == "TimerFired"));

    app.clock.set_us(START_US + REMINDER_DELAY_US + 1_000_000);
    wait_for("the reminder email", || (!smtp.count_by_recipient("reminder").is_empty()).then_some(()));
    let fired: Vec<String> =
        app.timer_events().into_iter().filter(|(kind, _)| kind == "TimerFired").map(|(_, id)| id).collect();
    // Both timers were due in the same tick; only the pending one fired.
    assert_eq!(fired, [idle_timer]);
    let reminders = smtp.count_by_recipient("reminder");
    assert_eq!(reminders.get("idle@example.org"), Some(&1), "{reminders:?}");
    assert!(!reminders.contains_key("eager@example.org"), "{reminders:?}");
    let reminder = smtp.messages().into_iter().find(|m| m.kind() == "reminder").unwrap();
    assert_eq!(reminder.header("subject"), Some("Reminder: activate your account"));
}

#[test]
fn a_restart_keeps_state_resumes_mail_where_it_stopped_and_does_not_resend() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let mut app = TestApp::start(dir.path(), &smtp);
    let sent: Vec<String> = (0..3).map(|i| format!("sent{i}@example.org")).collect();
    let mut ids = Vec::new();
    for email in &sent {
        ids.push(app.sign_up_ok("Early", email));
    }
    wait_for("the first three emails", || (smtp.count_by_recipient("activation").len() == 3).then_some(()));
    for id in &ids {
        app.wait_for_user(id);
    }

    // Stop the mail component in the middle of an outage, with two emails owed.
    smtp.set_mode(SmtpMode::Down);
    let owed: Vec<String> = (0..2).map(|i| format!("owed{i}@example.org")).collect();
    for email in &owed {
        app.sign_up_ok("Late", email);
    }
    wait_for("the mailer to be retrying", || (smtp.connections_turned_away() >= 1).then_some(()));
    app.restart();

    // State survived: the read model answers at once (its own file), and
    // the addresses are still taken.
    for id in &ids {
        assert_eq!(app.get(&format!("/users/{id}")).status, 200);
    }
    assert_eq!(app.sign_up("Copycat", &sent[0]).status, 409);
    assert_eq!(app.sign_up("Copycat", &owed[1]).status, 409);

    smtp.set_mode(SmtpMode::Up);
    wait_for("the owed emails after the restart", || {
        let counts = smtp.count_by_recipient("activation");
        owed.iter().all(|e| counts.contains_key(e)).then_some(())
    });
    let counts = smtp.count_by_recipient("activation");
    for email in &sent {
        assert_eq!(counts[email], 1, "resent after restart: {counts:?}");
    }
    let recipients: HashSet<&String> = counts.keys().collect();
    assert_eq!(recipients.len(), 5, "{counts:?}");
}

/// A child process killed when dropped, so a failing test leaves none behind.
struct Binary(std::process::Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `stele-signup` binary on `data_dir`, and the address it listens on.
fn start_binary(data_dir: &std::path::Path, smtp: &SmtpServer) -> (Binary, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_stele-signup"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--smtp", &smtp.address().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start stele-signup");
    let mut banner = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let address = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {banner:?}"));
    (Binary(child), address)
}

fn sign_up_at(address: std::net::SocketAddr, name: &str, email: &str) -> u16 {
    let body = json!({ "name": name, "email": email }).to_string();
    http(address, "POST", "/signups", Some(&body)).status
}

#[test]
fn the_binary_serves_on_flags_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let data_dir = dir.path().join("data");
    let (mut child, address) = start_binary(&data_dir, &smtp);

    assert_eq!(sign_up_at(address, "Dee", "dee@example.org"), 201);
    wait_for("the binary's activation email", || smtp.count_by_recipient("activation").get("dee@example.org").copied());

    let terminated = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(data_dir.join("store").is_dir() && data_dir.join("users.sqlite").is_file());
}

#[test]
fn after_a_crash_the_binary_keeps_every_account_and_resends_at_most_the_mail_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let data_dir = dir.path().join("data");
    let (child, address) = start_binary(&data_dir, &smtp);
    let emails: Vec<String> = (0..3).map(|i| format!("crash{i}@example.org")).collect();
    for email in &emails {
        assert_eq!(sign_up_at(address, "Crash", email), 201);
    }
    wait_for("three emails before the crash", || (smtp.count_by_recipient("activation").len() == 3).then_some(()));
    drop(child); // SIGKILL: no checkpoint saved on the way out

    let (_child, address) = start_binary(&data_dir, &smtp);
    // Every acknowledged sign-up survived: the addresses are still taken.
    for email in &emails {
        assert_eq!(sign_up_at(address, "Again", email), 409, "{email}");
    }
    assert_eq!(sign_up_at(address, "After", "after@example.org"), 201);
    wait_for("the email after the restart", || smtp.count_by_recipient("activation").get("after@example.org").copied());
    let counts = smtp.count_by_recipient("activation");
    let sent_total: usize = counts.values().sum();
    assert_eq!(counts.len(), 4, "{counts:?}");
    // The mailer checkpoints after each delivery: at most one repeat.
    assert!(sent_total <= 5, "mass resend after the crash: {counts:?}");
}
