//! The admin console's sessions (`console_sessions`): a token exchanged for a cookie at login.
//!
//! The cookie carries 256 random bits; the table keeps only their SHA-256, so reading it does not
//! let anyone sign in. Each session names the token it was made from (its name and a digest of
//! its secret): the edge checks on every request that such a token is still configured, so
//! removing a token or giving it a new secret ends its sessions on every node. Each session has
//! its own synchronizer token for forms (CSRF). Expired sessions are deleted at each login.

use chrono::{DateTime, TimeDelta, Utc};
use planledger_store::{AnyEventLog, Kind, Statement, StoreError};
use sha2::{Digest, Sha256};

/// How long a console session lasts from its login.
pub const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(8);

/// 256 bits from the operating system's generator (by way of four version-4 UUIDs, which carry
/// 122 each), as 64 hexadecimal digits.
pub fn random_token() -> String {
    let mut hasher = Sha256::new();
    for _ in 0..4 {
        hasher.update(uuid::Uuid::new_v4().as_bytes());
    }
    hex(&hasher.finalize())
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(cookie: &str) -> String {
    hex(&Sha256::digest(cookie.as_bytes()))
}

/// A signed-in console user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token's name: the actor of everything done in the session.
    pub principal: String,
    /// The SHA-256 of the token's secret when the session was opened.
    pub token_digest: String,
    /// The form token of this session.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session for the token named `principal`; answers the cookie's value (shown to the
/// browser once, never stored) and the session.
pub async fn open(
    log: &AnyEventLog,
    principal: &str,
    token_digest: &str,
    now: DateTime<Utc>,
) -> Result<(String, Session), StoreError> {
    log.execute(&Statement::new("DELETE FROM console_sessions WHERE expires_at_us <= $1").bind(now.timestamp_micros()))
        .await?;
    let cookie = random_token();
    let session = Session {
        principal: principal.to_owned(),
        token_digest: token_digest.to_owned(),
        csrf: random_token(),
        expires_at: now + SESSION_LIFETIME,
    };
    let sql = "INSERT INTO console_sessions (id_hash, principal, token_digest, csrf, created_at_us, expires_at_us)
               VALUES ($1, $2, $3, $4, $5, $6)";
    let statement = Statement::new(sql)
        .bind(digest(&cookie))
        .bind(&session.principal)
        .bind(&session.token_digest)
        .bind(&session.csrf)
        .bind(now.timestamp_micros())
        .bind(session.expires_at.timestamp_micros());
    log.execute(&statement).await?;
    Ok((cookie, session))
}

/// The live session of a cookie's value, if any.
pub async fn find(log: &AnyEventLog, cookie: &str, now: DateTime<Utc>) -> Result<Option<Session>, StoreError> {
    let sql = "SELECT principal, token_digest, csrf, expires_at_us FROM console_sessions
               WHERE id_hash = $1 AND expires_at_us > $2";
    let statement = Statement::new(sql).bind(digest(cookie)).bind(now.timestamp_micros());
    let Some(row) = log.fetch_optional(&statement, &[Kind::Text, Kind::Text, Kind::Text, Kind::Int]).await? else {
        return Ok(None);
    };
    Ok(Some(Session {
        principal: row.text(0)?,
        token_digest: row.text(1)?,
        csrf: row.text(2)?,
        expires_at: DateTime::from_timestamp_micros(row.int(3)?).unwrap_or_default(),
    }))
}

/// Ends the session of a cookie's value (logout); nothing if there is none.
pub async fn close(log: &AnyEventLog, cookie: &str) -> Result<(), StoreError> {
    log.execute(&Statement::new("DELETE FROM console_sessions WHERE id_hash = $1").bind(digest(cookie))).await?;
    Ok(())
}
