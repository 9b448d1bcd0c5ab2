//! The migration parameters (`migrate-set-parameters`): what may be set,
//! the defaults that apply when a parameter is not, and the allowed ranges.
//!
//! The QMP schema only carries their JSON shape; the VMM converts it to
//! [`Parameters`] (decoding the certificates' base64 on the way), and every
//! check of a value happens here, once.

use std::time::Duration;

use super::MigrationError;

/// Default bound of every single wait on the migration peer
/// (`x-peer-timeout`), in milliseconds.
pub const DEFAULT_PEER_TIMEOUT_MS: u64 = 30_000;
/// Smallest settable `x-peer-timeout`.
pub const MIN_PEER_TIMEOUT_MS: u64 = 100;
/// Largest settable `x-peer-timeout` (one hour).
pub const MAX_PEER_TIMEOUT_MS: u64 = 3_600_000;
/// Default downtime limit (QEMU's default), in milliseconds.
pub const DEFAULT_DOWNTIME_LIMIT_MS: u64 = 300;

/// The effective peer timeout of a parameter value.
pub fn peer_timeout(ms: Option<u64>) -> Duration {
    Duration::from_millis(ms.unwrap_or(DEFAULT_PEER_TIMEOUT_MS))
}

/// The settable migration parameters; `None` is "not set" (the default
/// applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters {
    /// `max-bandwidth` in bytes per second (0: unlimited).
    pub max_bandwidth: Option<u64>,
    /// `downtime-limit` in milliseconds ([`DEFAULT_DOWNTIME_LIMIT_MS`]).
    pub downtime_limit: Option<u64>,
    /// `avail-switchover-bandwidth` in bytes per second (kept and reported,
    /// not used).
    pub avail_switchover_bandwidth: Option<u64>,
    /// `sev-pdh`: the target platform's PDH certificate (empty: not given).
    pub sev_pdh: Option<Vec<u8>>,
    /// `sev-plat-cert`: the target's PEK ‖ OCA ‖ CEK (empty: not given).
    pub sev_plat_cert: Option<Vec<u8>>,
    /// `sev-amd-cert`: the target's ASK ‖ ARK (empty: not given).
    pub sev_amd_cert: Option<Vec<u8>>,
    /// `x-peer-timeout` in milliseconds, [`MIN_PEER_TIMEOUT_MS`]..=
    /// [`MAX_PEER_TIMEOUT_MS`] ([`DEFAULT_PEER_TIMEOUT_MS`]).
    pub x_peer_timeout: Option<u64>,
}

impl Parameters {
    /// Checks every given value against its range.
    pub fn check(&self) -> Result<(), MigrationError> {
        if let Some(t) = self.x_peer_timeout {
            if !(MIN_PEER_TIMEOUT_MS..=MAX_PEER_TIMEOUT_MS).contains(&t) {
                return Err(MigrationError::Parameter {
                    name: "x-peer-timeout",
                    problem: format!(
                        "{t} ms is out of range ({MIN_PEER_TIMEOUT_MS}..={MAX_PEER_TIMEOUT_MS} ms)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Sets every parameter `update` gives; keeps the others.
    pub fn merge(&mut self, update: Parameters) {
        macro_rules! merge {
            ($($f:ident),*) => {$( if update.$f.is_some() { self.$f = update.$f; } )*};
        }
        merge!(
            max_bandwidth,
            downtime_limit,
            avail_switchover_bandwidth,
            sev_pdh,
            sev_plat_cert,
            sev_amd_cert,
            x_peer_timeout
        );
    }

    /// The bound of every wait on a migration peer.
    pub fn peer_timeout(&self) -> Duration {
        peer_timeout(self.x_peer_timeout)
    }

    /// The downtime the source aims for (at least 1 ms).
    pub fn downtime_limit_ms(&self) -> u64 {
        self.downtime_limit
            .unwrap_or(DEFAULT_DOWNTIME_LIMIT_MS)
            .max(1)
    }

    /// The bandwidth limit in bytes per second, if any.
    pub fn bandwidth_limit(&self) -> Option<u64> {
        self.max_bandwidth.filter(|&b| b > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_until_set() {
        let p = Parameters::default();
        assert_eq!(
            p.peer_timeout(),
            Duration::from_millis(DEFAULT_PEER_TIMEOUT_MS)
        );
        assert_eq!(p.downtime_limit_ms(), DEFAULT_DOWNTIME_LIMIT_MS);
        assert_eq!(p.bandwidth_limit(), None);
        let p = Parameters {
            max_bandwidth: Some(0),
            downtime_limit: Some(0),
            ..Default::default()
        };
        assert_eq!(p.bandwidth_limit(), None);
        assert_eq!(p.downtime_limit_ms(), 1);
    }
}
