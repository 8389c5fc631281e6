//! Identifiers that cross the public API. Each one is validated once, at the
//! edge, so the rest of the code can build DynamoDB keys and SQS group ids from
//! them without escaping: none of them can contain `#`, `.` is reserved for the
//! session id separator, and all are short ASCII.

use std::fmt;
use std::sync::Arc;

/// Why an identifier was refused; the message is shown to the caller as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InvalidId {
    pub field: &'static str,
    pub problem: String,
}

impl InvalidId {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

pub const EVENT_ID_MAX_LEN: usize = 64;
pub const USER_ID_MAX_LEN: usize = 128;
/// 16 random bytes in lowercase base32 without padding.
const SESSION_SECRET_LEN: usize = 26;
const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn check(
    field: &'static str,
    value: &str,
    max_len: usize,
    allowed: fn(u8) -> bool,
    allowed_text: &str,
) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId::new(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(InvalidId::new(
            field,
            format!("must be at most {max_len} characters"),
        ));
    }
    if !value.bytes().all(allowed) {
        return Err(InvalidId::new(
            field,
            format!("may contain only {allowed_text}"),
        ));
    }
    Ok(())
}

/// An on-sale (one protected event with its own capacity and line).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl EventId {
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        check(
            "eventId",
            value,
            EVENT_ID_MAX_LEN,
            |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            "letters, digits, '_' and '-'",
        )?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The caller's own identifier for the fan (an account id, an e-mail address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        check(
            "userId",
            value,
            USER_ID_MAX_LEN,
            |b| b.is_ascii_alphanumeric() || b"._@+=:-".contains(&b),
            "letters, digits and . _ @ + = : -",
        )?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `<eventId>.<26 random base32 characters>`.
///
/// The event id is part of the session id so that leave, heartbeat and status
/// can address the event's counter without reading the session first (one
/// DynamoDB call instead of two). The random part makes the id unguessable:
/// whoever holds it controls the session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    /// Shared, not owned: the granter copies thousands of line entries per
    /// wake-up, and a copy of an `Arc` allocates nothing.
    value: Arc<str>,
    event_len: usize,
}

impl SessionId {
    pub fn new(event: &EventId, random: [u8; 16]) -> Self {
        let value = format!("{}.{}", event.as_str(), base32(&random));
        Self {
            value: value.into(),
            event_len: event.as_str().len(),
        }
    }

    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let invalid = || {
            InvalidId::new(
                "sessionId",
                "is not a session id issued by this waiting room",
            )
        };
        let (event, secret) = value.split_once('.').ok_or_else(invalid)?;
        EventId::parse(event).map_err(|_| invalid())?;
        let secret_ok = secret.len() == SESSION_SECRET_LEN
            && secret.bytes().all(|b| BASE32_ALPHABET.contains(&b));
        if !secret_ok {
            return Err(invalid());
        }
        Ok(Self {
            value: value.into(),
            event_len: event.len(),
        })
    }

    pub fn event_id(&self) -> EventId {
        EventId(self.value[..self.event_len].to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// A stable hash of the id, used to spread sessions over line shards.
    pub fn stable_hash(&self) -> u64 {
        fnv1a(self.value.as_bytes())
    }
}

pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 64;

/// The `Idempotency-Key` a client sends with a join so that a retry whose
/// first answer was lost gets the same session back. Whoever presents it
/// with the user's id can see that session, so it is a credential: only its
/// digest is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        check(
            "Idempotency-Key",
            value,
            IDEMPOTENCY_KEY_MAX_LEN,
            |b| b.is_ascii_graphic(),
            "visible ASCII characters (no spaces)",
        )?;
        Ok(Self(value.to_owned()))
    }

    /// A key the waiting room picks for a client that sent none, so that an
    /// answer it cannot make certain can still name a way back to the session.
    /// Made from the session id's random bytes, one way: an error body that
    /// ends up in a log must not spell out the session id.
    pub fn generated(random: [u8; 16]) -> Self {
        use sha2::Digest;
        let hash = sha2::Sha256::new()
            .chain_update(b"idempotency-key:")
            .chain_update(random)
            .finalize();
        Self(base32(&hash[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> KeyDigest {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(self.0.as_bytes());
        KeyDigest(hash.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Never printed: it opens the session it created.
impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdempotencyKey(..)")
    }
}

/// The SHA-256 of an idempotency key, in lowercase hex: what a session keeps
/// to recognise the join that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDigest(String);

impl KeyDigest {
    /// A digest read back from storage; `None` unless it is 64 hex digits.
    pub fn from_stored(value: &str) -> Option<Self> {
        let valid = value.len() == 64
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// FNV-1a: tiny, and unlike `std`'s hasher guaranteed stable across builds,
/// which matters because the shard of a session must never change.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(EventId, UserId, SessionId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_one_to_64_visible_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse("3f2b-9c1e/retry#1!").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(64)).is_ok());
        for bad in ["", " key", "key two", "tab\tkey", "é", &"k".repeat(65)] {
            let err = IdempotencyKey::parse(bad).unwrap_err();
            assert_eq!(err.field, "Idempotency-Key", "{bad:?}");
        }
    }

    #[test]
    fn a_key_is_stored_as_its_digest_only() {
        let key = IdempotencyKey::parse("retry-me").unwrap();
        let digest = key.digest();
        assert_eq!(digest.as_str().len(), 64);
        assert!(!digest.as_str().contains("retry-me"));
        assert_eq!(digest, IdempotencyKey::parse("retry-me").unwrap().digest());
        assert_ne!(digest, IdempotencyKey::parse("retry-me2").unwrap().digest());
        assert_eq!(KeyDigest::from_stored(digest.as_str()), Some(digest));
        assert_eq!(KeyDigest::from_stored("not-hex"), None);
        assert_eq!(format!("{key:?}"), "IdempotencyKey(..)");
    }

    #[test]
    fn a_generated_key_does_not_spell_out_the_session_id() {
        let event = EventId::parse("E1").unwrap();
        let session = SessionId::new(&event, [9; 16]);
        let key = IdempotencyKey::generated([9; 16]);
        assert!(IdempotencyKey::parse(key.as_str()).is_ok());
        assert!(!session.as_str().contains(key.as_str()));
        assert_ne!(key, IdempotencyKey::generated([8; 16]));
    }

    #[test]
    fn event_ids_accept_the_documented_alphabet_only() {
        assert!(EventId::parse("E1").is_ok());
        assert!(EventId::parse("tour-2026_paris").is_ok());
        assert!(EventId::parse(&"e".repeat(64)).is_ok());
        for bad in ["", "a b", "a#b", "a.b", "é", "a/b", &"e".repeat(65)] {
            assert!(EventId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn user_ids_allow_email_addresses_but_not_controls_or_spaces() {
        assert!(UserId::parse("fan+1@example.com").is_ok());
        for bad in ["", "a b", "a\nb", "a#b", "ü", &"u".repeat(129)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn session_ids_round_trip_and_carry_their_event() {
        let event = EventId::parse("E1").unwrap();
        let id = SessionId::new(&event, [7; 16]);
        assert_eq!(id.as_str().len(), 2 + 1 + 26);
        let parsed = SessionId::parse(id.as_str()).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(parsed.event_id(), event);
    }

    #[test]
    fn forged_or_damaged_session_ids_are_refused() {
        let event = EventId::parse("E1").unwrap();
        let good = SessionId::new(&event, [1; 16]).as_str().to_owned();
        let cases = [
            String::new(),
            "E1".to_owned(),
            format!("{good}x"),
            good.to_uppercase(),
            good.replacen("E1", "E#1", 1),
            good[..good.len() - 1].to_owned(),
            format!("{good}:leave"),
        ];
        for bad in cases {
            assert!(SessionId::parse(&bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn base32_encodes_known_vectors() {
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }
}
