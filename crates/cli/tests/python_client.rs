//! An official client in another language: the KurrentDB Python client
//! (`kurrentdbclient`, installed by .ci/run) appends, reads, hits a wrong
//! expected version and subscribes against a real `stele serve`.
//!
//! Without Python or the package the test says so and passes, unless
//! `STELE_REQUIRE_PYTHON_CLIENT=1` (set by .ci/run) makes it mandatory.

mod support;

use std::process::Command;

#[test]
fn the_python_client_appends_reads_and_subscribes() {
    let available = Command::new("python3")
        .args(["-c", "import kurrentdbclient"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        assert!(
            std::env::var("STELE_REQUIRE_PYTHON_CLIENT").as_deref() != Ok("1"),
            "python3 with kurrentdbclient is required (pip install kurrentdbclient)"
        );
        eprintln!("skipped: python3 with kurrentdbclient is not installed (pip install kurrentdbclient)");
        return;
    }
    let server = support::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_client.py");
    let output = Command::new("timeout")
        .args(["120", "python3", script, &server.address().to_string()])
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.stderr_tail()
    );
    assert!(stdout.contains("python client: ok"), "{stdout}");
}
