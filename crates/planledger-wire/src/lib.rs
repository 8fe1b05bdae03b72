//! planledger's HTTP contract as Rust types.
//!
//! The server parses request bodies into these types and renders every answer and error from
//! them; `/v1/openapi.json` is generated from them (utoipa); `planledger-client` sends and reads
//! them. A field, a constraint or a status changes here or nowhere.
//!
//! Constraints the server enforces are stated on each field (`pattern`, lengths, ranges), so a
//! request the document calls valid is one the server accepts. What the catalog decides (which
//! plans and actions exist) is added to the served document from the catalog in use.

mod answers;
pub mod integer;
pub mod notifications;
pub mod proof;
mod requests;
pub mod time;

pub use answers::*;
pub use proof::{DigestList, Proof, ProofLeaf, ProvenEvent, SignedDigest};
pub use requests::*;

/// The store's time zone when none is given.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// Header names of the contract.
pub mod headers {
    /// A client's key that makes a command safe to retry.
    pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
    /// Set to `true` on an answer replayed for a retried `Idempotency-Key`.
    pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";
    /// The request's correlation id, given or made; on every answer.
    pub const CORRELATION_ID: &str = "X-Correlation-Id";
}

/// `^[a-z][a-z0-9_]{0,63}$`: plan ids and action names.
pub const IDENTIFIER_PATTERN: &str = "^[a-z][a-z0-9_]{0,63}$";
/// Text with at least one visible character and no NUL: reasons.
pub const REASON_PATTERN: &str = r"^[^\u0000]*[^\s\u0000][^\u0000]*$";
/// Text with at least one visible character and no control character: store names.
pub const NAME_PATTERN: &str =
    r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";
/// Text without control characters: subscription ids.
pub const PRINTABLE_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]+$";
