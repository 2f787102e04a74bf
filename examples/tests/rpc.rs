//! The request/response example over every URL form the workspace supports, server and
//! client in two processes (one for the in-process `mem`).

mod support;

use support::{describe, in_process, run, serve_and_connect, urls};

const RPC: &str = env!("CARGO_BIN_EXE_rpc");

/// What the client must report: every call checked, a full window in flight, the three
/// failing calls failed, no stray answer.
fn check_client(url: &str, client: &str) {
    assert!(
        client.contains("client: 400 calls over")
            && client.contains("answered and checked")
            && client.contains("at most 32 in flight")
            && client.contains("3 failing calls failed as they must")
            && client.contains("late answers 0"),
        "{url}: client said {client}"
    );
}

/// What the server must report: the 400 calls and the unknown method answered, the two calls
/// whose deadline could not be met not answered.
fn check_server(url: &str, server: &str) {
    assert!(
        server.contains("server: answered 401 (1 errors); not answered: 2"),
        "{url}: server said {server}"
    );
}

#[tokio::test]
async fn rpc_runs_over_every_url_form() {
    for url in urls("rpc") {
        if in_process(&url) {
            let out = run(RPC, &[&url, "400", "32"]).await;
            assert!(out.status.success(), "{url}: {}", describe(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            check_client(&url, &stdout);
            check_server(&url, &stdout);
            continue;
        }
        let (server, client) = serve_and_connect(RPC, &url, "call", &["400", "32"]).await;
        check_client(&url, &client);
        check_server(&url, &server);
    }
}
