//! The echo demo: a generic service run over the backend named by a configuration.
//!
//! ```text
//! echo [serve | connect] [URL | --config FILE] [COUNT]
//! ```
//!
//! * `echo serve URL` listens, serves one client until it closes, and exits.
//! * `echo connect URL [COUNT]` connects and checks COUNT round trips (default 1000).
//! * `echo URL [COUNT]` (no role) does both: the client runs as a second process (this binary
//!   re-executed with `connect`), or as a task for the in-process `mem` backend.
//!
//! URL defaults to `mem://echo-demo`; `--config FILE` reads the backend and its options from a
//! TOML file instead (`backend = "hub"`, `address = "/tmp/h.sock"`, `[options]` …).

use examples::roles::{self, Client, Role};
use examples::{ConfigSource, EchoRequest, echo_service};
use std::process::ExitCode;
use std::time::Instant;
use transport::{FrameHeader, Transport, TypedTransport};

/// Round trips of the client role when COUNT is not given.
const CLIENT_COUNT: u64 = 1000;
/// Round trips when both roles run and COUNT is not given.
const DEMO_COUNT: u64 = 10_000;

async fn client<T: Transport + ?Sized>(t: &T, count: u64) -> Result<(), String> {
    let start = Instant::now();
    for seq in 0..count {
        let req = EchoRequest {
            seq,
            text: format!("hello #{seq}"),
        };
        t.send_msg(
            FrameHeader {
                msg_id: seq,
                ..Default::default()
            },
            &req,
        )
        .await
        .map_err(|e| format!("send: {e}"))?;
        let (h, back) = t
            .recv_msg::<EchoRequest>()
            .await
            .map_err(|e| format!("recv: {e}"))?;
        if back != req || h.msg_id != seq {
            return Err(format!("echo #{seq} came back as {back:?}"));
        }
    }
    let el = start.elapsed();
    println!(
        "client: {count} round trips over `{}` in {el:?} ({:.2} µs each)",
        t.backend(),
        el.as_secs_f64() * 1e6 / count.max(1) as f64
    );
    t.close();
    Ok(())
}

/// The client role: connects and runs the round trips.
async fn connect(source: ConfigSource, count: u64) -> Result<(), String> {
    let t = source.connect().await.map_err(|e| e.to_string())?;
    client(&t, count).await
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let (role, args) = Role::from_args(&args, "connect");
    let (source, rest) =
        ConfigSource::from_args(args, "mem://echo-demo").map_err(|e| e.to_string())?;
    let service = async |t: &transport::BoxTransport| {
        let served = echo_service(t).await.map_err(|e| e.to_string())?;
        Ok(format!("served {served} requests; stats {:?}", t.stats()))
    };
    match role {
        Role::Serve => {
            roles::numbers(rest, [], [])?;
            roles::serve(&source, None, service).await
        }
        Role::Connect => {
            let [count] = roles::numbers(rest, ["COUNT"], [CLIENT_COUNT])?;
            connect(source, count).await
        }
        Role::Both => {
            let [count] = roles::numbers(rest, ["COUNT"], [DEMO_COUNT])?;
            let client = Client {
                connect_word: "connect",
                extra: vec![count.to_string()],
                in_process: Box::new(move |peer| Box::pin(connect(peer, count))),
            };
            roles::serve(&source, Some(client), service).await
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    roles::exit_code("echo", run(std::env::args().skip(1).collect()).await)
}
