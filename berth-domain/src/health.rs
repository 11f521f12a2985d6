//! Health checks: how Berth decides that an application instance can receive traffic,
//! during a rollout and while it serves. Pure data and validation; the engine runs them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::NameError;

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthProbe {
    /// The port accepts a connection (and keeps it open).
    Tcp,
    /// `GET path` answers with a status in `expected_status`.
    Http { path: String, expected_status_min: u16, expected_status_max: u16 },
}

/// A health check with its timing. Durations are stored in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// Wait this long after the container starts before the first check.
    pub start_delay_ms: u64,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures that take a serving instance out of rotation.
    pub failure_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            probe: HealthProbe::Tcp,
            start_delay_ms: 0,
            interval_ms: 2_000,
            timeout_ms: 2_000,
            failure_threshold: 3,
        }
    }
}

impl HealthCheck {
    pub fn start_delay(&self) -> Duration {
        Duration::from_millis(self.start_delay_ms)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Validates timings and the HTTP path.
    pub fn validate(&self) -> Result<(), NameError> {
        let fail = |what: &str, reason: &str| Err(NameError::new_pub("health check", what, reason));
        if let HealthProbe::Http { path, expected_status_min, expected_status_max } = &self.probe {
            if !path.starts_with('/')
                || path.len() > 1024
                || path.chars().any(|c| c.is_control() || c == ' ')
            {
                return fail(
                    path,
                    "the HTTP path must start with '/' and contain no spaces, e.g. /healthz",
                );
            }
            if !(100..=599).contains(expected_status_min)
                || !(100..=599).contains(expected_status_max)
                || expected_status_min > expected_status_max
            {
                return fail(
                    &format!("{expected_status_min}-{expected_status_max}"),
                    "the expected status must be a range of HTTP codes such as 200-399",
                );
            }
        }
        if !(100..=300_000).contains(&self.interval_ms)
            || !(100..=120_000).contains(&self.timeout_ms)
        {
            return fail("timing", "interval must be 0.1 s to 300 s and timeout 0.1 s to 120 s");
        }
        if self.start_delay_ms > 600_000 {
            return fail("start delay", "the start delay must be at most 600 s");
        }
        if !(1..=100).contains(&self.failure_threshold) {
            return fail("failure threshold", "the failure threshold must be between 1 and 100");
        }
        Ok(())
    }
}

/// Parses `200-399` or `200` into a status range.
pub fn parse_status_range(value: &str) -> Result<(u16, u16), NameError> {
    let fail =
        || NameError::new_pub("expected status", value, "use a code or a range such as 200-399");
    let (min, max) = match value.split_once('-') {
        Some((a, b)) => {
            (a.trim().parse().map_err(|_| fail())?, b.trim().parse().map_err(|_| fail())?)
        }
        None => {
            let code = value.trim().parse().map_err(|_| fail())?;
            (code, code)
        }
    };
    if !(100..=599).contains(&min) || !(100..=599).contains(&max) || min > max {
        return Err(fail());
    }
    Ok((min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(HealthCheck::default().validate().is_ok());
        let http = |path: &str, min, max| HealthCheck {
            probe: HealthProbe::Http {
                path: path.into(),
                expected_status_min: min,
                expected_status_max: max,
            },
            ..HealthCheck::default()
        };
        assert!(http("/healthz", 200, 399).validate().is_ok());
        assert!(http("healthz", 200, 399).validate().is_err());
        assert!(http("/a b", 200, 399).validate().is_err());
        assert!(http("/", 400, 200).validate().is_err());
        assert_eq!(parse_status_range("200-399").unwrap(), (200, 399));
        assert_eq!(parse_status_range("204").unwrap(), (204, 204));
        assert!(parse_status_range("2xx").is_err());
    }
}
