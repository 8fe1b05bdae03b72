//! The group commit: the appends of many streams, the keys they claim and the rows they write,
//! committed together, each stream still checked on its own version; and, when the commit's
//! outcome is lost with its connection, the probe that finds out what is there.
//!
//! On PostgreSQL a group is one statement on a connection of its own, where it commits whole or
//! not at all: the append, the claims (a guard that vetoes streams whose key is taken, and an
//! insert for the streams written or checked) and the rows (for the streams appended to), as
//! riders of the append. If the server refuses that statement and the log shows that nothing
//! was written, or on SQLite (one writer in this process, no round trips), the group is written
//! in a transaction: claims first (so a part with a taken key writes nothing), then the append,
//! then the claims of parts that were not written are withdrawn and the rows written.
//!
//! A commit whose answer is lost is never guessed: the log is asked, part by part, whether
//! what it wrote is there (its first event, or else its first claim, word for word).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::rows::{self, Table, Value};
use crate::sql::Statement;
use crate::{AnyEventLog, AnyTx, EventLog, PgEventLog, Rider, StoreError, StreamAppend, StreamAppendOutcome, Version};

/// Faults to inject into the commit path, for the simulator and the tests of what the command
/// path does when the database misbehaves (a commit that fails, a commit that succeeds but
/// reports an error, a lost connection while finding out which).
pub trait CommitFaults: Send + Sync + std::fmt::Debug {
    /// Fail the group before its commit is sent (nothing is written).
    fn fail_before_commit(&self) -> bool;
    /// Commit the group, then report an error as a dropped connection would: the outcome is
    /// unknown to the committer.
    fn fail_after_commit(&self) -> bool;
    /// Fail the look-up that finds out whether an unknown commit happened.
    fn fail_probe(&self) -> bool;
}

/// How a group is written.
#[derive(Debug, Clone, Default)]
pub struct GroupOptions {
    /// How long the probe of a lost commit keeps asking before the outcome counts as unknown.
    pub probe_for: Duration,
    pub faults: Option<Arc<dyn CommitFaults>>,
}

/// One stream's part of a group: its append (a part without events checks the version), the
/// keys it claims (rows of the group's claims table) and the rows it writes when it is appended.
#[derive(Debug)]
pub struct GroupPart<'a> {
    pub append: &'a StreamAppend,
    pub claims: Vec<Vec<Value>>,
    pub rows: Vec<Vec<Value>>,
}

/// The parts of a group and the tables their claims and rows go to.
#[derive(Debug)]
pub struct Group<'a> {
    pub claims: &'a Table,
    pub rows: &'a Table,
    pub parts: Vec<GroupPart<'a>>,
}

/// Why a part was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartFailure {
    /// Its stream is not at the expected version.
    Conflict,
    /// A key it claims, or an event's key, was taken before.
    Duplicate,
}

/// Why a whole group failed.
#[derive(Debug)]
pub enum GroupError {
    /// Nothing was written. `alone_may_succeed`: the failure may belong to one part (a
    /// constraint), so each part may be tried again on its own; not when the database is away.
    Definite { error: StoreError, alone_may_succeed: bool },
    /// The commit reported an error and the database could not say whether it happened.
    Unknown,
}

impl From<StoreError> for GroupError {
    fn from(error: StoreError) -> Self {
        let alone_may_succeed = !matches!(error, StoreError::Unavailable(_));
        GroupError::Definite { error, alone_may_succeed }
    }
}

/// Each part's new version (or checked version), or why it was not written.
pub type GroupOutcome = Vec<Result<Version, PartFailure>>;

impl AsRef<StreamAppend> for GroupPart<'_> {
    fn as_ref(&self) -> &StreamAppend {
        self.append
    }
}

fn refused_by_injection() -> GroupError {
    let error = StoreError::Database(sqlx::Error::Protocol("injected: the commit was refused".into()));
    GroupError::Definite { error, alone_may_succeed: true }
}

fn lost_by_injection() -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "injected: lost after commit",
    )))
}

fn result_of(outcome: &StreamAppendOutcome) -> Result<Version, PartFailure> {
    match outcome {
        StreamAppendOutcome::Appended { new_version, .. } => Ok(*new_version),
        StreamAppendOutcome::Checked { version } => Ok(*version),
        StreamAppendOutcome::Conflict => Err(PartFailure::Conflict),
        StreamAppendOutcome::Duplicate => Err(PartFailure::Duplicate),
    }
}

/// A group's claims in one order (by key), so that two groups sharing keys wait for each other
/// instead of deadlocking; with the index of the part each belongs to.
fn ordered_claims<'g>(group: &'g Group<'_>) -> Vec<(usize, &'g [Value])> {
    let positions = group.claims.key_positions();
    let mut claims: Vec<(usize, &[Value])> = group
        .parts
        .iter()
        .enumerate()
        .flat_map(|(i, part)| part.claims.iter().map(move |claim| (i, claim.as_slice())))
        .collect();
    claims.sort_by(|(_, a), (_, b)| {
        positions.iter().map(|p| a[*p].as_key()).cmp(positions.iter().map(|p| b[*p].as_key()))
    });
    claims
}

impl AnyEventLog {
    /// Writes a group; see the module's documentation.
    pub async fn write_group(&self, group: &Group<'_>, options: &GroupOptions) -> Result<GroupOutcome, GroupError> {
        // Refused before anything is sent; the parts may be written one by one.
        crate::types::one_part_per_stream(&group.parts)?;
        for part in &group.parts {
            group.claims.check(&part.claims.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
            group.rows.check(&part.rows.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
        }
        if let AnyEventLog::Postgres(pg) = self {
            if let Some(written) = self.write_group_at_once(pg, group, options).await {
                return written;
            }
        }
        self.write_group_in_transaction(group, options).await
    }

    /// The group in one statement; `None` if the server refused it and nothing was written.
    async fn write_group_at_once(
        &self,
        pg: &PgEventLog,
        group: &Group<'_>,
        options: &GroupOptions,
    ) -> Option<Result<GroupOutcome, GroupError>> {
        let faults = options.faults.as_deref();
        if faults.is_some_and(CommitFaults::fail_before_commit) {
            return Some(Err(refused_by_injection()));
        }
        let riders = riders_of(group);
        // Nothing is sent until the connection is in hand: a failure to get one writes nothing.
        let mut connection = match pg.acquire().await {
            Ok(connection) => connection,
            Err(error) => return Some(Err(error.into())),
        };
        let error = match PgEventLog::append_group(&mut connection, &group.parts, riders).await {
            Ok(_) if faults.is_some_and(CommitFaults::fail_after_commit) => lost_by_injection(),
            Ok(outcomes) => return Some(Ok(outcomes.iter().map(result_of).collect())),
            Err(error) => error,
        };
        drop(connection);
        // The statement may have committed before the error reached us (a connection lost
        // after the server committed). Ask the log, part by part, what is there; a part of a
        // committed statement that is not there was not written (a conflict, or a key taken
        // before), and its writer decides it again.
        let witnesses: Vec<Option<Witness<'_>>> = group.parts.iter().map(witness_of).collect();
        match self.look_up(group.claims, options, &witnesses).await {
            None => Some(Err(GroupError::Unknown)),
            Some(found) if found.contains(&true) => Some(Ok(group
                .parts
                .iter()
                .zip(found)
                .map(|(part, found)| {
                    if found {
                        Ok(part.append.expected + part.append.events.len() as Version)
                    } else {
                        Err(PartFailure::Conflict)
                    }
                })
                .collect())),
            // Nothing of the group is there, and the connection was lost: the server may still
            // be running the statement (waiting on a lock, say) and commit it later, so nothing
            // is decided again; the parts are answered as not written and each stream's next
            // writer finds the log's version if it moved.
            Some(_) if matches!(error, StoreError::Unavailable(_)) => {
                Some(Err(GroupError::Definite { error, alone_may_succeed: false }))
            }
            // Nothing is there and the server answered with an error, so it is done with the
            // statement: nothing was written, nor will be. The transaction settles what refused it.
            Some(_) => {
                tracing::debug!(%error, "the group's statement was refused; writing the group in a transaction");
                None
            }
        }
    }

    async fn write_group_in_transaction(
        &self,
        group: &Group<'_>,
        options: &GroupOptions,
    ) -> Result<GroupOutcome, GroupError> {
        let mut tx = self.begin().await?;
        // The group's keys are claimed first, all at once: a part with a key taken before
        // writes nothing and is answered `Duplicate`.
        let claims = ordered_claims(group);
        let taken = claim_in(&mut tx, group.claims, &claims).await?;
        let mut duplicate = vec![false; group.parts.len()];
        for ((part, _), taken) in claims.iter().zip(&taken) {
            duplicate[*part] |= *taken;
        }
        let writable: Vec<&StreamAppend> =
            group.parts.iter().zip(&duplicate).filter(|(_, d)| !**d).map(|(part, _)| part.append).collect();
        let mut appended = self.append_many_in(&mut tx, &writable).await?.into_iter();
        let outcomes: Vec<StreamAppendOutcome> = duplicate
            .iter()
            .map(|d| {
                if *d {
                    StreamAppendOutcome::Duplicate
                } else {
                    appended.next().unwrap_or(StreamAppendOutcome::Conflict)
                }
            })
            .collect();
        let results: GroupOutcome = outcomes.iter().map(result_of).collect();
        if results.iter().all(Result::is_err) {
            // Rolled back: the claims go with it.
            return Ok(results);
        }
        // Claimed for a part that is not written: its writer decides it again.
        let withdrawn: Vec<&[Value]> = claims
            .iter()
            .zip(&taken)
            .filter(|((part, _), taken)| results[*part].is_err() && !**taken)
            .map(|((_, claim), _)| *claim)
            .collect();
        withdraw_in(&mut tx, group.claims, &withdrawn).await?;
        let rows: Vec<&[Value]> = group
            .parts
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, StreamAppendOutcome::Appended { .. }))
            .flat_map(|(part, _)| part.rows.iter().map(Vec::as_slice))
            .collect();
        write_rows_in(&mut tx, group.rows, &rows).await?;
        let faults = options.faults.as_deref();
        if faults.is_some_and(CommitFaults::fail_before_commit) {
            // As a commit the server refused (a serialization failure, say): nothing written.
            drop(tx);
            return Err(refused_by_injection());
        }
        let commit_error = match self.commit(tx).await {
            Ok(()) if faults.is_some_and(CommitFaults::fail_after_commit) => Some(lost_by_injection()),
            Ok(()) => None,
            Err(error) => Some(error),
        };
        if let Some(error) = commit_error {
            // A transaction commits whole or not at all: one thing it wrote tells which.
            let witness =
                group.parts.iter().zip(&results).filter(|(_, r)| r.is_ok()).find_map(|(part, _)| witness_of(part));
            let Some(witness) = witness else { return Err(GroupError::Unknown) };
            match self.look_up(group.claims, options, &[Some(witness)]).await.map(|found| found.contains(&true)) {
                Some(true) => {}
                Some(false) => return Err(GroupError::Definite { error, alone_may_succeed: false }),
                None => return Err(GroupError::Unknown),
            }
        }
        Ok(results)
    }

    /// Whether each witness is in the database (`false` for none), asked again with a growing
    /// pause while the database cannot answer; `None` if it could not within `probe_for`.
    async fn look_up(
        &self,
        claims: &Table,
        options: &GroupOptions,
        witnesses: &[Option<Witness<'_>>],
    ) -> Option<Vec<bool>> {
        let deadline = Instant::now() + options.probe_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let seen = if options.faults.as_deref().is_some_and(CommitFaults::fail_probe) {
                None
            } else {
                let mut seen = Vec::with_capacity(witnesses.len());
                for witness in witnesses {
                    match witness {
                        None => seen.push(false),
                        Some(witness) => match self.is_there(claims, witness).await {
                            Some(found) => seen.push(found),
                            None => break,
                        },
                    }
                }
                (seen.len() == witnesses.len()).then_some(seen)
            };
            if seen.is_some() || Instant::now() + pause > deadline {
                return seen;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Whether `witness` is in the database; `None` if it could not be asked.
    async fn is_there(&self, claims: &Table, witness: &Witness<'_>) -> Option<bool> {
        match witness {
            Witness::Event(id) => self.read_event(*id).await.ok().map(|found| found.is_some()),
            // Every column it can be compared on: a request that reused a key with another
            // body may have been given, word for word, the answer the first request stored.
            Witness::Claim(claim) => self.row_exists(claims, claim).await.ok(),
        }
    }

    /// Whether `table` holds a row equal to `row` on its text, integer and flag columns.
    pub async fn row_exists(&self, table: &Table, row: &[Value]) -> Result<bool, StoreError> {
        let (condition, values) = rows::equality_on(table, row);
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE {condition})", table.name);
        let statement = values.into_iter().fold(Statement::new(sql), Statement::bind);
        match self.fetch_optional(&statement, &[crate::Kind::Bool]).await? {
            Some(found) => found.bool(0),
            None => Ok(false),
        }
    }
}

/// What shows that a part was written: its first event, or else its first claim.
enum Witness<'a> {
    Event(Uuid),
    Claim(&'a [Value]),
}

fn witness_of<'a>(part: &'a GroupPart<'_>) -> Option<Witness<'a>> {
    if let Some(event) = part.append.events.first() {
        return Some(Witness::Event(event.event_id));
    }
    part.claims.first().map(|claim| Witness::Claim(claim.as_slice()))
}

/// The group's claims and rows as riders of its append (see [`Rider`]): a guard vetoes every
/// part with a key claimed before (answered `Duplicate`); a follower inserts the claims of the
/// parts the statement writes or checks, and of no other, without `ON CONFLICT`, so that a key
/// claimed after the statement's snapshot (by another node) fails the whole statement, which
/// writes nothing, and the transaction then settles it; a follower writes the rows of the parts
/// appended to.
fn riders_of(group: &Group<'_>) -> Vec<Rider<'static>> {
    let mut riders = Vec::new();
    let claims = ordered_claims(group);
    if !claims.is_empty() {
        let table = group.claims;
        let key = table.key_columns();
        let positions = table.key_positions();
        let streams: Vec<String> =
            claims.iter().map(|(part, _)| group.parts[*part].append.stream.as_str().to_owned()).collect();
        let keys: Vec<Vec<Option<String>>> = positions
            .iter()
            .map(|p| claims.iter().map(|(_, claim)| claim[*p].as_key().map(str::to_owned)).collect())
            .collect();
        let arrays: Vec<String> = (0..key.len()).map(|i| format!("${}::text[]", i + 2)).collect();
        let matches: Vec<String> = key.iter().map(|k| format!("x.{k} = a.{k}")).collect();
        let guard = Rider {
            sql: format!(
                "claims_taken AS (
    SELECT DISTINCT a.stream_id FROM unnest($1::text[], {}) AS a(stream_id, {})
    CROSS JOIN LATERAL (SELECT 1 FROM {} x WHERE {} LIMIT 1) AS hit
)",
                arrays.join(", "),
                key.join(", "),
                table.name,
                matches.join(" AND ")
            ),
            vetoes: Some("claims_taken"),
            params: 1 + key.len(),
            bind: Box::new({
                let streams = streams.clone();
                move |mut query| {
                    query = query.bind(streams);
                    for column in keys {
                        query = query.bind(column);
                    }
                    query
                }
            }),
        };
        let rows: Vec<&[Value]> = claims.iter().map(|(_, claim)| *claim).collect();
        let columns = table.pg_columns(&rows);
        let claim = Rider {
            sql: format!("claims_written AS ({})", table.pg_insert(Some("kept"), false)),
            vetoes: None,
            params: table.columns.len() + 1,
            bind: Box::new(move |query| rows::bind_columns(query, columns).bind(streams)),
        };
        riders.push(guard);
        riders.push(claim);
    }
    let (streams, rows): (Vec<String>, Vec<&[Value]>) = group
        .parts
        .iter()
        .filter(|part| !part.append.events.is_empty())
        .flat_map(|part| part.rows.iter().map(|row| (part.append.stream.as_str().to_owned(), row.as_slice())))
        .unzip();
    if !rows.is_empty() {
        let columns = group.rows.pg_columns(&rows);
        riders.push(Rider {
            sql: format!("rows_written AS ({})", group.rows.pg_insert(Some("bumped"), false)),
            vetoes: None,
            params: group.rows.columns.len() + 1,
            bind: Box::new(move |query| rows::bind_columns(query, columns).bind(streams)),
        });
    }
    riders
}

/// Claims `claims` (with the part each belongs to) in `tx`; answers, claim by claim, whether it
/// was taken: claimed before, or by a transaction that committed while this one waited for it.
async fn claim_in(tx: &mut AnyTx, table: &Table, claims: &[(usize, &[Value])]) -> Result<Vec<bool>, StoreError> {
    let mut taken = vec![false; claims.len()];
    if claims.is_empty() {
        return Ok(taken);
    }
    let positions = table.key_positions();
    let key_of = |row: &[Value]| -> Vec<String> {
        positions.iter().map(|p| row[*p].as_key().unwrap_or_default().to_owned()).collect()
    };
    match tx {
        AnyTx::Postgres(tx) => {
            let rows: Vec<&[Value]> = claims.iter().map(|(_, claim)| *claim).collect();
            let sql = table.pg_insert(None, true);
            let returned = table.bind_pg(sqlx::query(&sql), &rows).fetch_all(&mut **tx).await?;
            let claimed: HashSet<Vec<String>> = returned
                .iter()
                .map(|row| (0..positions.len()).map(|i| sqlx::Row::try_get::<String, _>(row, i)).collect())
                .collect::<Result<_, _>>()?;
            for ((_, claim), taken) in claims.iter().zip(&mut taken) {
                *taken = !claimed.contains(&key_of(claim));
            }
        }
        // One writer in this process: a statement per claim costs no round trip to a server.
        AnyTx::Sqlite(tx) => {
            let sql = table.sqlite_insert();
            for ((_, claim), taken) in claims.iter().zip(&mut taken) {
                let query = claim.iter().fold(sqlx::query(&sql), rows::bind_sqlite_value);
                *taken = query.execute(&mut **tx).await?.rows_affected() == 0;
            }
        }
    }
    Ok(taken)
}

/// Deletes the rows of `table` with the keys of `rows`, in `tx`.
async fn withdraw_in(tx: &mut AnyTx, table: &Table, rows: &[&[Value]]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let key = table.key_columns();
    let positions = table.key_positions();
    match tx {
        AnyTx::Postgres(tx) => {
            let arrays: Vec<String> = (1..=key.len()).map(|i| format!("${i}::text[]")).collect();
            let sql = format!(
                "DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))",
                table.name,
                key.join(", "),
                arrays.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for p in &positions {
                query = query.bind(rows.iter().map(|row| row[*p].as_key().map(str::to_owned)).collect::<Vec<_>>());
            }
            query.execute(&mut **tx).await?;
        }
        AnyTx::Sqlite(tx) => {
            let terms: Vec<String> = key.iter().enumerate().map(|(i, k)| format!("{k} = ?{}", i + 1)).collect();
            let sql = format!("DELETE FROM {} WHERE {}", table.name, terms.join(" AND "));
            for row in rows {
                let mut query = sqlx::query(&sql);
                for p in &positions {
                    query = rows::bind_sqlite_value(query, &row[*p]);
                }
                query.execute(&mut **tx).await?;
            }
        }
    }
    Ok(())
}

/// The one statement that writes `rows` into `table` on PostgreSQL, on `executor`.
async fn pg_write_rows<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Postgres>,
    table: &Table,
    rows: &[&[Value]],
) -> Result<u64, StoreError> {
    let sql = table.pg_insert(None, false);
    Ok(table.bind_pg(sqlx::query(&sql), rows).execute(executor).await?.rows_affected())
}

/// Writes `rows` into `table` in `tx`: one statement on PostgreSQL, one per row on SQLite.
/// Answers how many rows were written (a claim whose key is taken, or an older row than the
/// one there, is not).
pub async fn write_rows_in(tx: &mut AnyTx, table: &Table, rows: &[&[Value]]) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    table.check(rows)?;
    Ok(match tx {
        AnyTx::Postgres(tx) => pg_write_rows(&mut **tx, table, rows).await?,
        AnyTx::Sqlite(tx) => {
            let sql = table.sqlite_insert();
            let mut written = 0;
            for row in rows {
                let query = row.iter().fold(sqlx::query(&sql), rows::bind_sqlite_value);
                written += query.execute(&mut **tx).await?.rows_affected();
            }
            written
        }
    })
}

impl AnyEventLog {
    /// Writes `rows` into `table`, all or none: one statement on PostgreSQL, a transaction on
    /// SQLite.
    pub async fn write_rows(&self, table: &Table, rows: &[&[Value]]) -> Result<u64, StoreError> {
        if let AnyEventLog::Postgres(pg) = self {
            if rows.is_empty() {
                return Ok(0);
            }
            table.check(rows)?;
            return pg_write_rows(pg.pool(), table, rows).await;
        }
        let mut tx = self.begin().await?;
        let written = write_rows_in(&mut tx, table, rows).await?;
        self.commit(tx).await?;
        Ok(written)
    }
}
