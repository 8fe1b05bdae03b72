//! Tenants moving in (contract §13): the rows of an import file, NDJSON or CSV, read into
//! `wire::ImportTenant` and then into the domain's `ImportedStore`, each with its line, so that a
//! bad row is reported where it is and never half-imported. The command line (`planledger
//! import`) reads files with it; the rules (`decide`) then check each tenant against the catalog.

use planledger_domain::command::{ImportSource, ImportedStatus, ImportedStore, ImportedUsage};
use planledger_domain::values::ExternalId;
use planledger_domain::{ActionName, InvalidValue, PlanId, StoreName, SubscriptionId, TimeZoneName};
use planledger_wire as wire;

/// The format of an import file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object (`wire::ImportTenant`) per line; blank lines are skipped.
    Ndjson,
    /// A header row naming the columns, then one tenant per row (see [`read_csv`]).
    Csv,
}

impl Format {
    /// `csv` for a name ending in `.csv`, NDJSON otherwise.
    pub fn of_file(name: &str) -> Format {
        if name.to_ascii_lowercase().ends_with(".csv") {
            Format::Csv
        } else {
            Format::Ndjson
        }
    }
}

/// One row of a file: its line, and the tenant or why it is not one.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: u64,
    pub tenant: Result<ImportedStore, String>,
}

/// The SHA-256 of a file's text, in hex: an imported tenant's provenance names it.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `text` (a file named `name` whose SHA-256 is `sha256`) as `format`.
pub fn read(text: &str, format: Format, name: &str, sha256: &str) -> Vec<Row> {
    let source = |line: u64| ImportSource { name: name.to_owned(), sha256: Some(sha256.to_owned()), line: Some(line) };
    let rows = match format {
        Format::Ndjson => read_ndjson(text),
        Format::Csv => read_csv(text),
    };
    rows.into_iter()
        .map(|(line, row)| Row {
            line,
            tenant: row.and_then(|row| tenant(row, source(line)).map_err(|e| e.to_string())),
        })
        .collect()
}

fn read_ndjson(text: &str) -> Vec<(u64, Result<wire::ImportTenant, String>)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| (index as u64 + 1, serde_json::from_str(line).map_err(|e| e.to_string())))
        .collect()
}

/// CSV with a header row. The columns are the NDJSON fields (`externalId`, `name`, `timeZone`,
/// `planId`, `status`, `trialEndsAt`, `graceEndsAt`, `maintenanceEndsAt`, `trialUsed`,
/// `subscriptionId`, `customerId`, `billingAnchor`), and per action `used:ACTION` and
/// `since:ACTION`. An empty cell is an absent field; an unknown column is an error of the
/// header, reported on line 1.
fn read_csv(text: &str) -> Vec<(u64, Result<wire::ImportTenant, String>)> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let header = match reader.headers() {
        Ok(header) => header.clone(),
        Err(error) => return vec![(1, Err(format!("the header row: {error}")))],
    };
    const FIELDS: [&str; 12] = [
        "externalId",
        "name",
        "timeZone",
        "planId",
        "status",
        "trialEndsAt",
        "graceEndsAt",
        "maintenanceEndsAt",
        "trialUsed",
        "subscriptionId",
        "customerId",
        "billingAnchor",
    ];
    if let Some(unknown) = header
        .iter()
        .find(|column| !FIELDS.contains(column) && !column.starts_with("used:") && !column.starts_with("since:"))
    {
        return vec![(1, Err(format!("the header row: unknown column {unknown:?}")))];
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                rows.push((line, Err(error.to_string())));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        rows.push((line, csv_row(&header, &record)));
    }
    rows
}

/// One CSV row as the NDJSON object it stands for.
fn csv_row(header: &csv::StringRecord, record: &csv::StringRecord) -> Result<wire::ImportTenant, String> {
    let mut object = serde_json::Map::new();
    let mut usage: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>> = Default::default();
    for (column, cell) in header.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        if let Some(action) = column.strip_prefix("used:") {
            let used: u64 = cell.parse().map_err(|_| format!("{column}: must be a whole number, not {cell:?}"))?;
            usage.entry(action.to_owned()).or_default().insert("used".into(), used.into());
        } else if let Some(action) = column.strip_prefix("since:") {
            usage.entry(action.to_owned()).or_default().insert("since".into(), cell.into());
        } else if column == "trialUsed" {
            let used = match cell {
                "true" => true,
                "false" => false,
                _ => return Err(format!("trialUsed: must be true or false, not {cell:?}")),
            };
            object.insert(column.into(), used.into());
        } else {
            object.insert(column.into(), cell.into());
        }
    }
    let mut entries = Vec::new();
    for (action, mut entry) in usage {
        if !entry.contains_key("used") {
            return Err(format!("since:{action} is given without used:{action}"));
        }
        entry.insert("action".into(), action.into());
        entries.push(serde_json::Value::Object(entry));
    }
    if !entries.is_empty() {
        object.insert("usage".into(), entries.into());
    }
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| e.to_string())
}

/// The tenant a row stands for, every value parsed (the rules check it against the catalog).
pub fn tenant(row: wire::ImportTenant, source: ImportSource) -> Result<ImportedStore, InvalidValue> {
    let usage = row
        .usage
        .into_iter()
        .map(|u| Ok(ImportedUsage { action: ActionName::parse(&u.action)?, used: u.used, since: u.since }))
        .collect::<Result<Vec<_>, InvalidValue>>()?;
    let status = ImportedStatus::parse(&row.status)?;
    Ok(ImportedStore {
        external_id: ExternalId::parse(&row.external_id)?,
        name: row.name.as_deref().map(StoreName::parse).transpose()?,
        time_zone: row.time_zone.as_deref().map(TimeZoneName::parse).transpose()?.unwrap_or_default(),
        plan_id: row.plan_id.as_deref().map(PlanId::parse).transpose()?,
        status,
        trial_ends_at: row.trial_ends_at,
        grace_ends_at: row.grace_ends_at,
        maintenance_ends_at: row.maintenance_ends_at,
        trial_used: row.trial_used.unwrap_or(false),
        subscription_id: row.subscription_id.as_deref().map(SubscriptionId::parse).transpose()?,
        customer_id: row.customer_id.as_deref().map(ExternalId::parse).transpose()?,
        billing_anchor: row.billing_anchor,
        usage,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_and_csv_read_the_same_tenant() {
        let ndjson = r#"{"externalId":"clx0k2m1q0000abcd","name":"Corner Shop","timeZone":"Europe/Paris","status":"trialing","trialEndsAt":"2026-12-12T09:00:00Z","usage":[{"action":"create_article","used":40,"since":"2026-11-30T23:00:00Z"}]}"#;
        let csv = "externalId,name,timeZone,status,trialEndsAt,used:create_article,since:create_article\n\
                   clx0k2m1q0000abcd,Corner Shop,Europe/Paris,trialing,2026-12-12T09:00:00Z,40,2026-11-30T23:00:00Z\n";
        let from_ndjson = read(ndjson, Format::Ndjson, "t", "h");
        let from_csv = read(csv, Format::Csv, "t", "h");
        let tenant = |rows: &[Row]| {
            rows[0]
                .tenant
                .clone()
                .map(|t| ImportedStore { source: ImportSource { name: String::new(), sha256: None, line: None }, ..t })
        };
        assert_eq!(tenant(&from_ndjson), tenant(&from_csv));
        assert_eq!((from_ndjson[0].line, from_csv[0].line), (1, 2), "lines as the file numbers them");
        let imported = tenant(&from_csv).unwrap();
        assert_eq!((imported.status, imported.usage[0].used), (ImportedStatus::Trialing, 40));
    }

    #[test]
    fn a_bad_row_is_reported_on_its_line_and_the_others_are_read() {
        let text = "{\"externalId\":\"a\",\"status\":\"active\"}\n\n{\"externalId\":\"\",\"status\":\"active\"}\n{\"externalId\":\"c\",\"status\":\"sleeping\"}\n{not json\n";
        let rows = read(text, Format::Ndjson, "t", "h");
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3, 4, 5]);
        assert!(rows[0].tenant.is_ok());
        assert!(rows[1].tenant.as_ref().unwrap_err().contains("externalId"), "{:?}", rows[1]);
        assert!(rows[2].tenant.as_ref().unwrap_err().contains("status"), "{:?}", rows[2]);
        assert!(rows[3].tenant.is_err());
        let csv = read("externalId,status,colour\na,active,red\n", Format::Csv, "t", "h");
        assert_eq!(csv[0].line, 1);
        assert!(csv[0].tenant.as_ref().unwrap_err().contains("colour"));
    }
}
