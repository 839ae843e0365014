//! The sign-up example (`examples/signup`) with its events in a real
//! `stele serve` process instead of an embedded store: the HTTP API, the
//! read-model projection and the mailer each reach the server over gRPC,
//! and talk to each other only through its log. They ride out a restart
//! of the app and one of the server.

#[path = "../../../examples/signup/tests/support/mod.rs"]
mod signup;
mod support;

use std::collections::HashSet;

use signup::{wait_for, SmtpMode, SmtpServer, TestApp};
use stele_example_signup::user::email_stream;

#[test]
fn the_sign_up_flow_runs_on_a_server_and_resumes_after_a_restart() {
    let server = support::start();
    let connection_string = format!("kurrentdb://{}?tls=false", server.address());
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let mut app = TestApp::start_on_server(dir.path(), &smtp, &connection_string);

    let ann = app.sign_up_ok("Ann", "ann@example.org");
    assert_eq!(app.sign_up("Copycat", "ann@example.org").status, 409, "the address is taken");
    let found = app.wait_for_user(&ann);
    assert_eq!(found["email"], "ann@example.org");
    wait_for("Ann's activation email", || {
        smtp.count_by_recipient("activation").contains_key("ann@example.org").then_some(())
    });

    // The events are in the server's log, as any client sees them.
    let reservation = server.get(&format!("/streams/{}", support::encode(&email_stream("ann@example.org"))));
    assert_eq!(reservation.status, 200, "{}", reservation.text());
    let reserved = reservation.json();
    assert_eq!(reserved["events"].as_array().map(Vec::len), Some(1), "{reserved}");

    // Restart the app during an SMTP outage with one email owed: it
    // resumes from its checkpoints against the server and sends nothing twice.
    smtp.set_mode(SmtpMode::Down);
    let bob = app.sign_up_ok("Bob", "bob@example.org");
    wait_for("the mailer to be retrying", || (smtp.connections_turned_away() >= 1).then_some(()));
    app.restart();
    assert_eq!(app.get(&format!("/users/{ann}")).status, 200);
    assert_eq!(app.sign_up("Copycat", "bob@example.org").status, 409);
    smtp.set_mode(SmtpMode::Up);
    app.wait_for_user(&bob);
    wait_for("Bob's activation email", || {
        smtp.count_by_recipient("activation").contains_key("bob@example.org").then_some(())
    });
    let counts = smtp.count_by_recipient("activation");
    assert_eq!(counts["ann@example.org"], 1, "resent after the restart: {counts:?}");
    let recipients: HashSet<&String> = counts.keys().collect();
    assert_eq!(recipients.len(), 2, "{counts:?}");

    // Now the server restarts under the running app: its components
    // subscribe again and carry on, and sign-ups work once it is back.
    let server = support::restart_in_place(server);
    let cleo = app.sign_up_ok("Cleo", "cleo@example.org");
    assert_eq!(app.wait_for_user(&cleo)["email"], "cleo@example.org");
    wait_for("Cleo's activation email", || {
        smtp.count_by_recipient("activation").contains_key("cleo@example.org").then_some(())
    });
    let counts = smtp.count_by_recipient("activation");
    assert_eq!((counts["ann@example.org"], counts["bob@example.org"]), (1, 1), "{counts:?}");
    assert!(!dir.path().join("store").exists(), "no embedded store was opened");
    drop(server);
}
