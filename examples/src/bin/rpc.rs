//! Request/response over any backend: many calls in flight, answers matched by `msg_id`,
//! deadlines from `deadline_ns` (see [`examples::rpc`]).
//!
//! ```text
//! rpc [serve | call] [URL | --config FILE] [CALLS] [WINDOW]
//! ```
//!
//! * `rpc serve URL` serves one client until it closes, answering out of order.
//! * `rpc call URL [CALLS] [WINDOW]` makes CALLS checked calls (default 1000), WINDOW of them
//!   in flight at a time (default 64), some delayed by the server so that answers overtake each
//!   other; then three calls that must fail: one whose deadline passes while the server holds
//!   it, one whose deadline has passed before the server sees it, one with an unknown method.
//! * `rpc URL …` (no role) does both, the client in a second process (a task for `mem`).
//!
//! URL defaults to `mem://rpc-demo`; `--config FILE` reads the configuration from TOML.

use examples::ConfigSource;
use examples::roles::{self, Client, Role};
use examples::rpc::{self, CallError, DELAY, ECHO, RpcClient};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use transport::Transport;

/// Deadline of the calls that must be answered: far beyond any scheduling delay.
const GENEROUS: Duration = Duration::from_secs(60);
/// Deadline of the call the server holds for longer than it allows.
const SHORT: Duration = Duration::from_millis(50);

/// The payload of call `i`: methods and texts the answers are checked against.
fn request(i: u64) -> (u32, Vec<u8>) {
    let text = format!("call #{i}");
    if i % 8 == 3 {
        // Held 1..=4 ms by the server: later calls' answers overtake it.
        let mut p = (1 + (i % 4) as u32).to_le_bytes().to_vec();
        p.extend_from_slice(text.as_bytes());
        (DELAY, p)
    } else {
        (ECHO, text.into_bytes())
    }
}

/// The calls of the client role, over any transport.
async fn calls<T: Transport>(
    client: &RpcClient<T>,
    count: u64,
    window: u64,
) -> Result<String, String> {
    let start = Instant::now();
    let ids: Vec<u64> = (0..count).collect();
    for batch in ids.chunks(window.max(1) as usize) {
        let mut started = Vec::with_capacity(batch.len());
        for &i in batch {
            let (method, payload) = request(i);
            let call = client
                .start(method, payload.clone(), GENEROUS)
                .await
                .map_err(|e| format!("call #{i}: {e}"))?;
            started.push((call.msg_id(), payload, call));
        }
        for (msg_id, payload, call) in started {
            let answer = call.answer().await.map_err(|e| e.to_string())?;
            if answer.header.msg_id != msg_id || answer.bytes() != payload {
                return Err(format!(
                    "call {msg_id} was answered by {} with {:?}",
                    answer.header.msg_id,
                    answer.bytes()
                ));
            }
        }
    }
    let elapsed = start.elapsed();

    // Held "forever" by the server: the deadline passes first.
    match client
        .call(DELAY, u32::MAX.to_le_bytes().to_vec(), SHORT)
        .await
    {
        Err(CallError::DeadlineExceeded { .. }) => {}
        other => return Err(format!("a call held past its deadline gave {other:?}")),
    }
    // Deadline already passed when it leaves: the server must not answer it.
    match client.call(ECHO, "too late", Duration::ZERO).await {
        Err(CallError::DeadlineExceeded { .. }) => {}
        other => return Err(format!("a call with a past deadline gave {other:?}")),
    }
    match client.call(99, "?", GENEROUS).await {
        Err(CallError::Remote { message, .. }) if message.contains("unknown method 99") => {}
        other => return Err(format!("a call of an unknown method gave {other:?}")),
    }
    Ok(format!(
        "{count} calls over `{}` answered and checked in {elapsed:?}, at most {} in flight; \
         3 failing calls failed as they must (deadline, past deadline, unknown method); \
         late answers {}",
        client.transport().backend(),
        client.max_in_flight(),
        client.late_answers()
    ))
}

/// The client role: connects, runs [`calls`] beside the answer dispatcher, closes.
async fn call(source: ConfigSource, count: u64, window: u64) -> Result<(), String> {
    let t = source.connect().await.map_err(|e| e.to_string())?;
    let client = RpcClient::new(t);
    let work = async {
        let r = calls(&client, count, window).await;
        client.transport().close();
        r
    };
    let (dispatched, summary) = tokio::join!(client.dispatch(), work);
    let summary = summary?;
    dispatched.map_err(|e| format!("dispatch: {e}"))?;
    println!("client: {summary}");
    Ok(())
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let (role, args) = Role::from_args(&args, "call");
    let (source, rest) =
        ConfigSource::from_args(args, "mem://rpc-demo").map_err(|e| e.to_string())?;
    let service = async |t: &transport::BoxTransport| {
        let r = rpc::serve(t).await.map_err(|e| e.to_string())?;
        Ok(format!(
            "answered {} ({} errors); not answered: {} (deadline passed: {}, held at close: {})",
            r.answered,
            r.errors,
            r.expired + r.unanswered,
            r.expired,
            r.unanswered
        ))
    };
    let numbers = |rest| roles::numbers(rest, ["CALLS", "WINDOW"], [1000, 64]);
    match role {
        Role::Serve => {
            roles::numbers(rest, [], [])?;
            roles::serve(&source, None, service).await
        }
        Role::Connect => {
            let [count, window] = numbers(rest)?;
            call(source, count, window).await
        }
        Role::Both => {
            let [count, window] = numbers(rest)?;
            let client = Client {
                connect_word: "call",
                extra: vec![count.to_string(), window.to_string()],
                in_process: Box::new(move |peer| Box::pin(call(peer, count, window))),
            };
            roles::serve(&source, Some(client), service).await
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    roles::exit_code("rpc", run(std::env::args().skip(1).collect()).await)
}
