//! Admission tokens: a compact JWT signed with Ed25519 (`alg: EdDSA`) that the
//! protected origin verifies offline with our public keys (served as a JWKS).
//!
//! A token is a pure function of the session and the key: issued at admission
//! (`iat`), valid until the session's stay ends (`exp`). The status answer and
//! the `QUEUE_READY` event therefore carry the same token, and a heartbeat
//! that extends the stay yields a fresh token with the later `exp`.
//!
//! A token opens one event: its audience (`aud`) is the event id, and every
//! check names the event of the route it protects. Its subject (`sub`) is the
//! session id, never the user id (often an e-mail address, readable by anyone
//! holding the token).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::domain::{EventId, Session, SessionId, SessionStatus, Timestamp};

pub const ISSUER: &str = "waiting-room";
const ALGORITHM: &str = "EdDSA";

/// The claims of an admission token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionClaims {
    pub iss: String,
    /// The admitted session (as `sid`).
    pub sub: String,
    /// The event it opens: its id.
    pub aud: String,
    /// This token: the session and the end of the stay it grants.
    pub jti: String,
    /// The admitted session.
    pub sid: String,
    pub event_id: String,
    /// Admission time, epoch seconds.
    pub iat: u64,
    /// End of the stay, epoch seconds.
    pub exp: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a well-formed token")]
    Malformed,
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("signed with an unknown key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not issued by this waiting room")]
    WrongIssuer,
    #[error("token of another event")]
    WrongAudience,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key: {0}")]
pub struct KeyError(String);

fn key_id(kid: &str) -> Result<String, KeyError> {
    let ok = !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| kid.to_owned())
        .ok_or_else(|| KeyError(format!("key id {kid:?} must be 1-64 of A-Z a-z 0-9 - _ .")))
}

fn thirty_two(encoded: &str, what: &str) -> Result<[u8; 32], KeyError> {
    let bytes = B64
        .decode(encoded.trim())
        .map_err(|_| KeyError(format!("{what} is not base64url")))?;
    bytes
        .try_into()
        .map_err(|_| KeyError(format!("{what} must be 32 bytes")))
}

/// The key that signs tokens, with the id that names it in the JWKS.
#[derive(Clone)]
pub struct AdmissionSigner {
    kid: String,
    key: SigningKey,
}

impl fmt::Debug for AdmissionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AdmissionSigner {
    /// From `<kid>:<base64url 32-byte seed>`, as `ADMISSION_SIGNING_KEY` holds it.
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        let (kid, seed) = value
            .split_once(':')
            .ok_or_else(|| KeyError("expected <kid>:<base64url seed>".into()))?;
        Ok(Self {
            kid: key_id(kid)?,
            key: SigningKey::from_bytes(&thirty_two(seed, "the seed")?),
        })
    }

    /// A new key from 32 random bytes.
    pub fn generate(kid: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        Ok(Self {
            kid: key_id(kid)?,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// `<kid>:<base64url seed>`: the secret, for the signing functions.
    pub fn secret_setting(&self) -> String {
        format!("{}:{}", self.kid, B64.encode(self.key.to_bytes()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The token of an active session, `None` for any other.
    pub fn token_for(&self, session: &Session) -> Option<String> {
        let admission = session.admission()?;
        if session.status() != SessionStatus::Active {
            return None;
        }
        let exp = admission.expires_at.as_secs();
        let claims = AdmissionClaims {
            iss: ISSUER.to_owned(),
            sub: session.id.to_string(),
            aud: session.event_id.to_string(),
            jti: format!("{}.{exp}", session.id),
            sid: session.id.to_string(),
            event_id: session.event_id.to_string(),
            iat: admission.admitted_at.as_secs(),
            exp,
        };
        Some(self.sign(&claims))
    }

    pub fn sign(&self, claims: &AdmissionClaims) -> String {
        let header = Header {
            alg: ALGORITHM.to_owned(),
            typ: "JWT".to_owned(),
            kid: self.kid.clone(),
        };
        // Serialising these two plain structs cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let signature = self.key.sign(signed.as_bytes());
        format!("{signed}.{}", B64.encode(signature.to_bytes()))
    }
}

/// A key that verifies tokens: the current one and any still honoured
/// after a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// From `<kid>:<base64url 32-byte public key>`.
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        let (kid, key) = value
            .split_once(':')
            .ok_or_else(|| KeyError("expected <kid>:<base64url public key>".into()))?;
        let key = VerifyingKey::from_bytes(&thirty_two(key, "the public key")?)
            .map_err(|_| KeyError("not an Ed25519 public key".into()))?;
        Ok(Self {
            kid: key_id(kid)?,
            key,
        })
    }

    /// Several keys, comma separated, as `ADMISSION_PUBLIC_KEYS` holds them.
    pub fn parse_list(value: &str) -> Result<Vec<Self>, KeyError> {
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(Self::parse)
            .collect()
    }

    pub fn setting(&self) -> String {
        format!("{}:{}", self.kid, B64.encode(self.key.to_bytes()))
    }

    /// This key as a JSON Web Key (RFC 8037).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": ALGORITHM,
            "use": "sig",
            "kid": self.kid,
            "x": B64.encode(self.key.to_bytes()),
        })
    }
}

/// The body of `GET /.well-known/jwks.json`.
pub fn jwks(keys: &[PublicKey]) -> serde_json::Value {
    serde_json::json!({ "keys": keys.iter().map(PublicKey::jwk).collect::<Vec<_>>() })
}

/// Checks tokens offline: format, algorithm, key, signature, issuer,
/// audience, expiry. Whether the session is still active is
/// `admission_check::AdmissionCheck`'s job.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: Vec<PublicKey>,
}

impl TokenVerifier {
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    /// A token that opens `event` (the event of the route it was sent to).
    pub fn verify(
        &self,
        token: &str,
        event: &EventId,
        now: Timestamp,
    ) -> Result<AdmissionClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decoded_header = B64.decode(header).map_err(|_| TokenError::Malformed)?;
        let header_fields: Header =
            serde_json::from_slice(&decoded_header).map_err(|_| TokenError::Malformed)?;
        if header_fields.alg != ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == header_fields.kid)
            .ok_or(TokenError::UnknownKey)?;
        let signature_bytes: [u8; 64] = B64
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?
            .try_into()
            .map_err(|_| TokenError::Malformed)?;
        let signed = &token[..header.len() + 1 + payload.len()];
        key.key
            .verify(signed.as_bytes(), &Signature::from_bytes(&signature_bytes))
            .map_err(|_| TokenError::BadSignature)?;
        let claims: AdmissionClaims =
            serde_json::from_slice(&B64.decode(payload).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::WrongIssuer);
        }
        let session = SessionId::parse(&claims.sid).map_err(|_| TokenError::Malformed)?;
        let consistent = EventId::parse(&claims.event_id).ok() == Some(session.event_id())
            && claims.sub == claims.sid
            && claims.aud == claims.event_id;
        if !consistent {
            return Err(TokenError::Malformed);
        }
        if claims.aud != event.as_str() {
            return Err(TokenError::WrongAudience);
        }
        if claims.exp <= now.as_secs() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{Admission, EndReason, Ending, EventId, UserId};

    fn signer(kid: &str, byte: u8) -> AdmissionSigner {
        AdmissionSigner::generate(kid, [byte; 32]).unwrap()
    }

    fn active_session() -> Session {
        let event = EventId::parse("E1").unwrap();
        let mut session = Session::new_waiting(
            SessionId::new(&event, [4; 16]),
            UserId::parse("fan@example.com").unwrap(),
            0,
            Timestamp::from_millis(1_000_000),
        );
        session
            .admit(Admission {
                admitted_at: Timestamp::from_millis(2_000_000),
                admission_no: 1,
                expires_at: Timestamp::from_millis(2_900_000),
            })
            .unwrap();
        session
    }

    const DURING: Timestamp = Timestamp::from_millis(2_100_000);

    fn e1() -> EventId {
        EventId::parse("E1").unwrap()
    }

    #[test]
    fn a_minted_token_verifies_and_carries_the_session() {
        let signer = signer("k1", 1);
        let session = active_session();
        let token = signer.token_for(&session).unwrap();
        let claims = TokenVerifier::new(vec![signer.public_key()])
            .verify(&token, &e1(), DURING)
            .unwrap();
        assert_eq!(claims.sid, session.id.to_string());
        assert_eq!(claims.sub, claims.sid, "the subject is the session");
        assert!(!token_payload(&token).contains("fan@example.com"));
        assert_eq!(
            (claims.aud.as_str(), claims.event_id.as_str()),
            ("E1", "E1")
        );
        assert_eq!(claims.jti, format!("{}.2900", session.id));
        assert_eq!((claims.iat, claims.exp), (2_000, 2_900));
        assert_eq!(
            signer.token_for(&session),
            Some(token),
            "minting is deterministic"
        );
    }

    fn token_payload(token: &str) -> String {
        let payload = token.split('.').nth(1).unwrap();
        String::from_utf8(B64.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn a_token_opens_its_own_event_only() {
        let signer = signer("k1", 1);
        let verifier = TokenVerifier::new(vec![signer.public_key()]);
        let token = signer.token_for(&active_session()).unwrap();
        let other = EventId::parse("E2").unwrap();
        assert_eq!(
            verifier.verify(&token, &other, DURING),
            Err(TokenError::WrongAudience)
        );
        // Signed claims whose audience disagrees with their own session are
        // not ours, whatever route they are sent to.
        let mut claims: AdmissionClaims = serde_json::from_str(&token_payload(&token)).unwrap();
        claims.aud = "E2".into();
        let odd = signer.sign(&claims);
        assert_eq!(
            verifier.verify(&odd, &other, DURING),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verifier.verify(&odd, &e1(), DURING),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn only_active_sessions_get_a_token() {
        let mut session = active_session();
        session
            .end(Ending::new(
                EndReason::UserLeft,
                Timestamp::from_millis(2_000_001),
            ))
            .unwrap();
        assert_eq!(signer("k1", 1).token_for(&session), None);
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let signer = signer("k1", 1);
        let verifier = TokenVerifier::new(vec![signer.public_key()]);
        let token = signer.token_for(&active_session()).unwrap();
        let after = Timestamp::from_millis(2_900_000).plus(Duration::from_millis(1));
        assert_eq!(
            verifier.verify(&token, &e1(), after),
            Err(TokenError::Expired)
        );

        let (head, rest) = token.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let mut claims: AdmissionClaims =
            serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        claims.exp += 3600;
        let forged = format!(
            "{head}.{}.{signature}",
            B64.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert_eq!(
            verifier.verify(&forged, &e1(), DURING),
            Err(TokenError::BadSignature)
        );

        let impostor = AdmissionSigner::generate("k1", [9; 32]).unwrap();
        let foreign = impostor.token_for(&active_session()).unwrap();
        assert_eq!(
            verifier.verify(&foreign, &e1(), DURING),
            Err(TokenError::BadSignature)
        );
        let unknown = signer_named("k2").token_for(&active_session()).unwrap();
        assert_eq!(
            verifier.verify(&unknown, &e1(), DURING),
            Err(TokenError::UnknownKey)
        );

        let none_header = B64.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        assert_eq!(
            verifier.verify(&format!("{none_header}.{payload}."), &e1(), DURING),
            Err(TokenError::UnsupportedAlgorithm)
        );
        for garbage in ["", "a.b", "a.b.c.d", "!!.??.##"] {
            assert_eq!(
                verifier.verify(garbage, &e1(), DURING),
                Err(TokenError::Malformed),
                "{garbage:?}"
            );
        }
    }

    fn signer_named(kid: &str) -> AdmissionSigner {
        AdmissionSigner::generate(kid, [1; 32]).unwrap()
    }

    #[test]
    fn rotated_keys_keep_verifying_until_dropped() {
        let old = signer("2026-10", 1);
        let new = signer("2026-11", 2);
        let verifier = TokenVerifier::new(vec![new.public_key(), old.public_key()]);
        let session = active_session();
        assert!(
            verifier
                .verify(&old.token_for(&session).unwrap(), &e1(), DURING)
                .is_ok()
        );
        assert!(
            verifier
                .verify(&new.token_for(&session).unwrap(), &e1(), DURING)
                .is_ok()
        );
    }

    #[test]
    fn keys_round_trip_through_their_settings_and_the_jwks() {
        let signer = signer("k1", 7);
        let again = AdmissionSigner::parse(&signer.secret_setting()).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        let listed =
            PublicKey::parse_list(&format!(" {} , ", signer.public_key().setting())).unwrap();
        assert_eq!(listed, vec![signer.public_key()]);
        let jwks = jwks(&listed);
        assert_eq!(jwks["keys"][0]["kid"], "k1");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        for bad in ["k1", "k1:", "k 1:AAAA", "k1:not-base64!"] {
            assert!(AdmissionSigner::parse(bad).is_err(), "{bad:?}");
            assert!(PublicKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
