//! The echo demo: a generic service run over the backend named by a configuration string.
//!
//! `cargo run -p examples --bin echo -- [CONFIG] [COUNT]`, e.g. `mem://echo-demo`.
//! In-process backends run client and server as two tasks; other backends run the client as a
//! second process (this binary re-executed with `--client`).

use examples::{EchoRequest, echo_service, registry};
use std::process::ExitCode;
use std::time::Instant;
use transport_api::{FrameHeader, Transport, TransportConfig, TypedTransport};

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

async fn run(args: Vec<String>) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("--client") {
        let cfg: TransportConfig = args
            .get(1)
            .ok_or("--client needs a config")?
            .parse()
            .map_err(|e| format!("{e}"))?;
        let count = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(1000);
        let t = registry().connect(&cfg).await.map_err(|e| e.to_string())?;
        return client(&t, count).await;
    }
    let cfg: TransportConfig = args
        .first()
        .map(String::as_str)
        .unwrap_or("mem://echo-demo")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let count: u64 = match args.get(1) {
        Some(c) => c
            .parse()
            .map_err(|_| format!("COUNT must be a number, got `{c}`"))?,
        None => 10_000,
    };
    let listener = registry().listen(&cfg).await.map_err(|e| e.to_string())?;
    let connect = listener.connect_config();
    println!("server: listening with `{cfg}`; a client connects with `{connect}`");
    let in_process = cfg.backend == "mem";
    let (client_task, mut child) = if in_process {
        let task = tokio::spawn(async move {
            let t = registry()
                .connect(&connect)
                .await
                .map_err(|e| e.to_string())?;
            client(&t, count).await
        });
        (Some(task), None)
    } else {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(exe)
            .args(["--client", &connect.to_string(), &count.to_string()])
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning the client: {e}"))?;
        (None, Some(child))
    };
    // A client process that dies before connecting would leave `accept` waiting forever.
    let server = match child.as_mut() {
        Some(child) => tokio::select! {
            t = listener.accept() => t.map_err(|e| e.to_string())?,
            status = child.wait() => {
                return Err(match status {
                    Ok(s) => format!("the client process exited before connecting: {s}"),
                    Err(e) => format!("waiting for the client process: {e}"),
                });
            }
        },
        None => listener.accept().await.map_err(|e| e.to_string())?,
    };
    let served = echo_service(&server).await.map_err(|e| e.to_string())?;
    println!(
        "server: served {served} requests; stats {:?}",
        server.stats()
    );
    if let Some(c) = client_task {
        c.await.map_err(|e| e.to_string())??;
    }
    if let Some(child) = child.as_mut() {
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("the client process failed: {status}"));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}
