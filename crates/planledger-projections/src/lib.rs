//! planledger's read models.
//!
//! - `tenant_state` is written in the same transaction as the events it reflects, so a read
//!   after a write sees it (read-your-writes).
//! - `audit_log` is written by an asynchronous projector ([`runtime`]) that follows the
//!   gap-safe global log with a checkpoint.
//! - Both are disposable: [`rebuild`] builds a new generation from the log beside the live one
//!   and swaps it in. Their schemas live in `projections/<name>/v1/`; [`schema`] records which
//!   generation is live and the catalog it was built with.
//! - [`history`]: the one fold of a store's stream into its state, for every reader.
//! - [`replay`]: a history event by event, beside another catalog (what-if).

pub mod audit;
pub mod claim;
pub mod history;
pub mod preview;
pub mod rebuild;
pub mod replay;
pub mod runtime;
pub mod schema;
pub mod tenant_state;

pub use schema::ReadModel;
pub use tenant_state::TenantStateRow;
