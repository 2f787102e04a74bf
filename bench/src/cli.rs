//! Command-line parsing. Bad input never panics: it becomes an `Err(message)` that the caller
//! prints with [`USAGE`] before exiting with status 2.

use std::ffi::OsString;
use std::path::PathBuf;

/// Usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage: transport-bench [--quick] [--json PATH] [--svg PATH] [--placement split|same]
                       [--only NAME[,NAME...]] [--rounds N]

Measures round-trip latency (rtt: p50, p99) and one-way throughput (stream: msgs/s, GB/s) for
payloads of 8 B, 64 B, 1 KiB, 64 KiB and 1 MiB, between two processes where the backend allows;
for some rows also idle-gap round trips (rtt-gap10us, rtt-gap100us, rtt-gap1ms: 8 B pings, the
initiator sleeping that long before each one, so that a waiting peer parks and must be woken).

options:
  --quick              short run (well under a minute; a few hundred idle-gap pings)
  --json PATH          also write the records as a JSON array to PATH
  --svg PATH           also draw the ratio table (each row against `unix`) as an SVG chart
  --placement MODE     split: parent on CPU 0, peer on CPU 1 (default); same: both on CPU 0
  --only NAMES         run only these rows (comma-separated, or repeat the option)
  --rounds N           run the selected rows N times (1 to 50, default 1), in alternating
                       order; the table and JSON hold each cell's median over the rounds, and
                       a target check lists each same-round ratio (shm against iceoryx2 and
                       spin) with its median: robust against the machine changing speed
  -h, --help           print this help

rows: spin (shared-memory spin lower bound), eventfd (kernel wake), eventfd-spin (the parent
      spins for the answer: one wake per round trip, the reference for an idle-gap round trip),
      eventfd-rt, eventfd-rt-mt
      (the eventfd ping-pong through tokio's AsyncFd, current-thread / multi-thread runtimes),
      unix (tokio UnixStream),
      unix-mt (as unix, multi-thread runtimes), unix-t (the Transport trait over a Unix
      socket), mem (transport-mem, two threads), shm (transport-shm, two processes),
      shm-park, shm-park-mt (no spin: always parked; current-thread / multi-thread runtimes),
      shm-mt (default spin, multi-thread runtimes), shm-zc (transport-shm, zero-copy stream),
      shm-ro (transport-shm, the peer's slots mapped read-only),
      hub, hub-any (transport-shm hub host <-> one peer process; the host receives through the
      peer's session / through recv_any), hub-fanin-1, hub-fanin-4, hub-fanin-16 (N peer
      processes streaming 64 B and 64 KiB frames to one host), hub-attach (costs: attach,
      death, reclaim: p50/p99 of a few dozen samples);
      tcp, unix-net (transport-net over loopback / a Unix socket, two processes) beside
      tcp-codec, unix-codec (tokio streams with LengthDelimitedCodec, by hand);
      tcp-4tx, unix-net-4tx, tcp-codec-4tx, unix-codec-4tx (4 tasks streaming 64 B frames on
      one connection; the codec shared behind a tokio Mutex);
      with the cargo feature `peers`: iox2-poll, iox2-poll-zc, iox2-event (iceoryx2)";

/// Where the two peers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Parent on CPU 0, peer on CPU 1.
    Split,
    /// Both on CPU 0.
    Same,
}

impl Placement {
    /// The name used on the command line, in the table and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Split => "split",
            Placement::Same => "same",
        }
    }

    /// CPUs of (parent, peer).
    pub fn cpus(self) -> (usize, usize) {
        match self {
            Placement::Split => (0, 1),
            Placement::Same => (0, 0),
        }
    }

    fn parse(s: &str) -> Result<Placement, String> {
        match s {
            "split" => Ok(Placement::Split),
            "same" => Ok(Placement::Same),
            _ => Err(format!(
                "invalid --placement `{s}`: expected `split` or `same`"
            )),
        }
    }
}

/// Options of a benchmark run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Short durations and iteration counts.
    pub quick: bool,
    /// Where to write the JSON records, if anywhere.
    pub json: Option<PathBuf>,
    /// Where to draw the ratio chart (SVG), if anywhere.
    pub svg: Option<PathBuf>,
    /// Where the two peers run.
    pub placement: Placement,
    /// Rows to run (`None`: all).
    pub only: Option<Vec<String>>,
    /// How many times to run the selected rows (at least 1).
    pub rounds: u32,
}

/// Arguments of the peer process, started by the parent with the hidden `--child` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildArgs {
    /// Row name whose peer this process plays.
    pub backend: String,
    /// Process id of the parent; the child refuses to run for anyone else.
    pub ppid: u32,
    /// CPU to pin to, if any.
    pub cpu: Option<usize>,
    /// True when both peers share one CPU (spinning must yield).
    pub same_cpu: bool,
    /// Inherited file descriptors, in the order the row defines.
    pub fds: Vec<i32>,
    /// Rendezvous path for rows that connect through the file system.
    pub rendezvous: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print the usage and exit 0.
    Help,
    /// Run the benchmark.
    Run(Options),
    /// Play the peer of a row (hidden).
    Child(ChildArgs),
}

fn utf8(a: OsString) -> Result<String, String> {
    a.into_string()
        .map_err(|a| format!("argument {a:?} is not valid UTF-8"))
}

/// Parses the arguments (without the program name); `--only` accepts the names in `known_rows`.
pub fn parse(args: Vec<OsString>, known_rows: &[&str]) -> Result<Command, String> {
    let mut it = args.into_iter();
    let mut opts = Options {
        quick: false,
        json: None,
        svg: None,
        placement: Placement::Split,
        only: None,
        rounds: 1,
    };
    let mut first = true;
    while let Some(a) = it.next() {
        let a = utf8(a)?;
        if first && a == "--child" {
            return parse_child(it).map(Command::Child);
        }
        first = false;
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .ok_or_else(|| format!("option {what} needs a value"))
                    .and_then(utf8),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--quick" if inline.is_none() => opts.quick = true,
            "--json" => {
                let v = value("--json")?;
                if v.is_empty() {
                    return Err("--json needs a non-empty path".into());
                }
                opts.json = Some(PathBuf::from(v));
            }
            "--svg" => {
                let v = value("--svg")?;
                if v.is_empty() {
                    return Err("--svg needs a non-empty path".into());
                }
                opts.svg = Some(PathBuf::from(v));
            }
            "--placement" => opts.placement = Placement::parse(&value("--placement")?)?,
            "--only" => {
                let v = value("--only")?;
                let list = opts.only.get_or_insert_with(Vec::new);
                for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if !known_rows.contains(&n) {
                        return Err(format!(
                            "unknown row `{n}` in --only; known rows: {}",
                            known_rows.join(", ")
                        ));
                    }
                    if !list.iter().any(|x| x == n) {
                        list.push(n.to_string());
                    }
                }
                if list.is_empty() {
                    return Err("--only needs at least one row name".into());
                }
            }
            "--rounds" => {
                let v = value("--rounds")?;
                opts.rounds = match v.parse::<u32>() {
                    Ok(n @ 1..=50) => n,
                    _ => return Err(format!("invalid --rounds `{v}`: expected 1 to 50")),
                };
            }
            "--child" => return Err("--child is internal and must come first".into()),
            _ => return Err(format!("unexpected argument `{a}`")),
        }
    }
    Ok(Command::Run(opts))
}

fn parse_child(mut it: impl Iterator<Item = OsString>) -> Result<ChildArgs, String> {
    let backend = it
        .next()
        .ok_or("--child needs a row name")
        .map_err(String::from)
        .and_then(utf8)?;
    let mut c = ChildArgs {
        backend,
        ppid: 0,
        cpu: None,
        same_cpu: false,
        fds: Vec::new(),
        rendezvous: None,
    };
    while let Some(a) = it.next() {
        let a = utf8(a)?;
        let v = it
            .next()
            .ok_or_else(|| format!("child option {a} needs a value"))
            .and_then(utf8)?;
        let num = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("child option {a}: `{v}` is not a number"))
        };
        match a.as_str() {
            "--ppid" => {
                c.ppid = u32::try_from(num(&v)?).map_err(|_| format!("bad --ppid `{v}`"))?
            }
            "--cpu" if v == "none" => c.cpu = None,
            "--cpu" => c.cpu = Some(num(&v)? as usize),
            "--placement" => c.same_cpu = Placement::parse(&v)? == Placement::Same,
            "--fd" => c
                .fds
                .push(i32::try_from(num(&v)?).map_err(|_| format!("bad --fd `{v}`"))?),
            "--rendezvous" => c.rendezvous = Some(PathBuf::from(v)),
            _ => return Err(format!("unexpected child argument `{a}`")),
        }
    }
    if c.ppid == 0 {
        return Err("--child needs --ppid".into());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(
            args.iter().map(OsString::from).collect(),
            &["spin", "unix", "shm"],
        )
    }

    #[test]
    fn parses_options() {
        let Ok(Command::Run(o)) = p(&[
            "--quick",
            "--json",
            "/tmp/x.json",
            "--svg=/tmp/x.svg",
            "--placement=same",
            "--only",
            "spin,unix",
            "--rounds=3",
        ]) else {
            panic!("should parse");
        };
        assert!(o.quick);
        assert_eq!(o.json, Some(PathBuf::from("/tmp/x.json")));
        assert_eq!(o.svg, Some(PathBuf::from("/tmp/x.svg")));
        assert_eq!(o.placement, Placement::Same);
        assert_eq!(o.only, Some(vec!["spin".to_string(), "unix".to_string()]));
        assert_eq!(o.rounds, 3);
        let Ok(Command::Run(o)) = p(&[]) else {
            panic!("should parse");
        };
        assert_eq!(o.rounds, 1);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(p(&["--placement", "diagonal"]).is_err());
        assert!(p(&["--json"]).is_err());
        assert!(p(&["--svg"]).is_err());
        assert!(p(&["--svg="]).is_err());
        assert!(p(&["--only", "nope"]).is_err());
        assert!(p(&["--frobnicate"]).is_err());
        assert!(p(&["--rounds", "0"]).is_err());
        assert!(p(&["--rounds", "51"]).is_err());
        assert!(p(&["--rounds", "two"]).is_err());
        assert!(p(&["--quick", "--child", "spin"]).is_err());
        assert!(p(&["--child", "spin", "--cpu", "x", "--ppid", "1"]).is_err());
        assert!(p(&["--child"]).is_err());
    }

    #[test]
    fn parses_child() {
        let Ok(Command::Child(c)) = p(&[
            "--child",
            "spin",
            "--ppid",
            "42",
            "--cpu",
            "1",
            "--placement",
            "split",
            "--fd",
            "5",
        ]) else {
            panic!("should parse");
        };
        assert_eq!(c.backend, "spin");
        assert_eq!(c.ppid, 42);
        assert_eq!(c.cpu, Some(1));
        assert_eq!(c.fds, vec![5]);
        assert!(!c.same_cpu);
    }
}
