//! `Stripe-Signature`, checked exactly as Stripe documents it: the header carries a timestamp
//! `t` and one or more `v1` signatures, each the hex HMAC-SHA256 of `"{t}.{raw body}"` keyed by
//! an endpoint's signing secret. A delivery is genuine when one `v1` matches one of the
//! configured secrets (two during a rotation), compared in constant time, and its timestamp is
//! within the tolerance of now (a replayed old delivery is refused). The header is read and its
//! time checked before the body is read; the body is checked before anything parses it, with one
//! HMAC per configured secret however many signatures the header carries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Stripe's own libraries accept deliveries signed up to five minutes ago.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// An endpoint's signing secret (`whsec_...`); its text is the HMAC key, as Stripe uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() < 8 || text.chars().any(char::is_whitespace) {
            return Err("a Stripe webhook signing secret (whsec_...) of at least 8 characters".into());
        }
        Ok(Self(text.to_owned()))
    }

    /// The secrets of a comma-separated list (`PLANLEDGER_STRIPE_WEBHOOK_SECRETS`).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(',').filter(|s| !s.trim().is_empty()).map(Self::parse).collect()
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is not t=<timestamp>,v1=<signature>: {0}")]
    Malformed(&'static str),
    #[error("no v1 signature matches the body with a configured signing secret")]
    Mismatch,
    #[error(
        "the delivery was signed {age_seconds} s from now, outside the tolerance of {tolerance_seconds} s (a replayed or delayed delivery)"
    )]
    OutsideTolerance { age_seconds: i64, tolerance_seconds: u64 },
}

/// The most comma-separated entries a `Stripe-Signature` header may have. Stripe sends `t`, one
/// `v1` per active secret (two during a rotation) and, in test mode, a `v0`: a handful. A header
/// with more is refused before anything is computed, so its length buys an attacker nothing.
pub const MAX_HEADER_ENTRIES: usize = 16;

/// A `Stripe-Signature` header, read and checked for its time: what is left to check is whether
/// one of its signatures is the body's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeader {
    timestamp: i64,
    signatures: Vec<[u8; 32]>,
}

impl SignedHeader {
    /// Reads `header` (`Stripe-Signature` as received) and checks that its time is within
    /// `tolerance` of `now`. Nothing here depends on the body, so a forged or replayed header is
    /// refused before the body is read.
    pub fn parse(header: Option<&str>, now: DateTime<Utc>, tolerance: Duration) -> Result<Self, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        if header.split(',').nth(MAX_HEADER_ENTRIES).is_some() {
            return Err(SignatureError::Malformed("more than 16 entries"));
        }
        let mut timestamp: Option<i64> = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed("a part without '='"))?;
            match key {
                "t" => {
                    let t = value.parse().map_err(|_| SignatureError::Malformed("t is not a Unix timestamp"))?;
                    if timestamp.replace(t).is_some() {
                        return Err(SignatureError::Malformed("t is given twice"));
                    }
                }
                // A signature that is not 32 bytes of hex cannot match; it does not make the
                // header unreadable (Stripe's libraries skip it the same way).
                "v1" => {
                    let mut signature = [0u8; 32];
                    if hex::decode_to_slice(value, &mut signature).is_ok() {
                        signatures.push(signature);
                    }
                }
                // v0 (test-mode legacy) and schemes Stripe may add later are not ours to check.
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed("no t"))?;
        if signatures.is_empty() {
            return Err(SignatureError::Malformed("no v1 signature"));
        }
        let age_seconds = now.timestamp().saturating_sub(timestamp);
        let tolerance_seconds = tolerance.as_secs();
        if age_seconds.unsigned_abs() > tolerance_seconds {
            return Err(SignatureError::OutsideTolerance { age_seconds, tolerance_seconds });
        }
        Ok(Self { timestamp, signatures })
    }

    /// Whether one of the header's signatures is the body's under one of `secrets`: one HMAC per
    /// secret, whatever the header holds, each compared with every signature in constant time.
    pub fn verify(&self, body: &[u8], secrets: &[SigningSecret]) -> Result<(), SignatureError> {
        let mut matched = subtle::Choice::from(0);
        for secret in secrets {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()).unwrap_or_else(|_| unreachable!());
            mac.update(self.timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            let expected = mac.finalize().into_bytes();
            for signature in &self.signatures {
                // Constant time: how much of a guess matches is not observable.
                matched |= expected.as_slice().ct_eq(signature.as_slice());
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Checks a delivery: `header` is `Stripe-Signature` as received, `body` the raw bytes.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[SigningSecret],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    SignedHeader::parse(header, now, tolerance)?.verify(body, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The scheme as Stripe's documentation states it, written out here rather than shared with
    /// the code under test.
    fn stripe_signs(secret: &str, t: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn secrets(list: &str) -> Vec<SigningSecret> {
        SigningSecret::parse_list(list).unwrap()
    }

    #[test]
    fn a_delivery_signed_with_a_configured_secret_within_the_tolerance_is_genuine() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let body = r#"{"id":"evt_1","type":"invoice.paid"}"#;
        let t = now.timestamp() - 10;
        let header = format!("t={t},v1={},v0=ignored", stripe_signs("whsec_old_secret", t, body));
        // During a rotation both secrets are configured; either one's signature is accepted.
        let rotating = secrets("whsec_new_secret,whsec_old_secret");
        assert_eq!(verify(Some(&header), body.as_bytes(), &rotating, now, DEFAULT_TOLERANCE), Ok(()));
        // Stripe signs with every active secret during its own rotation: one match is enough.
        let both = format!("t={t},v1=00ff,v1={}", stripe_signs("whsec_new_secret", t, body));
        assert_eq!(verify(Some(&both), body.as_bytes(), &secrets("whsec_new_secret"), now, DEFAULT_TOLERANCE), Ok(()));
    }

    #[test]
    fn tampered_bodies_wrong_secrets_and_old_signatures_are_refused() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let body = r#"{"id":"evt_1","type":"invoice.paid"}"#;
        let key = secrets("whsec_the_secret");
        let t = now.timestamp();
        let header = format!("t={t},v1={}", stripe_signs("whsec_the_secret", t, body));
        let tampered = body.replace("paid", "payment_failed");
        assert_eq!(
            verify(Some(&header), tampered.as_bytes(), &key, now, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), body.as_bytes(), &secrets("whsec_another_one"), now, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        // The same signature replayed ten minutes later.
        let later = now + chrono::TimeDelta::minutes(10);
        assert_eq!(
            verify(Some(&header), body.as_bytes(), &key, later, DEFAULT_TOLERANCE),
            Err(SignatureError::OutsideTolerance { age_seconds: 600, tolerance_seconds: 300 })
        );
        // A timestamp moved by the sender changes what was signed.
        let moved = header.replace(&format!("t={t}"), &format!("t={}", later.timestamp()));
        assert_eq!(
            verify(Some(&moved), body.as_bytes(), &key, later, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        for bad in ["", "t=1", "v1=abcd", "t=x,v1=ab", "nonsense", "t=1,t=2,v1=ab"] {
            assert!(
                matches!(
                    verify(Some(bad), body.as_bytes(), &key, now, DEFAULT_TOLERANCE),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(verify(None, body.as_bytes(), &key, now, DEFAULT_TOLERANCE), Err(SignatureError::Missing));
    }

    #[test]
    fn a_header_of_many_entries_is_refused_before_any_hmac_is_computed() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let body = r#"{"id":"evt_1","type":"invoice.paid"}"#;
        let key = secrets("whsec_the_secret");
        let t = now.timestamp();
        let bogus = format!(",v1={}", "ab".repeat(32));
        let flood = format!("t={t}{}", bogus.repeat(5_000));
        assert_eq!(
            SignedHeader::parse(Some(&flood), now, DEFAULT_TOLERANCE),
            Err(SignatureError::Malformed("more than 16 entries"))
        );
        // Up to the cap, the genuine signature is found among bogus ones.
        let genuine = format!("t={t}{},v1={}", bogus.repeat(14), stripe_signs("whsec_the_secret", t, body));
        assert_eq!(verify(Some(&genuine), body.as_bytes(), &key, now, DEFAULT_TOLERANCE), Ok(()));
        // A stale header is refused on its time alone, without the body.
        let stale = format!("t={}{}", t - 3_600, bogus);
        assert!(matches!(
            SignedHeader::parse(Some(&stale), now, DEFAULT_TOLERANCE),
            Err(SignatureError::OutsideTolerance { .. })
        ));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret = SigningSecret::parse("whsec_do_not_print").unwrap();
        assert!(!format!("{secret:?}").contains("do_not_print"));
        assert!(SigningSecret::parse("short").is_err());
        assert!(SigningSecret::parse_list("whsec_aaaaaaaa, whsec_bbbbbbbb").unwrap().len() == 2);
    }
}
