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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
