//! Running the example binaries from tests: one process, or a server and a client in two.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Hang guard for one program run; healthy runs take well under a second.
pub const GUARD: Duration = Duration::from_secs(60);

/// A path for a socket or file of this test process, named by `tag`.
pub fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("examples-test-{}-{tag}", std::process::id()))
}

/// Every URL form the workspace supports, with addresses unique to this test process. `mem` is
/// in-process only (see [`in_process`]).
pub fn urls(tag: &str) -> Vec<String> {
    vec![
        format!("mem://{tag}"),
        format!("shm://{}", temp_path(&format!("{tag}-shm.sock")).display()),
        format!(
            "hub://{}?max_peers=4",
            temp_path(&format!("{tag}-hub.sock")).display()
        ),
        "tcp://127.0.0.1:0".to_string(),
        format!(
            "unix://{}",
            temp_path(&format!("{tag}-unix.sock")).display()
        ),
    ]
}

/// True for URLs whose server and client must share a process.
pub fn in_process(url: &str) -> bool {
    url.starts_with("mem://")
}

/// Standard output and error of a finished run, for messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `exe args…` to its end (failing the test after [`GUARD`]).
pub async fn run(exe: &str, args: &[&str]) -> Output {
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {exe}: {e}"));
    tokio::time::timeout(GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{exe} {args:?} did not finish within {GUARD:?}"))
        .expect("waiting for the program")
}

/// Runs `exe serve URL` and, once it printed that it listens, `exe CONNECT_WORD URL
/// client_args…` (with the URL the server says clients use) as a second process. Both must
/// succeed; returns (server, client) standard outputs.
pub async fn serve_and_connect(
    exe: &str,
    url: &str,
    connect_word: &str,
    client_args: &[&str],
) -> (String, String) {
    let mut server = Command::new(exe)
        .args(["serve", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {exe} serve: {e}"));
    let mut lines = BufReader::new(server.stdout.take().expect("piped")).lines();
    let first = tokio::time::timeout(GUARD, lines.next_line())
        .await
        .expect("the server did not start listening in time")
        .expect("reading the server's output");
    let Some(first) = first else {
        let out = server.wait_with_output().await.expect("server output");
        panic!("the server exited before listening: {}", describe(&out));
    };
    let connect_url = first
        .split("a client connects with `")
        .nth(1)
        .and_then(|s| s.strip_suffix('`'))
        .unwrap_or_else(|| panic!("unexpected first line of the server: {first}"))
        .to_string();

    let mut args = vec![connect_word, connect_url.as_str()];
    args.extend_from_slice(client_args);
    let client = run(exe, &args).await;
    assert!(
        client.status.success(),
        "client over {url}: {}",
        describe(&client)
    );

    let rest = async {
        let mut text = first.clone();
        while let Some(line) = lines
            .next_line()
            .await
            .expect("reading the server's output")
        {
            text.push('\n');
            text.push_str(&line);
        }
        text
    };
    let server_out = tokio::time::timeout(GUARD, rest)
        .await
        .expect("the server did not finish in time");
    let server_done = tokio::time::timeout(GUARD, server.wait_with_output())
        .await
        .expect("the server did not exit in time")
        .expect("waiting for the server");
    assert!(
        server_done.status.success(),
        "server over {url}: {}\n{server_out}",
        describe(&server_done)
    );
    (
        server_out,
        String::from_utf8_lossy(&client.stdout).into_owned(),
    )
}
