//! planledger's read models.
//!
//! `tenant_state` is written in the same transaction as the events it reflects, so a read
//! after a write sees it (read-your-writes). Its schema lives in `projections/tenant_state/`,
//! one folder per version; read models are disposable and can be rebuilt from the log.

pub mod tenant_state;

pub use tenant_state::TenantStateRow;
