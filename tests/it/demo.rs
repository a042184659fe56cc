//! `slo demo`, as a newcomer runs it: one command, the simulated cluster live against the
//! server over the real protocols, and the injected cause explained while it happens.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{BIN, http_get};

/// The demo prints the explain URL, names the injected cause (the HPA's scale-down of
/// hpa-scale-down) on its own and through the API, keeps serving after the scenario, and
/// stops on Ctrl-C (SIGINT) with success, keeping its data directory.
#[test]
fn the_demo_explains_the_injected_cause_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let http = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["demo", "--scenario", "hpa-scale-down", "--speed", "40", "--every", "1", "--http", &http])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start slo demo");
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx2.send(l))));
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(err).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));

    let deadline = Instant::now() + Duration::from_secs(150);
    let mut seen = Vec::new();
    let mut wait_for = |what: &dyn Fn(&str) -> bool| -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if what(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = Command::new("kill").args(["-KILL", &pid]).status();
                    panic!("slo demo did not print what was expected in time:\n{}", seen.join("\n"));
                }
            }
        }
    };
    let page = wait_for(&|l| l.contains("dashboard: http://"));
    assert!(page.ends_with(&format!("dashboard: http://{http}/services/llama-70b")), "{page}");
    let url = wait_for(&|l| l.contains("explain: http://"));
    assert!(url.contains(&format!("http://{http}/api/v1/explain?service=llama-70b")), "{url}");
    wait_for(&|l| l.contains("took effect") && l.contains("the cause"));
    let verdict = wait_for(&|l| l.starts_with("slo demo: llama-70b: p99 regressed"));
    assert!(verdict.ends_with("likely cause scale_down hpa/llama-70b"), "{verdict}");
    wait_for(&|l| l.starts_with("slo demo: the scenario is over"));

    // The same answer through the API the dashboard and scripts read.
    let (status, body) = http_get(&format!("http://{http}/api/v1/explain?service=llama-70b"));
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["causes"][0]["kind"], "scale_down", "{report:#}");
    assert_eq!(report["causes"][0]["object"], "hpa/llama-70b", "{report:#}");
    // And on the page the demo printed: the explain panel names it first.
    let (status, html) = http_get(&format!("http://{http}/services/llama-70b"));
    assert_eq!(status, 200, "{html}");
    let first = html.split("<li class=\"cause\">").nth(1).unwrap_or_default();
    assert!(first.contains("<b class=\"obj\">hpa&#x2F;llama-70b</b>"), "{first}");

    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let stop = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > stop {
            let _ = child.kill();
            panic!("slo demo did not stop within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}\n{}", seen.join("\n"));
    assert!(data.join("data").is_dir() && data.join("truth.json").is_file(), "the data directory is kept");
    assert!(std::net::TcpStream::connect(&http).is_err(), "nothing listens on {http} after the demo stopped");
}

/// Bad input to the demo is refused before anything is written: a port already taken, an
/// unknown scenario, a speed of zero.
#[test]
fn the_demo_refuses_bad_input_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tmp.path().join("demo");
    let dir_arg = dir.to_str().unwrap();
    for (args, says) in [
        (vec!["--http", addr.as_str()], "--http "),
        (vec!["--scenario", "no-such-scenario"], "--scenario \"no-such-scenario\""),
        (vec!["--speed", "0"], "--speed 0"),
    ] {
        let out = crate::support::slo(&[&["demo", "--data-dir", dir_arg][..], &args[..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!dir.exists(), "{args:?} wrote {}", dir.display());
    }
}
