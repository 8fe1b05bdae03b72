//! Signatures as the Standard Webhooks specification defines them, so that receivers verify
//! deliveries with an existing library in their language: `webhook-signature: v1,<base64>` of
//! HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64-decoded
//! part of a `whsec_` secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in base64. (Two version-4 UUIDs carry 244 random
/// bits from the operating system's generator; hashed together they fill the key.)
pub fn new_secret() -> String {
    let mut hasher = Sha256::new();
    hasher.update(uuid::Uuid::new_v4().as_bytes());
    hasher.update(uuid::Uuid::new_v4().as_bytes());
    format!("{PREFIX}{}", STANDARD.encode(hasher.finalize()))
}

/// The `webhook-signature` value of one delivery; `None` if the secret is not a valid
/// `whsec_` secret (one the server made always is).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(PREFIX).unwrap_or(secret)).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own example (standard-webhooks/spec, "Signature scheme").
    #[test]
    fn the_specifications_example_signs_alike() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn new_secrets_are_distinct_and_well_formed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_") && STANDARD.decode(&a[6..]).unwrap().len() == 32);
        assert!(sign(&a, "msg_1", 1, "{}").is_some());
        assert!(sign("whsec_%%%", "msg_1", 1, "{}").is_none());
    }
}
