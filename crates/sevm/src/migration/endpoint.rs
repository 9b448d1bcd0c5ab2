//! Migration URIs: where an outgoing stream goes (QMP `migrate`) and where
//! an incoming one comes from (`-incoming`, QMP `migrate-incoming`).

use std::path::PathBuf;

use super::MigrationError;
use crate::config::{split_host_port, IncomingConfig};
use crate::keyval::parse_u64;

/// Where a stream goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `file:PATH` (the snapshot is written to a temporary file in the same
    /// directory and renamed only when complete).
    File(PathBuf),
    /// `tcp:HOST:PORT`.
    Tcp(String),
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses a QMP `migrate` URI.
    pub fn parse(uri: &str) -> Result<Endpoint, MigrationError> {
        let bad = |problem: &str| MigrationError::Uri {
            uri: uri.to_string(),
            problem: problem.to_string(),
        };
        let (scheme, rest) = uri
            .split_once(':')
            .ok_or_else(|| bad("expected file:PATH, tcp:HOST:PORT or unix:PATH"))?;
        match scheme {
            "file" if !rest.is_empty() => Ok(Endpoint::File(PathBuf::from(rest))),
            "unix" if !rest.is_empty() => Ok(Endpoint::Unix(PathBuf::from(rest))),
            "tcp" => {
                let (host, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| bad("tcp: needs HOST:PORT"))?;
                let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
                let host = if host.is_empty() { "127.0.0.1" } else { host };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Ok(Endpoint::Tcp(if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }))
            }
            "file" | "unix" => Err(bad("needs a path")),
            "exec" => Err(bad(
                "exec: is not supported by sevm (use file:, tcp: or unix:)",
            )),
            _ => Err(bad("unknown transport (file:, tcp: or unix:)")),
        }
    }
}

/// Why an incoming URI cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriProblem {
    /// The URI property at fault (`offset`), if one is.
    pub property: Option<&'static str>,
    /// What is wrong.
    pub problem: String,
}

impl UriProblem {
    fn new(problem: impl Into<String>) -> Self {
        UriProblem {
            property: None,
            problem: problem.into(),
        }
    }
}

/// Parses an incoming URI: `file:PATH[,offset=N]`, `tcp:[HOST]:PORT`,
/// `unix:PATH` or `defer`.
pub fn parse_incoming(uri: &str) -> Result<IncomingConfig, UriProblem> {
    if uri == "defer" {
        return Ok(IncomingConfig::Defer);
    }
    let (scheme, rest) = uri.split_once(':').ok_or_else(|| {
        UriProblem::new(format!(
            "\"{uri}\" is not a migration URI (file:, tcp:, unix: or defer)"
        ))
    })?;
    match scheme {
        "file" => {
            let (path, offset) = match rest.rsplit_once(",offset=") {
                Some((path, off)) => (
                    path,
                    parse_u64(off).map_err(|problem| UriProblem {
                        property: Some("offset"),
                        problem,
                    })?,
                ),
                None => (rest, 0),
            };
            if path.is_empty() {
                return Err(UriProblem::new("file: needs a path"));
            }
            Ok(IncomingConfig::File {
                path: PathBuf::from(path),
                offset,
            })
        }
        "tcp" => {
            let (host, port) = split_host_port(rest).map_err(UriProblem::new)?;
            Ok(IncomingConfig::Tcp {
                host: host.to_string(),
                port,
            })
        }
        "unix" => {
            if rest.is_empty() {
                return Err(UriProblem::new("unix: needs a path"));
            }
            Ok(IncomingConfig::Unix(PathBuf::from(rest)))
        }
        other => Err(UriProblem::new(format!(
            "migration transport \"{other}:\" is not supported by sevm (file:, tcp:, unix: or defer)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            Endpoint::parse("file:/tmp/x").unwrap(),
            Endpoint::File("/tmp/x".into())
        );
        assert_eq!(
            Endpoint::parse("tcp:localhost:4444").unwrap(),
            Endpoint::Tcp("localhost:4444".into())
        );
        assert_eq!(
            Endpoint::parse("tcp::4444").unwrap(),
            Endpoint::Tcp("127.0.0.1:4444".into())
        );
        assert_eq!(
            Endpoint::parse("tcp:[::1]:4444").unwrap(),
            Endpoint::Tcp("[::1]:4444".into())
        );
        assert_eq!(
            Endpoint::parse("unix:/run/s").unwrap(),
            Endpoint::Unix("/run/s".into())
        );
        for bad in [
            "file:",
            "exec:cat",
            "tcp:host",
            "tcp:h:99999",
            "x",
            "rdma:h:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert!(Endpoint::parse("exec:cat")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
    }
}
