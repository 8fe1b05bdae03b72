//! The catalog: the versioned rule set of plans, actions and lifecycle durations.
//!
//! Parsed from TOML (`config/catalog.toml`). The parser refuses unknown keys, negative limits,
//! unknown periods, limits on unknown actions and missing plans, with a message that names the
//! file, the line and the field. The fingerprint is a hash of the normalized content, recorded
//! on every decision, so that a rule change is visible in the log.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::values::{ActionName, PlanId};

/// The plan an expired trial is downgraded to. Never chosen by a client.
pub const MAINTENANCE_PLAN: &str = "google_only";

/// What an action does, which decides how the access gates treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Only looks.
    Read,
    /// Changes what exists.
    Update,
    /// Creates something new.
    Growth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    Trial,
    Paid,
    Internal,
}

/// The length of a quota period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    /// ISO week, from Monday 00:00.
    Week,
    Month,
    Lifetime,
}

impl Period {
    pub fn as_str(&self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Lifetime => "lifetime",
        }
    }
}

/// Where a plan's months start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Calendar months, in the store's time zone.
    #[default]
    Calendar,
    /// Months counted from the day the plan started, as billing anchors do.
    Subscription,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub limit: u64,
    pub period: Period,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub id: PlanId,
    pub tier: String,
    pub kind: PlanKind,
    pub trial_eligible: bool,
    pub features: Vec<String>,
    pub limits: BTreeMap<ActionName, Limit>,
    pub anchor: Anchor,
}

impl Plan {
    pub fn limit_for(&self, action: &ActionName) -> Option<Limit> {
        self.limits.get(action).copied()
    }

    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    pub trial_days: i64,
    pub grace_days: i64,
    pub maintenance_days: i64,
}

/// A parsed, validated catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    plans: BTreeMap<PlanId, Plan>,
    actions: BTreeMap<ActionName, ActionKind>,
    /// `requires = "feature"` of an action: only a store whose plan lists the feature may do it.
    requires: BTreeMap<ActionName, String>,
    lifecycle: Lifecycle,
    default_trial_plan: PlanId,
    /// `[stripe] prices`: a Stripe price's lookup key or id, to the paid plan it sells.
    stripe_prices: BTreeMap<String, PlanId>,
    notifications: Notifications,
    fingerprint: String,
    /// The ledger's number of these rules (`catalog_versions`), 0 for rules that are not the
    /// ledger's (a file read on its own, a draft). Not part of the fingerprint: the same rules
    /// published twice are two versions with one fingerprint.
    version: i64,
}

/// `[notifications]`: how far ahead of a deadline the ledger warns, and at which shares of a
/// limited action's window it says so. What is sent when, not what a store may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notifications {
    /// `trial.ending_soon` this many days before the trial ends (at once if less remains).
    pub trial_ending_days: i64,
    /// `grace.ending_soon` this many days before the grace period ends.
    pub grace_ending_days: i64,
    /// `store.freeze_warning` this many days before a store in maintenance freezes, once each.
    pub freeze_warning_days: Vec<i64>,
    /// `quota.threshold` when a window's usage reaches these percentages of its limit.
    pub quota_threshold_percents: Vec<u64>,
    /// `grant.expiring_soon` this many days before a grant with something left expires.
    pub grant_expiring_days: i64,
}

impl Default for Notifications {
    fn default() -> Self {
        Self {
            trial_ending_days: 3,
            grace_ending_days: 1,
            freeze_warning_days: vec![7, 1],
            quota_threshold_percents: vec![80, 100],
            grant_expiring_days: 3,
        }
    }
}

/// Why a catalog file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CatalogError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}: {}", self.file, self.field, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.field, self.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    lifecycle: RawLifecycle,
    actions: BTreeMap<Spanned<String>, RawAction>,
    plans: BTreeMap<Spanned<String>, RawPlan>,
    #[serde(default)]
    stripe: Option<RawStripe>,
    #[serde(default)]
    notifications: Option<RawNotifications>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotifications {
    trial_ending_days: Option<Spanned<i64>>,
    grace_ending_days: Option<Spanned<i64>>,
    freeze_warning_days: Option<Spanned<Vec<i64>>>,
    quota_threshold_percents: Option<Spanned<Vec<i64>>>,
    grant_expiring_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStripe {
    #[serde(default)]
    prices: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    trial_days: Spanned<i64>,
    grace_days: Spanned<i64>,
    maintenance_days: Spanned<i64>,
    default_trial_plan: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    kind: Spanned<String>,
    requires: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    tier: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    trial_eligible: bool,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    limits: BTreeMap<Spanned<String>, RawLimit>,
    anchor: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    limit: Spanned<i64>,
    period: Spanned<String>,
}

/// The normalized content the fingerprint is taken over.
#[derive(Serialize)]
struct Normalized<'a> {
    plans: &'a BTreeMap<PlanId, Plan>,
    actions: &'a BTreeMap<ActionName, ActionKind>,
    /// Left out when empty, so a catalog that requires no feature keeps the fingerprint it had.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    requires: &'a BTreeMap<ActionName, String>,
    lifecycle: &'a Lifecycle,
    default_trial_plan: &'a PlanId,
    /// Left out when empty, so a catalog without `[stripe]` keeps the fingerprint it had.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    stripe_prices: &'a BTreeMap<String, PlanId>,
    /// Left out when they are the defaults, so a catalog without `[notifications]` keeps the
    /// fingerprint it had.
    #[serde(skip_serializing_if = "Notifications::is_default")]
    notifications: &'a Notifications,
}

struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Notifications {
    fn is_default(&self) -> bool {
        *self == Notifications::default()
    }
}

/// The longest lead time a warning may have: a year.
const MAX_LEAD_DAYS: i64 = 366;

impl Source<'_> {
    /// `[notifications]`, each field checked (lead times of 0 to 366 days, percentages of 1 to
    /// 100), defaults for the fields left out.
    fn notifications(&self, raw: Option<&RawNotifications>) -> Result<Notifications, CatalogError> {
        let mut notifications = Notifications::default();
        let Some(raw) = raw else {
            return Ok(notifications);
        };
        let days = |value: &Spanned<i64>, field: &str| {
            let days = *value.get_ref();
            if (0..=MAX_LEAD_DAYS).contains(&days) {
                Ok(days)
            } else {
                Err(self.error(
                    Some(value.span()),
                    field,
                    format!("{days} is not a lead time of 0 to {MAX_LEAD_DAYS} days"),
                ))
            }
        };
        if let Some(value) = &raw.trial_ending_days {
            notifications.trial_ending_days = days(value, "notifications.trial_ending_days")?;
        }
        if let Some(value) = &raw.grace_ending_days {
            notifications.grace_ending_days = days(value, "notifications.grace_ending_days")?;
        }
        if let Some(value) = &raw.grant_expiring_days {
            notifications.grant_expiring_days = days(value, "notifications.grant_expiring_days")?;
        }
        if let Some(list) = &raw.freeze_warning_days {
            let field = "notifications.freeze_warning_days";
            let mut leads = Vec::new();
            for lead in list.get_ref() {
                leads.push(days(&Spanned::new(list.span(), *lead), field)?);
            }
            leads.sort_unstable_by(|a, b| b.cmp(a));
            leads.dedup();
            notifications.freeze_warning_days = leads;
        }
        if let Some(list) = &raw.quota_threshold_percents {
            let field = "notifications.quota_threshold_percents";
            let mut percents = Vec::new();
            for percent in list.get_ref() {
                match u64::try_from(*percent) {
                    Ok(p @ 1..=100) => percents.push(p),
                    _ => {
                        return Err(self.error(
                            Some(list.span()),
                            field,
                            format!("{percent} is not a percentage of 1 to 100"),
                        ))
                    }
                }
            }
            percents.sort_unstable();
            percents.dedup();
            notifications.quota_threshold_percents = percents;
        }
        Ok(notifications)
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> CatalogError {
        CatalogError {
            file: self.file.to_owned(),
            line: span.map(|s| self.line_of(s.start)),
            field: field.into(),
            message: message.into(),
        }
    }

    fn enum_value<T: for<'de> Deserialize<'de>>(
        &self,
        value: &Spanned<String>,
        field: &str,
        allowed: &str,
    ) -> Result<T, CatalogError> {
        T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(value.get_ref())).map_err(
            |_| self.error(Some(value.span()), field, format!("{:?} is not one of {allowed}", value.get_ref())),
        )
    }

    fn identifier<T>(
        &self,
        value: &Spanned<String>,
        field: &str,
        parse: fn(&str) -> Result<T, crate::values::InvalidValue>,
    ) -> Result<T, CatalogError> {
        parse(value.get_ref())
            .map_err(|e| self.error(Some(value.span()), field, format!("{:?} {}", value.get_ref(), e.rule)))
    }

    fn days(&self, value: &Spanned<i64>, field: &str) -> Result<i64, CatalogError> {
        let days = *value.get_ref();
        if !(1..=crate::values::Days::MAX).contains(&days) {
            return Err(self.error(
                Some(value.span()),
                field,
                format!("{days} is not a number of days from 1 to 3650"),
            ));
        }
        Ok(days)
    }
}

impl Catalog {
    /// The catalog shipped in `config/catalog.toml`.
    pub fn builtin() -> Catalog {
        match Catalog::parse("config/catalog.toml", BUILTIN) {
            Ok(catalog) => catalog,
            // The built-in file is checked by a test; reaching this is a build defect.
            Err(e) => unreachable!("the built-in catalog is invalid: {e}"),
        }
    }

    /// Parses and validates a catalog; `file` names it in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Catalog, CatalogError> {
        let source = Source { file, text };
        let raw: RawCatalog = toml::from_str(text).map_err(|e| {
            let message = e.message().to_owned();
            let field = message
                .split('`')
                .nth(1)
                .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"))
                .unwrap_or("catalog")
                .to_owned();
            source.error(e.span(), field, message)
        })?;

        let lifecycle = Lifecycle {
            trial_days: source.days(&raw.lifecycle.trial_days, "lifecycle.trial_days")?,
            grace_days: source.days(&raw.lifecycle.grace_days, "lifecycle.grace_days")?,
            maintenance_days: source.days(&raw.lifecycle.maintenance_days, "lifecycle.maintenance_days")?,
        };

        let mut actions = BTreeMap::new();
        for (name, action) in &raw.actions {
            let field = format!("actions.{}", name.get_ref());
            let id = source.identifier(name, &field, ActionName::parse)?;
            let kind = source.enum_value(&action.kind, &format!("{field}.kind"), "\"growth\", \"update\", \"read\"")?;
            actions.insert(id, kind);
        }

        let mut plans = BTreeMap::new();
        for (name, plan) in &raw.plans {
            let field = format!("plans.{}", name.get_ref());
            let id = source.identifier(name, &field, PlanId::parse)?;
            let kind = source.enum_value(&plan.kind, &format!("{field}.kind"), "\"trial\", \"paid\", \"internal\"")?;
            let anchor = match &plan.anchor {
                Some(anchor) => {
                    source.enum_value(anchor, &format!("{field}.anchor"), "\"calendar\", \"subscription\"")?
                }
                None => Anchor::Calendar,
            };
            let mut limits = BTreeMap::new();
            for (action, limit) in &plan.limits {
                let limit_field = format!("{field}.limits.{}", action.get_ref());
                let action_id = source.identifier(action, &limit_field, ActionName::parse)?;
                if !actions.contains_key(&action_id) {
                    return Err(source.error(Some(action.span()), limit_field, "is not an action of [actions]"));
                }
                let amount = *limit.limit.get_ref();
                let amount = u64::try_from(amount).map_err(|_| {
                    source.error(
                        Some(limit.limit.span()),
                        format!("{limit_field}.limit"),
                        format!("{amount} is negative: a limit is 0 or more"),
                    )
                })?;
                let period = source.enum_value(
                    &limit.period,
                    &format!("{limit_field}.period"),
                    "\"day\", \"week\", \"month\", \"lifetime\"",
                )?;
                limits.insert(action_id, Limit { limit: amount, period });
            }
            if plan.tier.get_ref().trim().is_empty() {
                return Err(source.error(Some(plan.tier.span()), format!("{field}.tier"), "must not be empty"));
            }
            plans.insert(
                id.clone(),
                Plan {
                    id,
                    tier: plan.tier.get_ref().clone(),
                    kind,
                    trial_eligible: plan.trial_eligible,
                    features: plan.features.clone(),
                    limits,
                    anchor,
                },
            );
        }

        let maintenance = PlanId::parse(MAINTENANCE_PLAN).map_err(|e| source.error(None, "plans", e.rule))?;
        match plans.get(&maintenance) {
            None => {
                return Err(source.error(
                    None,
                    format!("plans.{MAINTENANCE_PLAN}"),
                    "is missing: expired trials are downgraded to it",
                ))
            }
            Some(plan) if plan.kind != PlanKind::Internal => {
                return Err(source.error(None, format!("plans.{MAINTENANCE_PLAN}.kind"), "must be \"internal\""))
            }
            Some(_) => {}
        }
        let default_field = "lifecycle.default_trial_plan";
        let default_trial_plan = source.identifier(&raw.lifecycle.default_trial_plan, default_field, PlanId::parse)?;
        match plans.get(&default_trial_plan) {
            None => {
                return Err(source.error(
                    Some(raw.lifecycle.default_trial_plan.span()),
                    default_field,
                    format!("plan {default_trial_plan:?} is missing from [plans]"),
                ))
            }
            Some(plan) if !plan.trial_eligible || plan.kind == PlanKind::Internal => {
                return Err(source.error(
                    Some(raw.lifecycle.default_trial_plan.span()),
                    default_field,
                    format!("plan {default_trial_plan:?} is not trial-eligible"),
                ))
            }
            Some(_) => {}
        }

        let mut stripe_prices = BTreeMap::new();
        for (price, plan) in raw.stripe.iter().flat_map(|stripe| &stripe.prices) {
            let field = format!("stripe.prices.{}", price.get_ref());
            if price.get_ref().trim().is_empty() || price.get_ref().len() > 200 {
                return Err(source.error(
                    Some(price.span()),
                    field,
                    "a price's lookup key or id of 1 to 200 characters",
                ));
            }
            let id = source.identifier(plan, &field, PlanId::parse)?;
            match plans.get(&id) {
                Some(p) if p.kind == PlanKind::Paid => {}
                Some(_) => {
                    return Err(source.error(Some(plan.span()), field, format!("plan {id:?} is not a paid plan")));
                }
                None => {
                    return Err(source.error(Some(plan.span()), field, format!("plan {id:?} is missing from [plans]")));
                }
            }
            stripe_prices.insert(price.get_ref().clone(), id);
        }

        let notifications = source.notifications(raw.notifications.as_ref())?;

        // A feature no plan lists would refuse the action to every store: a typo, refused here.
        let mut requires = BTreeMap::new();
        for (name, action) in &raw.actions {
            let Some(feature) = &action.requires else { continue };
            let field = format!("actions.{}.requires", name.get_ref());
            if !plans.values().any(|plan: &Plan| plan.has_feature(feature.get_ref())) {
                return Err(source.error(
                    Some(feature.span()),
                    &field,
                    format!("no plan lists the feature {:?} in its features", feature.get_ref()),
                ));
            }
            let id = source.identifier(name, &format!("actions.{}", name.get_ref()), ActionName::parse)?;
            requires.insert(id, feature.get_ref().clone());
        }

        let fingerprint = fingerprint(&Normalized {
            plans: &plans,
            actions: &actions,
            requires: &requires,
            lifecycle: &lifecycle,
            default_trial_plan: &default_trial_plan,
            stripe_prices: &stripe_prices,
            notifications: &notifications,
        });
        Ok(Catalog {
            plans,
            actions,
            requires,
            lifecycle,
            default_trial_plan,
            stripe_prices,
            notifications,
            fingerprint,
            version: 0,
        })
    }

    /// These rules as the ledger's version `version`.
    pub fn at_version(mut self, version: i64) -> Catalog {
        self.version = version;
        self
    }

    /// The ledger's number of these rules; 0 if they are not the ledger's.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// A hash of the normalized content: formatting and comments do not change it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn plan(&self, id: &PlanId) -> Option<&Plan> {
        self.plans.get(id)
    }

    pub fn plans(&self) -> impl Iterator<Item = &Plan> {
        self.plans.values()
    }

    pub fn action_kind(&self, action: &ActionName) -> Option<ActionKind> {
        self.actions.get(action).copied()
    }

    pub fn actions(&self) -> impl Iterator<Item = (&ActionName, ActionKind)> {
        self.actions.iter().map(|(name, kind)| (name, *kind))
    }

    /// The feature a store's plan must list for the store to do `action`, if any.
    pub fn required_feature(&self, action: &ActionName) -> Option<&str> {
        self.requires.get(action).map(String::as_str)
    }

    /// Whether some plan lists `feature`.
    pub fn knows_feature(&self, feature: &str) -> bool {
        self.plans.values().any(|plan| plan.has_feature(feature))
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    pub fn default_trial_plan(&self) -> &PlanId {
        &self.default_trial_plan
    }

    /// The paid plan a Stripe price sells, by its lookup key or, failing that, its id
    /// (`[stripe] prices`).
    pub fn plan_for_stripe_price(&self, lookup_key: Option<&str>, price_id: &str) -> Option<&PlanId> {
        lookup_key.and_then(|key| self.stripe_prices.get(key)).or_else(|| self.stripe_prices.get(price_id))
    }

    /// When notifications are sent (`[notifications]`, defaults if absent).
    pub fn notifications(&self) -> &Notifications {
        &self.notifications
    }

    pub fn maintenance_plan(&self) -> PlanId {
        PlanId::parse(MAINTENANCE_PLAN).unwrap_or_else(|_| unreachable!("a valid identifier"))
    }
}

fn fingerprint(normalized: &Normalized<'_>) -> String {
    let json = serde_json::to_vec(normalized).unwrap_or_default();
    let digest = Sha256::digest(&json);
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The text of the catalog shipped in `config/catalog.toml`: what a node publishes as the
/// ledger's first version when it was given no file of its own.
pub const BUILTIN_SOURCE: &str = include_str!("../../../config/catalog.toml");
const BUILTIN: &str = BUILTIN_SOURCE;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Catalog, CatalogError> {
        Catalog::parse("test.toml", text)
    }

    fn with(replace: &str, by: &str) -> String {
        assert!(BUILTIN.contains(replace), "the built-in catalog contains {replace:?}");
        BUILTIN.replacen(replace, by, 1)
    }

    #[test]
    fn the_builtin_catalog_is_valid_and_realistic() {
        let catalog = Catalog::builtin();
        let plan = |id: &str| catalog.plan(&PlanId::parse(id).unwrap()).cloned().unwrap();
        assert_eq!(plan("free_trial").kind, PlanKind::Trial);
        assert!(plan("starter").trial_eligible && plan("professional").trial_eligible);
        assert_eq!(plan("enterprise").kind, PlanKind::Paid);
        assert!(plan("enterprise").limits.is_empty(), "enterprise is unmetered");
        assert_eq!(plan("google_only").kind, PlanKind::Internal);
        let article = ActionName::parse("create_article").unwrap();
        assert_eq!(plan("starter").limit_for(&article), Some(Limit { limit: 30, period: Period::Month }));
        assert_eq!(catalog.action_kind(&article), Some(ActionKind::Growth));
        assert_eq!(catalog.lifecycle(), Lifecycle { trial_days: 14, grace_days: 3, maintenance_days: 180 });
        assert!(catalog.fingerprint().starts_with("sha256:"));
    }

    #[test]
    fn the_fingerprint_ignores_formatting_but_not_rules() {
        let base = Catalog::builtin();
        let reformatted =
            parse(&format!("# a comment\n\n{}", BUILTIN.replace("trial_days = 14 ", "trial_days   =   14"))).unwrap();
        assert_eq!(reformatted.fingerprint(), base.fingerprint());
        let changed = parse(&with("create_article = { limit = 30,", "create_article = { limit = 31,")).unwrap();
        assert_ne!(changed.fingerprint(), base.fingerprint());
    }

    #[test]
    fn an_unknown_key_is_refused_with_file_line_and_field() {
        let err = parse(&with("trial_eligible = true\nfeatures = [\"storefront\", \"directory_listing\", \"articles\", \"products\", \"google_shopping\"]", "trial_eligible = true\nprice = 9\nfeatures = []")).unwrap_err();
        assert_eq!(err.field, "price");
        assert!(err.message.contains("unknown field"), "{err}");
        let line = BUILTIN.lines().position(|l| l.starts_with("[plans.starter]")).unwrap() + 5;
        assert_eq!(err.line, Some(line), "{err}");
        assert!(err.to_string().starts_with(&format!("test.toml:{line}: price: ")), "{err}");
    }

    #[test]
    fn notification_lead_times_are_checked_and_the_defaults_keep_the_fingerprint() {
        let without = BUILTIN.split("\n[notifications]").next().unwrap().to_owned();
        let base = parse(BUILTIN).unwrap();
        assert_eq!(parse(&without).unwrap().fingerprint(), base.fingerprint(), "the defaults change nothing");
        assert_eq!(base.notifications(), &Notifications::default());
        let changed = parse(&with("trial_ending_days = 3", "trial_ending_days = 5")).unwrap();
        assert_eq!(changed.notifications().trial_ending_days, 5);
        assert_ne!(changed.fingerprint(), base.fingerprint());
        let reordered = parse(&with("freeze_warning_days = [7, 1]", "freeze_warning_days = [1, 7, 7]")).unwrap();
        assert_eq!(reordered.notifications().freeze_warning_days, vec![7, 1]);
        let err = parse(&with("grace_ending_days = 1", "grace_ending_days = -1")).unwrap_err();
        assert!(err.to_string().contains("notifications.grace_ending_days"), "{err}");
        let err = parse(&with("quota_threshold_percents = [80, 100]", "quota_threshold_percents = [0]")).unwrap_err();
        assert!(err.to_string().contains("not a percentage"), "{err}");
        let err = parse(&with("grace_ending_days = 1", "grace_ending_dayz = 1")).unwrap_err();
        assert!(err.to_string().contains("grace_ending_dayz"), "{err}");
    }

    #[test]
    fn stripe_prices_name_paid_plans_and_leave_other_catalogs_fingerprints_alone() {
        let base = Catalog::builtin();
        let text = format!(
            "{BUILTIN}\n[stripe]\nprices = {{ pro_monthly = \"professional\", price_1PgafmB7WZ01zgkW6dKueIc5 = \"starter\" }}\n"
        );
        let with_stripe = parse(&text).unwrap();
        assert_ne!(with_stripe.fingerprint(), base.fingerprint(), "the mapping is a rule");
        let professional = PlanId::parse("professional").unwrap();
        assert_eq!(with_stripe.plan_for_stripe_price(Some("pro_monthly"), "price_x"), Some(&professional));
        assert_eq!(
            with_stripe.plan_for_stripe_price(None, "price_1PgafmB7WZ01zgkW6dKueIc5").map(ToString::to_string),
            Some("starter".into())
        );
        assert_eq!(with_stripe.plan_for_stripe_price(Some("unknown"), "price_y"), None);
        let empty = parse(&format!("{BUILTIN}\n[stripe]\nprices = {{}}\n")).unwrap();
        assert_eq!(empty.fingerprint(), base.fingerprint(), "no mapping, no change");
        let err = parse(&format!("{BUILTIN}\n[stripe]\nprices = {{ trial_price = \"free_trial\" }}\n")).unwrap_err();
        assert!(
            err.to_string().contains("stripe.prices.trial_price") && err.to_string().contains("not a paid plan"),
            "{err}"
        );
        let err = parse(&format!("{BUILTIN}\n[stripe]\nprices = {{ p = \"platinum\" }}\n")).unwrap_err();
        assert!(err.to_string().contains("missing from [plans]"), "{err}");
    }

    #[test]
    fn an_action_may_require_a_feature_a_plan_lists() {
        let builtin = parse(BUILTIN).unwrap();
        assert_eq!(builtin.required_feature(&ActionName::parse("view_analytics").unwrap()), Some("analytics"));
        assert_eq!(builtin.required_feature(&ActionName::parse("create_article").unwrap()), None);
        assert!(builtin.knows_feature("analytics") && !builtin.knows_feature("teleportation"));
        let err = parse(&BUILTIN.replace("requires = \"analytics\"", "requires = \"analytcs\"")).unwrap_err();
        assert_eq!(err.field, "actions.view_analytics.requires");
        assert!(err.message.contains("no plan lists the feature \"analytcs\""), "{err}");
        assert!(err.line.is_some());
        // A catalog that requires nothing keeps the fingerprint it had before `requires` existed.
        let without = parse(&BUILTIN.replace("requires = \"analytics\"\n", "")).unwrap();
        assert_ne!(without.fingerprint(), builtin.fingerprint(), "a requirement is a rule change");
        assert!(!serde_json::to_string(&Normalized {
            plans: &without.plans,
            actions: &without.actions,
            requires: &without.requires,
            lifecycle: &without.lifecycle,
            default_trial_plan: &without.default_trial_plan,
            stripe_prices: &without.stripe_prices,
            notifications: &without.notifications,
        })
        .unwrap()
        .contains("requires"));
    }

    #[test]
    fn a_negative_limit_is_refused() {
        let err = parse(&with("create_article = { limit = 30,", "create_article = { limit = -5,")).unwrap_err();
        assert_eq!(err.field, "plans.starter.limits.create_article.limit");
        assert!(err.message.contains("negative"), "{err}");
        assert!(err.line.is_some());
    }

    #[test]
    fn an_unknown_period_is_refused() {
        let err = parse(&with("period = \"day\" }", "period = \"fortnight\" }")).unwrap_err();
        assert!(err.field.ends_with(".period"), "{err}");
        assert!(err.message.contains("\"fortnight\" is not one of"), "{err}");
    }

    #[test]
    fn a_limit_on_an_unknown_action_is_refused() {
        let err = parse(&with("create_article = { limit = 30,", "create_articel = { limit = 30,")).unwrap_err();
        assert_eq!(err.field, "plans.starter.limits.create_articel");
        assert!(err.message.contains("not an action"), "{err}");
    }

    #[test]
    fn missing_plans_are_refused() {
        let err = parse(&with("default_trial_plan = \"free_trial\"", "default_trial_plan = \"gold\"")).unwrap_err();
        assert_eq!(err.field, "lifecycle.default_trial_plan");
        assert!(err.message.contains("missing"), "{err}");
        let without_maintenance = BUILTIN.split("[plans.google_only]").next().unwrap();
        let err = parse(without_maintenance).unwrap_err();
        assert_eq!(err.field, "plans.google_only");
        let err = parse("[lifecycle]\ntrial_days = 14\n").unwrap_err();
        assert_eq!(err.field, "grace_days", "{err}");
    }

    #[test]
    fn an_unknown_action_kind_is_refused() {
        let err = parse(&with("kind = \"growth\"", "kind = \"grow\"")).unwrap_err();
        assert_eq!(err.field, "actions.create_article.kind");
        assert_eq!(err.line, Some(BUILTIN.lines().position(|l| l == "kind = \"growth\"").unwrap() + 1));
    }
}
