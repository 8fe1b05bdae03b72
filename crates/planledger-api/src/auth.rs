//! Bearer tokens and roles (SPEC 11): `PLANLEDGER_TOKENS=name:role:secret,...`.
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
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn roles_are_ordered() {
        let reader = Principal { name: "r".into(), role: Role::Reader };
        assert_eq!(reader.require(Role::Service), Err(ApiError::Forbidden));
        assert!(Principal { name: "a".into(), role: Role::Admin }.require(Role::Service).is_ok());
    }
}
