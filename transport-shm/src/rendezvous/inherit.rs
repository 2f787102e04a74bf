//! A child process that inherits a ready session socket: [`spawn_peer`] in the parent,
//! [`from_inherited`] in the child.

use super::config::ShmConfig;
use super::handshake::{io, join_handshake, serve_handshake};
use crate::os::sys;
use crate::session::ShmTransport;
use std::os::fd::AsFd;
use transport_api::{Result, TransportError};

/// Environment variable through which [`spawn_peer`] tells the child which descriptor holds its
/// session socket.
pub const INHERIT_ENV: &str = "TRANSPORT_SHM_FD";

/// Spawns `cmd` as a peer that inherits a ready session socket (no path, no rendezvous race):
/// the child calls [`from_inherited`]. Returns the child and this side's endpoint once the child
/// attached. The socket is inherited only by this child (close-on-exec is cleared in the child
/// alone, just before exec).
pub async fn spawn_peer(
    cmd: &mut std::process::Command,
    config: ShmConfig,
) -> Result<(std::process::Child, ShmTransport)> {
    use std::os::fd::AsRawFd;
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )
    .map_err(io)?;
    cmd.env(INHERIT_ENV, theirs.as_raw_fd().to_string());
    let hook = sys::inherit_in_child(cmd, theirs.as_fd());
    let spawned = cmd.spawn();
    drop(hook);
    cmd.env_remove(INHERIT_ENV);
    let mut child = spawned?;
    drop(theirs);
    let started = serve_handshake(ours, &config, "spawned child".to_string())
        .await
        .and_then(|mut t| {
            let pid = i32::try_from(child.id()).map_err(|_| {
                TransportError::Config(format!("child pid {} out of range", child.id()))
            })?;
            t.watch_process(pid)?;
            Ok(t)
        });
    match started {
        Ok(t) => Ok((child, t)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// In a process started by [`spawn_peer`]: adopts the inherited session socket named by
/// [`INHERIT_ENV`] and attaches. Call it once.
pub async fn from_inherited() -> Result<ShmTransport> {
    let raw = std::env::var(INHERIT_ENV).map_err(|_| {
        TransportError::Config(format!(
            "{INHERIT_ENV} is not set: this process was not started by spawn_peer"
        ))
    })?;
    let fd: i32 = raw.parse().map_err(|_| {
        TransportError::Config(format!("{INHERIT_ENV}=`{raw}` is not a descriptor number"))
    })?;
    let sock = sys::adopt_inherited_socket(fd).map_err(io)?;
    rustix::io::ioctl_fionbio(&sock, true).map_err(io)?;
    let c = ShmConfig::default();
    join_handshake(
        sock,
        "the parent process",
        c.session_options(),
        c.handshake_timeout,
    )
    .await
}
