//! The handlers of test clock.

use super::*;

pub(crate) fn test_clock(app: &AppState) -> Result<&planledger_service::TestClock, ApiError> {
    app.service.clock().as_test_clock().ok_or(ApiError::NotFound)
}

pub(crate) fn clock_reading(now: DateTime<Utc>) -> Response {
    Json::ok(&wire::ClockReading { now }).into_response()
}

/// The test clock (`PLANLEDGER_TEST_CLOCK=1` only; 404 otherwise).
#[utoipa::path(get, path = "/v1/test-clock", tag = "test clock", operation_id = "getTestClock",
    responses(
        (status = 200, description = "The clock", body = wire::ClockReading),
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No test clock", body = wire::ErrorBody),
    ))]
pub async fn get_test_clock(State(app): State<AppState>) -> Reply {
    let clock = test_clock(&app)?;
    Ok(clock_reading(planledger_service::Clock::now(clock)))
}

/// Set the test clock, then sweep deadlines.
#[utoipa::path(put, path = "/v1/test-clock", tag = "test clock", operation_id = "setTestClock",
    request_body = wire::SetClock,
    responses(
        (status = 200, description = "The clock", body = wire::ClockReading),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No test clock", body = wire::ErrorBody),
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn set_test_clock(State(app): State<AppState>, body: JsonBody<wire::SetClock>) -> Reply {
    let clock = test_clock(&app)?;
    clock.set(body.value.now);
    app.service.sweep().await?;
    Ok(clock_reading(planledger_service::Clock::now(clock)))
}

/// Advance the test clock, then sweep deadlines.
#[utoipa::path(post, path = "/v1/test-clock/advance", tag = "test clock", operation_id = "advanceTestClock",
    request_body = wire::AdvanceClock,
    responses(
        (status = 200, description = "The clock", body = wire::ClockReading),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No test clock", body = wire::ErrorBody),
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn advance_test_clock(State(app): State<AppState>, body: JsonBody<wire::AdvanceClock>) -> Reply {
    let clock = test_clock(&app)?;
    let seconds = body.value.seconds;
    if !(0..=wire::MAX_ADVANCE_SECONDS).contains(&seconds) {
        return Err(ApiError::validation("seconds", "must be from 0 to ten years"));
    }
    let now = clock.advance(TimeDelta::seconds(seconds));
    // Deadlines that passed are appended before the answer, as the deadline worker would.
    app.service.sweep().await?;
    Ok(clock_reading(now))
}
