//! Admission tokens as an origin checks them with a standard JOSE library
//! (joserfc, from the project's Python venv), beside our own verifier: the
//! same tokens pass and fail in both.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use waiting_room::domain::token::{
    self, AdmissionClaims, AdmissionSigner, TokenError, TokenVerifier,
};
use waiting_room::domain::{Admission, EventId, Session, SessionId, Timestamp, UserId};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv `make test` builds; its Python has joserfc (a dependency of the
/// emulator).
fn python() -> PathBuf {
    let python = std::env::var_os("WAITING_ROOM_PYTHON")
        .map_or_else(|| repo().join(".venv/bin/python"), PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run `make venv` (make test does) or set WAITING_ROOM_PYTHON",
        python.display()
    );
    python
}

/// joserfc's verdict on `token` for a route of `event`: `Ok(claims)` or
/// `Err(reason)`.
fn jose_verdict(
    jwks: &serde_json::Value,
    token: &str,
    event: &str,
) -> Result<serde_json::Value, String> {
    let dir = std::env::temp_dir().join(format!("jose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let mut child = Command::new(python())
        .arg(repo().join("tests/jose/verify.py"))
        .arg(&jwks_path)
        .arg(event)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    match stdout.trim().split_once(' ') {
        Some(("ok", claims)) => Ok(serde_json::from_str(claims).unwrap()),
        Some(("refused", reason)) => Err(reason.to_owned()),
        _ => panic!("unexpected answer: {stdout}"),
    }
}

fn active_session(event: &EventId, expires_at: Timestamp) -> Session {
    let mut session = Session::new_waiting(
        SessionId::new(event, [6; 16]),
        UserId::parse("fan@example.com").unwrap(),
        0,
        Timestamp::from_millis(1_000),
    );
    session
        .admit(Admission {
            admitted_at: Timestamp::from_millis(2_000),
            admission_no: 1,
            expires_at,
        })
        .unwrap();
    session
}

#[test]
fn a_standard_jose_library_agrees_with_ours_on_every_token() {
    let signer = AdmissionSigner::generate("k-2026", [3; 32]).unwrap();
    let jwks = token::jwks(&[signer.public_key()]);
    let ours = TokenVerifier::new(vec![signer.public_key()]);
    let e1 = EventId::parse("E1").unwrap();
    let now = Timestamp::from_millis(
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    );
    let later = now.plus(std::time::Duration::from_secs(900));
    let session = active_session(&e1, later);
    let token = signer.token_for(&session).unwrap();

    let claims = jose_verdict(&jwks, &token, "E1").expect("joserfc accepts our token");
    assert_eq!(claims["aud"], "E1");
    assert_eq!(
        claims["sub"],
        session.id.as_str(),
        "the subject is the session"
    );
    assert!(
        !claims.to_string().contains("fan@example.com"),
        "no user id: {claims}"
    );
    assert!(ours.verify(&token, &e1, now).is_ok());

    // Another event's route: both refuse.
    let e2 = EventId::parse("E2").unwrap();
    let refused = jose_verdict(&jwks, &token, "E2").unwrap_err();
    assert!(refused.contains("aud"), "{refused}");
    assert_eq!(
        ours.verify(&token, &e2, now),
        Err(TokenError::WrongAudience)
    );

    // Expired, and signed by a key the JWKS does not hold: both refuse.
    let expired_session = active_session(&e1, Timestamp::from_millis(3_000));
    let expired = signer.token_for(&expired_session).unwrap();
    assert!(jose_verdict(&jwks, &expired, "E1").is_err());
    assert_eq!(ours.verify(&expired, &e1, now), Err(TokenError::Expired));
    let stranger = AdmissionSigner::generate("k-2026", [4; 32]).unwrap();
    let forged = stranger.token_for(&session).unwrap();
    assert!(jose_verdict(&jwks, &forged, "E1").is_err());
    assert_eq!(
        ours.verify(&forged, &e1, now),
        Err(TokenError::BadSignature)
    );

    // A token whose claims were edited after signing.
    let mut edited: AdmissionClaims = ours.verify(&token, &e1, now).unwrap();
    edited.aud = "E2".into();
    let (head, rest) = token.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&edited).unwrap());
    let tampered = format!("{head}.{payload}.{signature}");
    assert!(jose_verdict(&jwks, &tampered, "E2").is_err());
    assert_eq!(
        ours.verify(&tampered, &e2, now),
        Err(TokenError::BadSignature)
    );
}
