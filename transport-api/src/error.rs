//! Typed errors returned by every transport.

use crate::frame::Frame;

/// Why a transport operation failed.
///
/// Every variant carries the values that explain it. Nothing a peer does (or writes into shared
/// memory) makes a transport panic; it surfaces as one of these variants instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The session was closed, by this side (`close()` or drop) or gracefully by the peer after
    /// all of its frames were delivered.
    #[error("the transport is closed")]
    Closed,
    /// The peer process or task went away without closing (for example it was killed). Frames it
    /// had fully published before dying were delivered first.
    #[error("the peer died; frames it fully sent before dying were delivered")]
    PeerDied,
    /// The payload is larger than this transport accepts. Nothing was sent or consumed.
    #[error("payload of {len} bytes exceeds this transport's maximum of {max} bytes")]
    PayloadTooLarge {
        /// Length of the refused payload.
        len: usize,
        /// The largest payload this transport accepts (`max_payload()`).
        max: usize,
    },
    /// The peer broke the protocol (or corrupted shared memory). The session is closed; this
    /// side keeps running.
    #[error("the peer broke the protocol, session closed: {detail}")]
    Corrupt {
        /// What was found, with the offending values.
        detail: String,
    },
    /// An operating-system call failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration given to a factory or constructor is invalid.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// A configuration file could not be used: unreadable, not TOML, an unknown key, a value of
    /// the wrong type, or an option its backend refused (see
    /// [`TransportError::in_file`](crate::TransportError::in_file)).
    #[error("{}", file_message(path, key.as_deref(), reason))]
    ConfigFile {
        /// The file (empty for configuration text that came from no file).
        path: std::path::PathBuf,
        /// The offending key (`options.ring` for an option), when one is to blame.
        key: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A typed message could not be encoded.
    #[error("failed to encode a `{ty}`: {source}")]
    Encode {
        /// The Rust type being encoded.
        ty: &'static str,
        /// The codec's error.
        source: postcard::Error,
    },
    /// A received payload could not be decoded as the requested type.
    #[error("failed to decode a `{ty}` from a {len}-byte payload: {source}")]
    Decode {
        /// The Rust type requested.
        ty: &'static str,
        /// Length of the payload that failed to decode.
        len: usize,
        /// The codec's error.
        source: postcard::Error,
    },
    /// The listener turned this peer away before anything was shared with it (no memory
    /// mapped, no session created). Waiting and retrying may help for [`Refusal::Full`], not for
    /// [`Refusal::NotAllowed`].
    #[error("refused by {listener}: {reason}")]
    Refused {
        /// The listener's address (socket path or host:port).
        listener: String,
        /// Why.
        reason: Refusal,
    },
    /// The operation is not supported by this backend.
    #[error("not supported by the `{backend}` backend: {what}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// What was asked for.
        what: String,
    },
}

/// Why a listener refused a connecting peer ([`TransportError::Refused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The listener's access policy does not admit the peer's credentials.
    #[error("uid {uid} / gid {gid} is not allowed by the listener's access policy")]
    NotAllowed {
        /// The peer's effective uid as the listener saw it.
        uid: u32,
        /// The peer's effective gid as the listener saw it.
        gid: u32,
    },
    /// Every session slot of the listener is taken (a hub with `max_peers` peers attached).
    #[error("full ({max_peers} peers attached)")]
    Full {
        /// How many peers the listener serves at once.
        max_peers: u64,
    },
    /// A reason this version does not know, by its wire code.
    #[error("refusal code {0}")]
    Other(u32),
}

fn file_message(path: &std::path::Path, key: Option<&str>, reason: &str) -> String {
    let key = key.map(|k| format!("key `{k}` ")).unwrap_or_default();
    if path.as_os_str().is_empty() {
        format!("{key}{reason}")
    } else {
        format!("{}: {key}{reason}", path.display())
    }
}

impl TransportError {
    /// Shorthand for a [`TransportError::Corrupt`] with a formatted detail.
    pub fn corrupt(detail: impl Into<String>) -> Self {
        TransportError::Corrupt {
            detail: detail.into(),
        }
    }

    /// True for the errors that end a session: `Closed`, `PeerDied` and `Corrupt`.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TransportError::Closed | TransportError::PeerDied | TransportError::Corrupt { .. }
        )
    }

    /// Attaches the configuration file `path` to a configuration error, so that a report made
    /// while using a configuration read from a file (an option the backend does not know, a
    /// value out of range) names the file: a `Config` error becomes a
    /// [`ConfigFile`](TransportError::ConfigFile) with that path, a `ConfigFile` error without a
    /// path gets it; every other error is returned unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use transport_api::TransportError;
    ///
    /// let e = TransportError::Config("unknown option `rign` for backend `shm`".into())
    ///     .in_file("transport.toml".as_ref());
    /// assert_eq!(
    ///     e.to_string(),
    ///     "transport.toml: unknown option `rign` for backend `shm`"
    /// );
    /// ```
    pub fn in_file(self, path: &std::path::Path) -> TransportError {
        match self {
            TransportError::Config(reason) => TransportError::ConfigFile {
                path: path.to_path_buf(),
                key: None,
                reason,
            },
            TransportError::ConfigFile {
                path: old,
                key,
                reason,
            } if old.as_os_str().is_empty() => TransportError::ConfigFile {
                path: path.to_path_buf(),
                key,
                reason,
            },
            other => other,
        }
    }
}

/// Why [`Transport::try_send`](crate::Transport::try_send) did not send.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// There is no room right now (queue or buffer memory full). The frame is handed back
    /// untouched so the caller can retry or wait.
    #[error("the transport is full; the frame was handed back")]
    Full(Frame),
    /// The send failed for a reason that waiting will not fix.
    #[error(transparent)]
    Failed(#[from] TransportError),
}

impl TrySendError {
    /// The frame, if it was handed back (`Full`).
    pub fn into_frame(self) -> Option<Frame> {
        match self {
            TrySendError::Full(f) => Some(f),
            TrySendError::Failed(_) => None,
        }
    }
}

/// Shorthand result type.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;
