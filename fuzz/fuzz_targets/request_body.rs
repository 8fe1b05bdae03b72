//! Request bodies of every command route through the API's own parsing: whatever the bytes,
//! parsing answers a typed error or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use planledger_api::edge::parse_json;
use planledger_api::routes::{
    AuthorizeBody, ConsumeBody, ExtensionsBody, RefundBody, RegisterBody, SubscriptionBody, TransitionBody, TrialBody,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse_json::<RegisterBody>(data);
    let _ = parse_json::<TrialBody>(data);
    let _ = parse_json::<SubscriptionBody>(data);
    let _ = parse_json::<TransitionBody>(data);
    let _ = parse_json::<AuthorizeBody>(data);
    let _ = parse_json::<ConsumeBody>(data);
    let _ = parse_json::<RefundBody>(data);
    let _ = parse_json::<ExtensionsBody>(data);
    let _ = parse_json::<serde_json::Value>(data);
});
