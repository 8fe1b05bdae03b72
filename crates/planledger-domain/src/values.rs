//! Small values that are valid by construction: parse, don't validate.
//!
//! Each type has a private field and a `parse` that names the rule it enforces, so a plan id,
//! an action name, a number of days or an amount that reaches the rules is already known good.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why an input value was refused: the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub rule: String,
}

impl InvalidValue {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self { field, rule: rule.into() }
    }
}

/// `^[a-z][a-z0-9_]{0,63}$`: the shape of action names and plan ids.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z')) && s.len() <= 64 && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// What every text value has: its text, and conversions from and to `String` (serde reads a
/// value through `parse`).
macro_rules! text_value {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                if is_identifier(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidValue::new($field, "must match ^[a-z][a-z0-9_]{0,63}$"))
                }
            }
        }

        text_value!($name);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
    };
}

identifier!(
    /// A plan of the catalog, e.g. `starter`.
    PlanId,
    "planId"
);
identifier!(
    /// Something a store does that the ledger gates or meters, e.g. `create_article`.
    ActionName,
    "action"
);

/// A store (tenant): one stream per store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreId(Uuid);

impl StoreId {
    pub fn new(id: Uuid) -> Self {
        Self(id)
    }

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidValue::new("storeId", "must be a UUID"))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The store imported as `external`: a UUID (v5) of the external id, the same on every
    /// run and every node, so that importing a tenant again finds its store.
    pub fn imported(external: &ExternalId) -> StoreId {
        /// planledger's namespace for imported tenants' ids (a fixed, random UUID).
        const IMPORTED: Uuid = Uuid::from_u128(0x6f1c_2b0e_4d7a_4c55_9a3e_1f0b_8c2d_5e71);
        StoreId(Uuid::new_v5(&IMPORTED, external.as_str().as_bytes()))
    }

    /// The store's stream in the event log.
    pub fn stream_name(&self) -> String {
        format!("store-{}", self.0)
    }

    /// The store whose stream is named `stream`, if it is a store's stream.
    pub fn from_stream_name(stream: &str) -> Option<StoreId> {
        stream.strip_prefix("store-").and_then(|id| StoreId::parse(id).ok())
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An IANA time zone, in which a store's calendar periods are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(chrono_tz::Tz);

impl TimeZoneName {
    pub const UTC: TimeZoneName = TimeZoneName(chrono_tz::Tz::UTC);

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        chrono_tz::Tz::from_str(s)
            .map(Self)
            .map_err(|_| InvalidValue::new("timeZone", "must be an IANA time zone name, e.g. Europe/Paris"))
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// Every name `parse` accepts.
    pub fn names() -> impl Iterator<Item = &'static str> {
        chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
    }
}

impl Default for TimeZoneName {
    fn default() -> Self {
        Self::UTC
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TimeZoneName> for String {
    fn from(value: TimeZoneName) -> Self {
        value.name().to_owned()
    }
}

/// A number of days for a trial or an extension: 1 to 3650.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Days(u16);

impl Days {
    pub const MAX: i64 = 3650;

    pub fn parse(days: i64) -> Result<Self, InvalidValue> {
        match u16::try_from(days) {
            Ok(d) if (1..=Self::MAX).contains(&days) => Ok(Self(d)),
            _ => Err(InvalidValue::new("days", "must be an integer from 1 to 3650")),
        }
    }

    pub fn get(&self) -> i64 {
        i64::from(self.0)
    }

    pub fn duration(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::days(self.get())
    }
}

impl TryFrom<i64> for Days {
    type Error = InvalidValue;
    fn try_from(days: i64) -> Result<Self, Self::Error> {
        Self::parse(days)
    }
}

impl From<Days> for i64 {
    fn from(value: Days) -> Self {
        value.get()
    }
}

/// How much of a quota one consumption takes: 1 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Amount(u32);

impl Amount {
    pub const MAX: u64 = 1_000_000;
    pub const ONE: Amount = Amount(1);

    pub fn parse(amount: i64) -> Result<Self, InvalidValue> {
        match u32::try_from(amount) {
            Ok(a) if (1..=Self::MAX as i64).contains(&amount) => Ok(Self(a)),
            _ => Err(InvalidValue::new("amount", "must be an integer from 1 to 1000000")),
        }
    }

    pub fn get(&self) -> u64 {
        u64::from(self.0)
    }
}

impl TryFrom<u64> for Amount {
    type Error = InvalidValue;
    fn try_from(amount: u64) -> Result<Self, Self::Error> {
        i64::try_from(amount).map_err(|_| InvalidValue::new("amount", "too large")).and_then(Self::parse)
    }
}

impl From<Amount> for u64 {
    fn from(value: Amount) -> Self {
        value.get()
    }
}

/// Why an operator did something out of the ordinary: required, 1 to 500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);

impl Reason {
    pub const MAX_LEN: usize = 500;

    /// The rule is on the text as sent (so that a JSON Schema states it exactly); it is kept
    /// trimmed.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let trimmed = s.trim();
        if trimmed.is_empty() || s.chars().count() > Self::MAX_LEN || s.contains('\0') {
            return Err(InvalidValue::new("reason", "must be 1 to 500 characters, without NUL, not only spaces"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Reason {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Reason> for String {
    fn from(value: Reason) -> Self {
        value.0
    }
}

/// 1 to `max` printable characters: ids of other systems, kept as they are given.
macro_rules! printable_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                if s.is_empty() || s.chars().count() > Self::MAX_CHARS || s.chars().any(char::is_control) {
                    return Err(InvalidValue::new($field, concat!("must be 1 to ", $max, " printable characters")));
                }
                Ok(Self(s.to_owned()))
            }
        }

        text_value!($name);
    };
}

printable_id!(
    /// A payment provider's subscription id.
    SubscriptionId,
    "subscriptionId",
    200
);
printable_id!(
    /// A store's id in the system it was imported from (a Prisma `cuid()`, a number, a slug).
    /// An imported store's id is derived from it ([`StoreId::imported`]), so the same tenant
    /// imported twice is one store.
    ExternalId,
    "externalId",
    255
);

/// A store's display name: up to 200 characters, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoreName(String);

impl StoreName {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let trimmed = s.trim();
        if trimmed.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "name",
                "must be 1 to 200 characters, without control characters, not only spaces",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StoreName {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<StoreName> for String {
    fn from(value: StoreName) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_the_action_name_rule() {
        for good in ["a", "create_article", "x9_", &"a".repeat(64)] {
            assert!(ActionName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "9a", "_a", "Create", "a-b", "a b", &"a".repeat(65), "ä", "a;drop"] {
            assert!(ActionName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_and_amounts_have_bounds() {
        assert!(Days::parse(0).is_err() && Days::parse(3651).is_err() && Days::parse(-1).is_err());
        assert_eq!(Days::parse(3650).map(|d| d.get()), Ok(3650));
        assert!(Amount::parse(0).is_err() && Amount::parse(1_000_001).is_err());
        assert_eq!(Amount::parse(1_000_000).map(|a| a.get()), Ok(1_000_000));
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(TimeZoneName::parse("Europe/Paris").map(|t| t.name()), Ok("Europe/Paris"));
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
        assert!(TimeZoneName::parse("").is_err());
    }

    #[test]
    fn reasons_and_names_are_trimmed_and_bounded() {
        assert_eq!(
            Reason::parse("  support ticket 42 ").map(|r| r.as_str().to_owned()),
            Ok("support ticket 42".into())
        );
        assert!(Reason::parse("   ").is_err());
        assert!(Reason::parse(&"x".repeat(501)).is_err());
        assert!(StoreName::parse("a\u{0}b").is_err());
    }
}

/// How each value is written in the API's OpenAPI document (feature `openapi`): as the
/// primitive serde writes it as, with the rule `parse` enforces. One named schema per value, so
/// that a generated client sees `PlanId` where the ledger has one.
#[cfg(feature = "openapi")]
mod openapi {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
    use utoipa::openapi::RefOr;

    use super::*;

    fn text(description: &str) -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::String).description(Some(description))
    }

    fn integer(description: &str, minimum: u64, maximum: u64) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .description(Some(description))
            .minimum(Some(minimum as f64))
            .maximum(Some(maximum as f64))
    }

    macro_rules! schema {
        ($name:ty, $schema:expr) => {
            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    RefOr::T(Schema::Object($schema.build()))
                }
            }
            impl utoipa::ToSchema for $name {}
        };
    }

    const IDENTIFIER: &str = "^[a-z][a-z0-9_]{0,63}$";
    schema!(
        PlanId,
        text("A plan of the catalog (`GET /v1/catalog`): the catalog is data, so any id it may hold.")
            .pattern(Some(IDENTIFIER))
    );
    schema!(ActionName, text("An action of the catalog (`GET /v1/catalog`).").pattern(Some(IDENTIFIER)));
    schema!(StoreId, text("A store's id.").format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))));
    schema!(
        TimeZoneName,
        text("An IANA time zone name (the tz database, e.g. `Europe/Paris`, `UTC`), in which the store's calendar periods are taken.")
            .examples(["Europe/Paris", "America/New_York", "UTC"])
    );
    schema!(Days, integer("A number of days.", 1, Days::MAX as u64));
    schema!(Amount, integer("How many units.", 1, Amount::MAX));
    schema!(
        Reason,
        text("Why, for the audit: 1 to 500 characters.").min_length(Some(1)).max_length(Some(Reason::MAX_LEN))
    );
    schema!(StoreName, text("A store's display name.").min_length(Some(1)).max_length(Some(200)));
    schema!(
        SubscriptionId,
        text("A payment provider's subscription id.").min_length(Some(1)).max_length(Some(SubscriptionId::MAX_CHARS))
    );
    schema!(
        ExternalId,
        text("A store's id in the system it was imported from.")
            .min_length(Some(1))
            .max_length(Some(ExternalId::MAX_CHARS))
    );
}
