//! Bearer tokens and roles (contract §11): `PLANLEDGER_TOKENS=name:role:secret,...`.
//!
//! Secrets are compared in constant time and never logged; a principal is known by its name.

use std::fmt;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// GET routes.
    Reader,
    /// Commands and reads.
    Service,
    /// Everything: force reset, transitions without subscription id, bulk, rebuild, test clock.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Service => "service",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "service" => Some(Role::Service),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

struct Token {
    name: String,
    role: Role,
    secret: Vec<u8>,
}

/// The configured tokens. Empty means open access (the server then binds to loopback only).
pub struct Tokens(Vec<Token>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|t| (&t.name, t.role))).finish()
    }
}

/// Why `PLANLEDGER_TOKENS` was refused (never containing a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PLANLEDGER_TOKENS entry {index}: {problem} (expected name:role:secret, role reader|service|admin)")]
pub struct TokensError {
    pub index: usize,
    pub problem: &'static str,
}

impl Tokens {
    pub fn none() -> Self {
        Tokens(Vec::new())
    }

    pub fn parse(spec: &str) -> Result<Self, TokensError> {
        let mut tokens = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(TokensError { index, problem: "not three fields" });
            };
            let role = Role::parse(role).ok_or(TokensError { index, problem: "unknown role" })?;
            if name.is_empty() || secret.len() < 8 {
                return Err(TokensError { index, problem: "empty name or a secret shorter than 8 characters" });
            }
            // One secret would be one principal whoever was meant; one name would be one
            // console session's owner whichever secret signed in.
            if tokens.iter().any(|t: &Token| t.secret == secret.as_bytes()) {
                return Err(TokensError { index, problem: "the same secret as an earlier token" });
            }
            if tokens.iter().any(|t: &Token| t.name == name) {
                return Err(TokensError { index, problem: "the same name as an earlier token" });
            }
            tokens.push(Token { name: name.to_owned(), role, secret: secret.as_bytes().to_vec() });
        }
        Ok(Tokens(tokens))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The principal of an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        if self.0.is_empty() {
            return Ok(Principal { name: "anonymous".to_owned(), role: Role::Admin });
        }
        let presented = header.and_then(|h| h.strip_prefix("Bearer ")).ok_or(ApiError::Unauthorized)?.trim().as_bytes();
        // Compare against every token, so timing does not tell which one came close.
        let mut found = None;
        for token in &self.0 {
            if constant_time_eq(&token.secret, presented) && found.is_none() {
                found = Some(Principal { name: token.name.clone(), role: token.role });
            }
        }
        found.ok_or(ApiError::Unauthorized)
    }
}

/// The digest a console session keeps of the token it was made from (open access: `"open"`).
fn token_digest(secret: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret).iter().map(|b| format!("{b:02x}")).collect()
}

const OPEN_ACCESS: &str = "open";

impl Tokens {
    /// The principal a console login with `secret` signs in as, with the digest its session
    /// keeps of the token; `None` for a secret no token has. Open access signs in anyone.
    pub fn login(&self, secret: &str) -> Option<(Principal, String)> {
        if self.0.is_empty() {
            return Some((Principal { name: "anonymous".to_owned(), role: Role::Admin }, OPEN_ACCESS.to_owned()));
        }
        let principal = self.authenticate(Some(&format!("Bearer {secret}"))).ok()?;
        Some((principal, token_digest(secret.trim().as_bytes())))
    }

    /// The principal of a console session made from the token `name` with `digest`, if that
    /// token is still configured with the same secret.
    pub fn session_principal(&self, name: &str, digest: &str) -> Option<Principal> {
        if self.0.is_empty() {
            return (digest == OPEN_ACCESS).then(|| Principal { name: name.to_owned(), role: Role::Admin });
        }
        let token = self.0.iter().find(|t| t.name == name)?;
        constant_time_eq(token_digest(&token.secret).as_bytes(), digest.as_bytes())
            .then(|| Principal { name: token.name.clone(), role: token.role })
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// Failed authentications slowed down per source: each source may fail
/// [`ThrottleConfig::burst`] times at once, then once per [`ThrottleConfig::refill`] (GCRA, the
/// `governor` crate). A source over its budget is answered `429 too_many_attempts` with
/// `Retry-After` before its credential is even looked at, so a guess made then learns nothing;
/// the wait is at most one refill, so the holder of the right secret behind the same address is
/// held up for a moment, not locked out.
pub struct Throttle {
    failures: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    blocked: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, std::time::Instant>>,
}

/// How many failed authentications a source may make.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    pub burst: u32,
    pub refill: std::time::Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self { burst: 10, refill: std::time::Duration::from_secs(1) }
    }
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle").field("sources", &self.failures.len()).finish()
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        let burst = std::num::NonZeroU32::new(config.burst.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::with_period(config.refill.max(std::time::Duration::from_millis(1)))
            .unwrap_or_else(|| governor::Quota::per_second(std::num::NonZeroU32::MIN))
            .allow_burst(burst);
        Self { failures: governor::RateLimiter::keyed(quota), blocked: Default::default() }
    }

    /// `Some(seconds)` while `source` must wait before its credentials are checked again.
    pub fn wait(&self, source: std::net::IpAddr) -> Option<u64> {
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let until = blocked.get(&source)?;
        let left = until.checked_duration_since(std::time::Instant::now())?;
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    /// Counts a failed authentication of `source`.
    pub fn failed(&self, source: std::net::IpAddr) {
        let Err(not_until) = self.failures.check_key(&source) else { return };
        let wait = not_until.wait_time_from(governor::clock::Clock::now(self.failures.clock()));
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if blocked.len() > 4096 {
            // Forget sources whose wait is over, and the limiter's state of quiet ones.
            blocked.retain(|_, until| *until > now);
            self.failures.retain_recent();
        }
        blocked.insert(source, now + wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_parsed_and_matched_by_secret() {
        let tokens =
            Tokens::parse("ops:admin:s3cret-admin, billing:service:s3cret-service,dash:reader:s3cret-reader").unwrap();
        let who = tokens.authenticate(Some("Bearer s3cret-service")).unwrap();
        assert_eq!((who.name.as_str(), who.role), ("billing", Role::Service));
        assert_eq!(tokens.authenticate(Some("Bearer wrong-secret")), Err(ApiError::Unauthorized));
        assert_eq!(tokens.authenticate(None), Err(ApiError::Unauthorized));
        assert_eq!(tokens.authenticate(Some("Basic s3cret-service")), Err(ApiError::Unauthorized));
    }

    #[test]
    fn a_console_session_lives_only_as_long_as_its_token() {
        let tokens = Tokens::parse("ops:admin:s3cret-admin,dash:reader:s3cret-reader").unwrap();
        let (who, digest) = tokens.login("s3cret-reader").unwrap();
        assert_eq!((who.name.as_str(), who.role), ("dash", Role::Reader));
        assert!(!digest.contains("s3cret"));
        assert_eq!(tokens.session_principal("dash", &digest), Some(who));
        assert!(tokens.login("wrong-secret").is_none());
        assert!(tokens.session_principal("ops", &digest).is_none(), "another token's session");
        let rotated = Tokens::parse("ops:admin:s3cret-admin,dash:reader:n3w-s3cret-reader").unwrap();
        assert!(rotated.session_principal("dash", &digest).is_none(), "a new secret ends the sessions");
        let open = Tokens::none();
        let (anyone, open_digest) = open.login("").unwrap();
        assert_eq!(anyone.role, Role::Admin);
        assert!(open.session_principal(&anyone.name, &open_digest).is_some());
        assert!(tokens.session_principal(&anyone.name, &open_digest).is_none(), "tokens configured later");
    }

    #[test]
    fn a_bad_token_spec_is_refused_without_echoing_it() {
        let err = Tokens::parse("ops:root:supersecret").unwrap_err();
        assert!(!err.to_string().contains("supersecret"));
        assert!(Tokens::parse("ops:admin:short").is_err());
        assert!(Tokens::parse("justone").is_err());
    }

    #[test]
    fn two_tokens_with_one_secret_or_one_name_are_refused() {
        let err = Tokens::parse("ops:admin:s3cret-shared,billing:service:s3cret-shared").unwrap_err();
        assert_eq!((err.index, err.problem), (1, "the same secret as an earlier token"));
        assert!(!err.to_string().contains("s3cret"));
        let err = Tokens::parse("ops:admin:s3cret-one,ops:reader:s3cret-two").unwrap_err();
        assert_eq!(err.problem, "the same name as an earlier token");
    }

    #[test]
    fn a_source_that_fails_too_often_waits_and_others_do_not() {
        let throttle = Throttle::new(ThrottleConfig { burst: 3, refill: std::time::Duration::from_secs(2) });
        let guesser: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.wait(guesser), None);
            throttle.failed(guesser);
        }
        assert_eq!(throttle.wait(guesser), None, "the burst is spent, not exceeded");
        throttle.failed(guesser);
        let wait = throttle.wait(guesser).expect("over the burst: wait");
        assert!((1..=2).contains(&wait), "at most one refill: {wait} s");
        assert_eq!(throttle.wait("192.0.2.8".parse().unwrap()), None, "another source is not held up");
    }

    #[test]
    fn roles_are_ordered() {
        let reader = Principal { name: "r".into(), role: Role::Reader };
        assert_eq!(reader.require(Role::Service), Err(ApiError::Forbidden));
        assert!(Principal { name: "a".into(), role: Role::Admin }.require(Role::Service).is_ok());
    }
}
