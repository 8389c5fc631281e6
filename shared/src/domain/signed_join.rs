//! Signed joins (docs/decisions/0036-signed-joins-and-the-puzzle.md).
//!
//! An event may take joins only from users its ticketing site vouches
//! for: the site signs `{eventId, userId, exp}` with a key it shares with
//! the deployment (HMAC-SHA256, base64url), and hands the fan the
//! signature with the link to the waiting room. A join without a valid,
//! unexpired signature for that user and event is refused and stores
//! nothing, so inventing user ids no longer buys places.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};

use super::ids::{EventId, UserId};
use super::time::Timestamp;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A signature may not be made to last longer than this: a leaked link
/// stops working within a day.
pub const LONGEST_SIGNATURE: Duration = Duration::from_secs(86_400);
/// Keys are at least this long (HMAC-SHA256's own output length).
pub const SHORTEST_KEY_BYTES: usize = 32;

/// What a signed join carries: the signature's expiry (epoch seconds) and
/// the signature itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSignature {
    pub exp: u64,
    pub hmac: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this event takes signed joins only: send the signature your ticketing site gave you")]
    Missing,
    #[error("the signature has expired")]
    Expired,
    #[error("the signature's exp is more than a day away")]
    TooLong,
    #[error("the signature is not valid for this user and event")]
    Invalid,
    #[error("this deployment has no join signing key")]
    NoKey,
}

/// The deployment's join signing keys: the first signs, any verifies (so a
/// key can be rotated without refusing the links already handed out).
#[derive(Clone, Default)]
pub struct JoinKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for JoinKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinKeys({} keys)", self.0.len())
    }
}

impl JoinKeys {
    /// `JOIN_SIGNING_KEYS`: base64url keys, comma-separated, newest first.
    pub fn parse(setting: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for part in setting.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let key = B64.decode(part).map_err(|_| {
                "each join signing key must be base64url without padding".to_owned()
            })?;
            if key.len() < SHORTEST_KEY_BYTES {
                return Err(format!(
                    "each join signing key must be at least {SHORTEST_KEY_BYTES} bytes"
                ));
            }
            keys.push(key);
        }
        Ok(Self(keys))
    }

    pub fn of(keys: Vec<Vec<u8>>) -> Self {
        Self(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The signature the ticketing site sends for `user` at `event`, valid
    /// until `exp` (epoch seconds), with the newest key.
    pub fn sign(&self, event: &EventId, user: &UserId, exp: u64) -> Option<JoinSignature> {
        let mac = mac(self.0.first()?, event, user, exp)?;
        Some(JoinSignature {
            exp,
            hmac: B64.encode(mac.finalize().into_bytes()),
        })
    }

    /// Whether `signature` vouches for `user` at `event` now.
    pub fn verify(
        &self,
        event: &EventId,
        user: &UserId,
        signature: Option<&JoinSignature>,
        now: Timestamp,
    ) -> Result<(), SignatureError> {
        let signature = signature.ok_or(SignatureError::Missing)?;
        if self.0.is_empty() {
            return Err(SignatureError::NoKey);
        }
        let now = now.as_secs();
        if signature.exp <= now {
            return Err(SignatureError::Expired);
        }
        if signature.exp - now > LONGEST_SIGNATURE.as_secs() {
            return Err(SignatureError::TooLong);
        }
        let given = B64
            .decode(&signature.hmac)
            .map_err(|_| SignatureError::Invalid)?;
        let valid = self.0.iter().any(|key| {
            // `verify_slice` compares in constant time.
            mac(key, event, user, signature.exp).is_some_and(|m| m.verify_slice(&given).is_ok())
        });
        if valid {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

/// What is signed: the three values on lines of their own (no id may
/// hold a newline), after a version tag.
fn mac(key: &[u8], event: &EventId, user: &UserId, exp: u64) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).ok()?;
    mac.update(format!("wr-join-v1\n{event}\n{user}\n{exp}").as_bytes());
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (EventId, UserId) {
        (
            EventId::parse("E1").unwrap(),
            UserId::parse("fan-1").unwrap(),
        )
    }

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn keys() -> JoinKeys {
        JoinKeys::of(vec![vec![7; 32]])
    }

    #[test]
    fn a_signature_opens_its_user_and_event_only_until_it_expires() {
        let (event, user) = ids();
        let exp = NOW.as_secs() + 600;
        let signed = keys().sign(&event, &user, exp).unwrap();
        assert_eq!(keys().verify(&event, &user, Some(&signed), NOW), Ok(()));
        let other_user = UserId::parse("fan-2").unwrap();
        let other_event = EventId::parse("E2").unwrap();
        for (e, u) in [(&event, &other_user), (&other_event, &user)] {
            assert_eq!(
                keys().verify(e, u, Some(&signed), NOW),
                Err(SignatureError::Invalid)
            );
        }
        let later = NOW.plus(Duration::from_secs(600));
        assert_eq!(
            keys().verify(&event, &user, Some(&signed), later),
            Err(SignatureError::Expired)
        );
        let stretched = JoinSignature {
            exp: exp + 1,
            ..signed.clone()
        };
        assert_eq!(
            keys().verify(&event, &user, Some(&stretched), NOW),
            Err(SignatureError::Invalid)
        );
        let forged = JoinKeys::of(vec![vec![8; 32]])
            .sign(&event, &user, exp)
            .unwrap();
        assert_eq!(
            keys().verify(&event, &user, Some(&forged), NOW),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            keys().verify(&event, &user, None, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            JoinKeys::default().verify(&event, &user, Some(&signed), NOW),
            Err(SignatureError::NoKey)
        );
    }

    #[test]
    fn a_rotated_key_still_verifies_and_long_signatures_are_refused() {
        let (event, user) = ids();
        let old = keys().sign(&event, &user, NOW.as_secs() + 60).unwrap();
        let rotated = JoinKeys::of(vec![vec![9; 32], vec![7; 32]]);
        assert_eq!(rotated.verify(&event, &user, Some(&old), NOW), Ok(()));
        let long = keys().sign(&event, &user, NOW.as_secs() + 86_401).unwrap();
        assert_eq!(
            keys().verify(&event, &user, Some(&long), NOW),
            Err(SignatureError::TooLong)
        );
    }

    #[test]
    fn keys_parse_from_the_setting() {
        let key = B64.encode([3u8; 32]);
        assert_eq!(
            JoinKeys::parse(&format!("{key}, {key}")).unwrap().0.len(),
            2
        );
        assert!(JoinKeys::parse("").unwrap().is_empty());
        assert!(JoinKeys::parse("short").is_err());
        assert!(JoinKeys::parse("not base64!").is_err());
    }
}
