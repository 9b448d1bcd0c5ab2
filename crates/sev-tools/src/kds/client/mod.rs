//! The owner's client of a key distribution service (KDS): AMD's
//! `https://kdsintf.amd.com`, a mirror, or an emulated platform's
//! (docs/guide/sev-owner.md#kds-client).
//!
//! One client serves every object of the KDS URL grammar
//! ([`sev_proto::snp::kds::KdsRequest`]): the SNP VCEK, `cert_chain` and
//! CRL, and the legacy SEV CEK. A request is bounded by connect and total
//! timeouts and by a response size per kind of object; HTTP 429 and 503 are
//! retried with exponential backoff that honours `Retry-After` (bounded
//! attempts and total wait, [`RetryPolicy`]); 404 is "not found" naming the
//! URL. Objects live in a [`Cache`] directory, one file per object; a
//! [`KdsSource`] without a client is the offline mode (the cache only).
//!
//! Nothing fetched is trusted for coming from the server: the caller checks
//! every object by its signature chain to a pinned root, and stores it in
//! the cache only then ([`KdsSource::remember`]). A plain `http://` base URL
//! is therefore accepted (a local mirror, the tests).

mod cache;
mod retry;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use sev_proto::snp::kds::KdsRequest;

pub use cache::{file_name, service_dir, Cache};
pub use retry::{parse_retry_after, RetryPolicy};
pub use sev_proto::snp::kds::AMD_KDS_BASE;

use crate::io::IoError;

/// Time to establish a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for one attempt, response body included.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response (and cached file) accepted for `request`'s object:
/// a CEK is 2084 bytes, a VCEK about 1.4 KiB, a `cert_chain` about 4.5 KiB,
/// AMD's CRLs a few KiB; the caps leave room for growth, not for abuse.
pub fn max_object_len(request: &KdsRequest) -> u64 {
    match request {
        KdsRequest::Cek { .. } => 64 << 10,
        KdsRequest::Vcek { .. } => 16 << 10,
        KdsRequest::CertChain { .. } => 64 << 10,
        KdsRequest::Crl { .. } => 256 << 10,
    }
}

/// Why an object could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KdsError {
    /// The base URL is not http or https.
    #[error("KDS base URL {0:?} is not an http:// or https:// URL")]
    BadBase(String),
    /// The server has no such object.
    #[error("{url}: not found (HTTP 404)")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// The server kept answering 429 or 503.
    #[error(
        "{url}: still HTTP {status} after {attempts} attempt(s) and {:.1} s of waiting{detail}",
        waited.as_secs_f64()
    )]
    Throttled {
        /// The URL.
        url: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// Time waited between them.
        waited: Duration,
        /// Why the client stopped (a `Retry-After` beyond the budget), or empty.
        detail: String,
    },
    /// Any other status than 200.
    #[error("{url}: the server answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is larger than the object's cap.
    #[error("{url}: the response is larger than {max} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        max: u64,
    },
    /// The connection failed or timed out.
    #[error("{url}: {problem}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        problem: String,
    },
    /// Offline (or no cache hit) and the object is not in the cache.
    #[error("{} is not in the KDS cache{} and fetching is off (the KDS serves it at {url})", file, path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    NotCached {
        /// The object's cache file name.
        file: String,
        /// Where it was looked for, when there is a cache.
        path: Option<PathBuf>,
        /// Where it would be fetched from.
        url: String,
    },
    /// A cached file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// An HTTP(S) client of one KDS base URL.
#[derive(Debug, Clone)]
pub struct KdsClient {
    base: String,
    connect_timeout: Duration,
    total_timeout: Duration,
    retry: RetryPolicy,
}

/// One attempt's outcome.
enum Attempt {
    Body(Vec<u8>),
    Retry {
        status: u16,
        retry_after: Option<Duration>,
    },
}

impl KdsClient {
    /// A client of `base` (e.g. [`AMD_KDS_BASE`]) with the default timeouts
    /// and [`RetryPolicy`].
    pub fn new(base: &str) -> Result<Self, KdsError> {
        let lower = base.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        if rest.is_none_or(|r| r.trim_end_matches('/').is_empty()) || base.contains(['?', '#']) {
            return Err(KdsError::BadBase(base.to_string()));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            connect_timeout: CONNECT_TIMEOUT,
            total_timeout: TOTAL_TIMEOUT,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client with other timeouts (connect, and one attempt in all).
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.connect_timeout = connect;
        self.total_timeout = total;
        self
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The base URL (no trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `request`'s URL under this client's base.
    pub fn url(&self, request: &KdsRequest) -> String {
        request.url(&self.base)
    }

    /// GETs `request`'s object: status 200 and at most
    /// [`max_object_len`] bytes, retrying 429 and 503 as the
    /// [`RetryPolicy`] allows.
    pub fn fetch(&self, request: &KdsRequest) -> Result<Vec<u8>, KdsError> {
        let url = self.url(request);
        let max = max_object_len(request);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(self.connect_timeout))
            .timeout_global(Some(self.total_timeout))
            .http_status_as_error(false)
            .max_redirects(3)
            .build()
            .new_agent();
        let attempts = self.retry.max_attempts.max(1);
        let mut waited = Duration::ZERO;
        let mut failed = 0;
        loop {
            let (status, retry_after) = match attempt(&agent, &url, max)? {
                Attempt::Body(body) => return Ok(body),
                Attempt::Retry {
                    status,
                    retry_after,
                } => (status, retry_after),
            };
            failed += 1;
            let throttled = |detail: String| KdsError::Throttled {
                url: url.clone(),
                status,
                attempts: failed,
                waited,
                detail,
            };
            if failed >= attempts {
                return Err(throttled(String::new()));
            }
            let wait = self.retry.wait(failed, retry_after, retry::jitter());
            let left = self.retry.max_total_wait.saturating_sub(waited);
            if wait > left {
                return Err(throttled(format!(
                    "; the next wait ({:.1} s{}) exceeds the {:.1} s left to wait",
                    wait.as_secs_f64(),
                    if retry_after.is_some_and(|r| r >= wait) {
                        ", the server's Retry-After"
                    } else {
                        ""
                    },
                    left.as_secs_f64()
                )));
            }
            std::thread::sleep(wait);
            waited += wait;
        }
    }
}

fn attempt(agent: &ureq::Agent, url: &str, max: u64) -> Result<Attempt, KdsError> {
    let transport = |problem: String| KdsError::Transport {
        url: url.to_string(),
        problem,
    };
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| transport(e.to_string()))?;
    let status = response.status().as_u16();
    match status {
        200 => {}
        404 => {
            return Err(KdsError::NotFound {
                url: url.to_string(),
            })
        }
        429 | 503 => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            return Ok(Attempt::Retry {
                status,
                retry_after,
            });
        }
        _ => {
            return Err(KdsError::Status {
                url: url.to_string(),
                status,
            })
        }
    }
    response
        .body_mut()
        .with_config()
        .limit(max)
        .read_to_vec()
        .map(Attempt::Body)
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => KdsError::TooLarge {
                url: url.to_string(),
                max,
            },
            other => transport(other.to_string()),
        })
}

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file the user named.
    File(PathBuf),
    /// The cache.
    Cache(PathBuf),
    /// The KDS, at this URL.
    Fetched(String),
}

impl Origin {
    /// `file`, `cache` or `kds`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::File(_) => "file",
            Origin::Cache(_) => "cache",
            Origin::Fetched(_) => "kds",
        }
    }

    /// The path or URL.
    pub fn location(&self) -> String {
        match self {
            Origin::File(p) | Origin::Cache(p) => p.display().to_string(),
            Origin::Fetched(url) => url.clone(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.location())
    }
}

/// An object and where it came from.
#[derive(Debug, Clone)]
pub struct Obtained {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Where they came from.
    pub origin: Origin,
}

/// Where KDS objects are taken from: the cache, then the KDS when fetching
/// is allowed. Without a client this is the offline mode.
#[derive(Debug, Clone, Default)]
pub struct KdsSource {
    /// The cache directory, if any.
    pub cache: Option<Cache>,
    /// The client, when fetching is allowed.
    pub client: Option<KdsClient>,
    /// The base URL named when an object is missing offline (empty:
    /// [`AMD_KDS_BASE`]).
    pub offline_base: String,
}

impl KdsSource {
    /// `request`'s object from the cache, else from the KDS (not cached
    /// here: see [`KdsSource::remember`]).
    pub fn get(&self, request: &KdsRequest) -> Result<Obtained, KdsError> {
        let max = max_object_len(request);
        if let Some(cache) = &self.cache {
            if let Some(bytes) = cache.read(request, max)? {
                return Ok(Obtained {
                    bytes,
                    origin: Origin::Cache(cache.path(request)),
                });
            }
        }
        match &self.client {
            Some(client) => Ok(Obtained {
                bytes: client.fetch(request)?,
                origin: Origin::Fetched(client.url(request)),
            }),
            None => Err(KdsError::NotCached {
                file: file_name(request),
                path: self.cache.as_ref().map(|c| c.path(request)),
                url: request.url(if self.offline_base.is_empty() {
                    AMD_KDS_BASE
                } else {
                    &self.offline_base
                }),
            }),
        }
    }

    /// Stores a fetched object that the caller has verified; objects from
    /// the cache or a file are left alone. Returns the cache file written.
    pub fn remember(
        &self,
        request: &KdsRequest,
        got: &Obtained,
    ) -> Result<Option<PathBuf>, IoError> {
        match (&self.cache, &got.origin) {
            (Some(cache), Origin::Fetched(_)) => cache.store(request, &got.bytes).map(Some),
            _ => Ok(None),
        }
    }
}
