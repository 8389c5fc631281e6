//! Configuration from environment variables, read once at start-up.
//!
//! Every variable a function reads is named here. `Env` records what it is
//! asked for, which is how the infra test checks the deployment template
//! against the code (`wiring::variables_read`).

use std::cell::RefCell;
use std::time::Duration;

use crate::domain::StayPolicy;
use crate::domain::signed_join::JoinKeys;
use crate::domain::token::{AdmissionSigner, PublicKey};

pub const TABLE_NAME: &str = "TABLE_NAME";
pub const JOIN_QUEUE_URL: &str = "JOIN_QUEUE_URL";
pub const JOIN_DLQ_URL: &str = "JOIN_DLQ_URL";
pub const CHECKOUT_DLQ_URL: &str = "CHECKOUT_DLQ_URL";
pub const DEFAULT_CAPACITY: &str = "DEFAULT_CAPACITY";
pub const LINE_SHARDS: &str = "LINE_SHARDS";
pub const ACTIVE_STAY_SECONDS: &str = "ACTIVE_STAY_SECONDS";
pub const ACTIVE_MAX_STAY_SECONDS: &str = "ACTIVE_MAX_STAY_SECONDS";
pub const WAITING_ABANDON_SECONDS: &str = "WAITING_ABANDON_SECONDS";
pub const ENDED_RETENTION_SECONDS: &str = "ENDED_RETENTION_SECONDS";
pub const LINE_CACHE_MILLIS: &str = "LINE_CACHE_MILLIS";
pub const ADMISSION_SIGNING_KEY: &str = "ADMISSION_SIGNING_KEY";
pub const ADMISSION_PUBLIC_KEYS: &str = "ADMISSION_PUBLIC_KEYS";
pub const SESSION_CHECK_CACHE_SECONDS: &str = "SESSION_CHECK_CACHE_SECONDS";
pub const EVENTS_TOPIC_ARN: &str = "EVENTS_TOPIC_ARN";
pub const ADMISSIONS_TOPIC_ARN: &str = "ADMISSIONS_TOPIC_ARN";
pub const CHECKOUT_QUEUE_URL: &str = "CHECKOUT_QUEUE_URL";
pub const STREAM_DLQ_URL: &str = "STREAM_DLQ_URL";
pub const JOIN_SIGNING_KEYS: &str = "JOIN_SIGNING_KEYS";
pub const DEFAULT_ORIGIN_URL: &str = "DEFAULT_ORIGIN_URL";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// One variable a function asked for, and whether it must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Read {
    pub name: &'static str,
    pub required: bool,
}

/// Looks a variable up by name.
type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// Reads variables through a lookup function (so tests need not touch the
/// process environment) and remembers which were asked for.
pub struct Env {
    lookup: Lookup,
    reads: RefCell<Vec<Read>>,
}

pub fn process_env() -> Env {
    Env::new(|name: &str| std::env::var(name).ok())
}

impl Env {
    pub fn new(lookup: impl Fn(&str) -> Option<String> + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
            reads: RefCell::new(Vec::new()),
        }
    }

    /// Every variable asked for so far.
    pub fn reads(&self) -> Vec<Read> {
        self.reads.borrow().clone()
    }

    fn get(&self, name: &'static str, required: bool) -> Option<String> {
        self.reads.borrow_mut().push(Read { name, required });
        (self.lookup)(name)
    }

    /// A variable only some modes of a function use.
    pub fn optional(&self, name: &'static str) -> Option<String> {
        self.get(name, false).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        match self.get(name, true) {
            Some(value) if !value.trim().is_empty() => Ok(value),
            _ => Err(ConfigError::Missing(name)),
        }
    }

    pub fn number<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(raw) = self.get(name, false).filter(|v| !v.trim().is_empty()) else {
            return Ok(default);
        };
        let value: T = raw.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            problem: format!("{raw:?} is not a number"),
        })?;
        if !range.contains(&value) {
            return Err(ConfigError::Invalid {
                name,
                problem: format!("{value} is outside {}..={}", range.start(), range.end()),
            });
        }
        Ok(value)
    }

    pub fn seconds(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(name, default, range).map(Duration::from_secs)
    }
}

/// The key that signs admission tokens: `<kid>:<base64url seed>`.
pub fn admission_signer(env: &Env) -> Result<AdmissionSigner, ConfigError> {
    let value = env.required(ADMISSION_SIGNING_KEY)?;
    AdmissionSigner::parse(&value).map_err(|e| ConfigError::Invalid {
        name: ADMISSION_SIGNING_KEY,
        problem: e.to_string(),
    })
}

/// The keys tokens are verified with (current and not yet retired ones).
pub fn admission_public_keys(env: &Env) -> Result<Vec<PublicKey>, ConfigError> {
    let value = env.required(ADMISSION_PUBLIC_KEYS)?;
    let keys = PublicKey::parse_list(&value).map_err(|e| ConfigError::Invalid {
        name: ADMISSION_PUBLIC_KEYS,
        problem: e.to_string(),
    })?;
    if keys.is_empty() {
        return Err(ConfigError::Missing(ADMISSION_PUBLIC_KEYS));
    }
    Ok(keys)
}

/// The keys signed joins are checked with (`JOIN_SIGNING_KEYS`, optional:
/// without them, events that ask for signed joins refuse every join).
pub fn join_keys(env: &Env) -> Result<JoinKeys, ConfigError> {
    match env.optional(JOIN_SIGNING_KEYS) {
        None => Ok(JoinKeys::default()),
        Some(value) => JoinKeys::parse(&value).map_err(|problem| ConfigError::Invalid {
            name: JOIN_SIGNING_KEYS,
            problem,
        }),
    }
}

/// Settings shared by everything that shapes the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSettings {
    /// Shards per event line (SQS message groups and line index partitions).
    /// Changing it while a line is non-empty hides the people in the old
    /// shards from the granter, so it is a deployment-time choice.
    pub line_shards: u16,
}

impl LineSettings {
    pub const ENV: &'static [&'static str] = &[LINE_SHARDS];

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            line_shards: env.number(LINE_SHARDS, 1, 1..=64)?,
        })
    }
}

/// How long things live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleSettings {
    pub default_capacity: u32,
    /// An admitted user's stay (the checkout window), from admission or the
    /// latest heartbeat.
    pub active_stay: Duration,
    /// The longest stay heartbeats can extend to, from admission.
    pub active_max_stay: Duration,
    pub abandon_after: Option<Duration>,
    pub ended_retention: Duration,
}

impl LifecycleSettings {
    pub const ENV: &'static [&'static str] = &[
        DEFAULT_CAPACITY,
        ACTIVE_STAY_SECONDS,
        ACTIVE_MAX_STAY_SECONDS,
        WAITING_ABANDON_SECONDS,
        ENDED_RETENTION_SECONDS,
    ];

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let abandon = env.number(WAITING_ABANDON_SECONDS, 450u64, 0..=86_400)?;
        let active_stay = env.seconds(ACTIVE_STAY_SECONDS, 900, 10..=86_400)?;
        let active_max_stay = env.seconds(ACTIVE_MAX_STAY_SECONDS, 1800, 10..=86_400)?;
        if active_max_stay < active_stay {
            return Err(ConfigError::Invalid {
                name: ACTIVE_MAX_STAY_SECONDS,
                problem: format!("must be at least {ACTIVE_STAY_SECONDS}"),
            });
        }
        Ok(Self {
            default_capacity: env.number(DEFAULT_CAPACITY, 100, 0..=10_000_000)?,
            active_stay,
            active_max_stay,
            abandon_after: (abandon > 0).then(|| Duration::from_secs(abandon)),
            ended_retention: env.seconds(ENDED_RETENTION_SECONDS, 86_400, 60..=30 * 86_400)?,
        })
    }
}

impl LifecycleSettings {
    pub fn stay_policy(&self) -> StayPolicy {
        StayPolicy {
            stay: self.active_stay,
            max_stay: self.active_max_stay,
        }
    }
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            default_capacity: 100,
            active_stay: Duration::from_secs(900),
            active_max_stay: Duration::from_secs(1800),
            abandon_after: Some(Duration::from_secs(450)),
            ended_retention: Duration::from_secs(86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env {
        Env::new(move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_apply_when_unset() {
        let settings = LifecycleSettings::from_env(&env(&[])).unwrap();
        assert_eq!(settings, LifecycleSettings::default());
        assert_eq!(LineSettings::from_env(&env(&[])).unwrap().line_shards, 1);
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        let err = LineSettings::from_env(&env(&[(LINE_SHARDS, "0")])).unwrap_err();
        assert!(err.to_string().contains("LINE_SHARDS"), "{err}");
        let err = LifecycleSettings::from_env(&env(&[(DEFAULT_CAPACITY, "lots")])).unwrap_err();
        assert!(err.to_string().contains("DEFAULT_CAPACITY"), "{err}");
        assert_eq!(
            env(&[]).required(TABLE_NAME),
            Err(ConfigError::Missing(TABLE_NAME))
        );
    }

    #[test]
    fn abandonment_is_off_at_zero() {
        let on = LifecycleSettings::from_env(&env(&[(WAITING_ABANDON_SECONDS, "120")])).unwrap();
        assert_eq!(on.abandon_after, Some(Duration::from_secs(120)));
        let off = LifecycleSettings::from_env(&env(&[(WAITING_ABANDON_SECONDS, "0")])).unwrap();
        assert_eq!(off.abandon_after, None);
    }

    #[test]
    fn the_longest_stay_cannot_be_shorter_than_a_stay() {
        let err = LifecycleSettings::from_env(&env(&[
            (ACTIVE_STAY_SECONDS, "900"),
            (ACTIVE_MAX_STAY_SECONDS, "600"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(ACTIVE_MAX_STAY_SECONDS), "{err}");
    }
}
