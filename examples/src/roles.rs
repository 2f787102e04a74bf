//! The server and client roles the two-sided examples (`echo`, `rpc`) share: a program run as
//! `NAME serve CONFIG` serves one client; `NAME CONNECT_WORD CONFIG …` is the client; `NAME
//! CONFIG …` does both, with the client in a second process (this binary re-executed) or, for
//! an in-process backend, in a task.

use crate::ConfigSource;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use transport::{BoxTransport, TransportConfig};

/// Which role a command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serve one client, then exit.
    Serve,
    /// Be the client.
    Connect,
    /// Both: serve, and start the client.
    Both,
}

impl Role {
    /// Splits the role word (`serve` or `connect_word`) off the front of `args`; without one,
    /// [`Role::Both`].
    pub fn from_args<'a>(args: &'a [String], connect_word: &str) -> (Role, &'a [String]) {
        match args.first().map(String::as_str) {
            Some("serve") => (Role::Serve, &args[1..]),
            Some(w) if w == connect_word => (Role::Connect, &args[1..]),
            _ => (Role::Both, args),
        }
    }
}

/// A boxed client run, for the in-process case.
pub type ClientRun = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// How [`serve`] starts the client in [`Role::Both`].
pub struct Client {
    /// The word of this binary's client role: the child runs `THIS_BINARY connect_word URL
    /// extra…`.
    pub connect_word: &'static str,
    /// Arguments after the URL (counts and the like).
    pub extra: Vec<String>,
    /// The client as a task, for in-process backends: given the configuration to connect with.
    pub in_process: Box<dyn FnOnce(ConfigSource) -> ClientRun + Send>,
}

/// The server role: listens as `source` says and prints one line, `server: listening with …;
/// a client connects with …`, that ends with the URL clients use (tests wait for it). Then it
/// starts `client` if given, accepts one peer, runs `service` on it and prints the summary line
/// `service` returns. Fails if the service or the client fails.
pub async fn serve<S>(
    source: &ConfigSource,
    client: Option<Client>,
    service: S,
) -> Result<(), String>
where
    S: AsyncFnOnce(&BoxTransport) -> Result<String, String>,
{
    let listener = source.listen().await.map_err(|e| e.to_string())?;
    let connect_to: TransportConfig = listener.connect_config();
    println!(
        "server: listening with `{}`; a client connects with `{connect_to}`",
        source.config
    );
    let peer = ConfigSource {
        config: connect_to,
        file: None,
    };
    let (client_task, mut child) = match client {
        None => (None, None),
        Some(c) if source.in_process() => (Some(tokio::spawn((c.in_process)(peer))), None),
        Some(c) => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let child = tokio::process::Command::new(exe)
                .arg(c.connect_word)
                .arg(peer.config.to_string())
                .args(&c.extra)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("spawning the client: {e}"))?;
            (None, Some(child))
        }
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
    let summary = service(&server).await?;
    println!("server: {summary}");
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

/// Reads the optional numbers after the configuration: at most `defaults.len()` of them,
/// the rest taking their defaults. `names` name them in errors.
pub fn numbers<const N: usize>(
    rest: &[String],
    names: [&str; N],
    defaults: [u64; N],
) -> Result<[u64; N], String> {
    if rest.len() > N {
        return Err(format!("unexpected argument `{}`", rest[N]));
    }
    let mut out = defaults;
    for (i, arg) in rest.iter().enumerate() {
        out[i] = arg
            .parse()
            .map_err(|_| format!("{} must be a number, got `{arg}`", names[i]))?;
    }
    Ok(out)
}

/// A program's exit: success, or its error on one line of standard error (prefixed with
/// `program`) and status 1.
pub fn exit_code(program: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
