//! The handlers of audit.

use super::*;

pub(crate) fn short_text(params: &Params, name: &'static str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        Some(v) if v.chars().count() > 200 || v.contains('\0') => {
            Err(ApiError::validation(name, "must be at most 200 characters, without NUL"))
        }
        other => Ok(other.map(str::to_owned)),
    }
}

pub(crate) fn store_filter(params: &Params) -> Result<Option<String>, ApiError> {
    params.get("storeId").map(|s| StoreId::parse(s).map(|s| s.to_string())).transpose().map_err(ApiError::from)
}

/// The audit view: one entry per event, in log order.
#[utoipa::path(get, path = "/v1/audit", tag = "history", operation_id = "listAudit",
    params(
        ("storeId" = Option<Uuid>, Query, description = "Only this store"),
        ("type" = Option<String>, Query, description = "Only this event type", max_length = 200, pattern = r"^[^\u0000]*$"),
        ("correlationId" = Option<String>, Query, description = "Only this correlation id", max_length = 200, pattern = r"^[^\u0000]*$"),
        ("from" = Option<DateTime<Utc>>, Query, description = "Recorded at or after"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Recorded before"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page", pattern = "^[0-9]{1,18}$"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of the audit view", body = wire::Page<wire::AuditEntry>),
        rs::Unauthorized,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn audit(State(app): State<AppState>, params: Params) -> Reply {
    let limit = params.int("limit", 100, 1..=1000)?;
    let query = planledger_projections::audit::AuditQuery {
        store_id: store_filter(&params)?,
        event_type: short_text(&params, "type")?,
        correlation_id: short_text(&params, "correlationId")?,
        from: time_param(&params, "from")?,
        to: time_param(&params, "to")?,
        after: cursor_param(&params)?,
        limit: limit + 1,
    };
    let rows = planledger_projections::audit::query(app.service.reads(), &query).await?;
    let page = page(
        rows,
        limit,
        |r| r.position.to_string(),
        |r| wire::AuditEntry {
            store_id: r.store_id,
            version: r.version,
            event_type: r.event_type,
            correlation_id: r.correlation_id,
            actor: r.actor,
            recorded_at: r.recorded_at,
            summary: r.summary,
        },
    );
    Ok(Json::ok(&page).into_response())
}

pub(crate) fn command_outcome(outcome: &str) -> wire::CommandOutcome {
    match outcome {
        "accepted" => wire::CommandOutcome::Accepted,
        "refused" => wire::CommandOutcome::Refused,
        "replayed" => wire::CommandOutcome::Replayed,
        "unknown" => wire::CommandOutcome::Unknown,
        _ => wire::CommandOutcome::Failed,
    }
}

/// The command journal: every command, accepted or refused.
#[utoipa::path(get, path = "/v1/audit/commands", tag = "history", operation_id = "listCommands",
    params(
        ("storeId" = Option<Uuid>, Query, description = "Only this store"),
        ("correlationId" = Option<String>, Query, description = "Only this correlation id", max_length = 200, pattern = r"^[^\u0000]*$"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page", pattern = "^[0-9]{1,18}$"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of the journal", body = wire::Page<wire::JournalEntry>),
        rs::Unauthorized,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn audit_commands(State(app): State<AppState>, params: Params) -> Reply {
    let store_id = store_filter(&params)?;
    let correlation_id = short_text(&params, "correlationId")?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let rows = planledger_projections::audit::journal(
        app.service.reads(),
        store_id.as_deref(),
        correlation_id.as_deref(),
        cursor_param(&params)?,
        limit + 1,
    )
    .await?;
    let page = page(
        rows,
        limit,
        |r| r.id.to_string(),
        |r| wire::JournalEntry {
            store_id: r.store_id,
            kind: r.kind,
            outcome: command_outcome(&r.outcome),
            error_code: r.error_code,
            correlation_id: r.correlation_id,
            actor: r.actor,
            idempotency_key: r.idempotency_key,
            duration_us: r.duration_us,
            recorded_at: r.recorded_at,
        },
    );
    Ok(Json::ok(&page).into_response())
}
