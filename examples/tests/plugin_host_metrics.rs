//! `plugin-host --metrics 127.0.0.1:0`: the sessions' stats are served for Prometheus, and one
//! scrape on loopback finds the host's frame counter of every plugin session.

mod support;

use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn plugin_host_serves_session_stats_for_prometheus() {
    let mut host = Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .args(["--metrics", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning plugin-host");
    let stdin = host.stdin.take().expect("piped");
    let mut lines = BufReader::new(host.stdout.take().expect("piped")).lines();
    let mut seen = String::new();
    let mut addr = None;
    let read_until_served = async {
        while let Some(line) = lines
            .next_line()
            .await
            .expect("reading plugin-host's output")
        {
            if let Some(url) = line.strip_prefix("metrics: Prometheus text at http://") {
                addr = url
                    .strip_suffix("/metrics")
                    .map(|a| a.parse().expect("an address"));
            }
            let done = line.starts_with("metrics: still served");
            seen.push_str(&line);
            seen.push('\n');
            if done {
                return true;
            }
        }
        false
    };
    let served = tokio::time::timeout(support::GUARD, read_until_served)
        .await
        .expect("plugin-host did not finish its demo in time");
    assert!(served, "plugin-host ended without serving metrics:\n{seen}");
    let addr = addr.unwrap_or_else(|| panic!("no metrics address announced:\n{seen}"));

    let (status, body) = examples::metrics_http::get(addr, "/metrics")
        .await
        .expect("scraping the metrics endpoint");
    assert!(status.contains(" 200 "), "{status}\n{body}");
    // The host sent requests to each of the five plugin sessions (four, then a replacement).
    let frames_sent: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with("transport_frames_sent{session=\"peer#"))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a value")
        })
        .collect();
    assert!(
        frames_sent.len() >= 4 && frames_sent.iter().all(|&n| n > 0),
        "frame counters: {frames_sent:?}\n{body}"
    );
    assert!(
        body.contains("# TYPE transport_frames_sent counter"),
        "{body}"
    );
    assert!(
        body.contains("transport_slots_in_use{session=\"peer#"),
        "{body}"
    );
    let (status, _) = examples::metrics_http::get(addr, "/other")
        .await
        .expect("a second request");
    assert!(status.contains(" 404 "), "{status}");

    drop(stdin);
    let out = tokio::time::timeout(support::GUARD, host.wait_with_output())
        .await
        .expect("plugin-host did not exit after its input closed")
        .expect("waiting for plugin-host");
    assert!(out.status.success(), "{}", support::describe(&out));
}
