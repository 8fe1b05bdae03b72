//! The PostgreSQL servers a database URL names, read as libpq reads them.
//!
//! sqlx connects to one host; a failover setup hands out a list (pg_auto_failover's
//! `postgres://node1:5432,node2:5432/db?target_session_attrs=read-write`, or the key-value form
//! `host=node1,node2 port=5432 dbname=db target_session_attrs=read-write`). This module turns
//! either into one sqlx option set per host, in order; [`crate::primary`] then keeps the
//! connections on whichever of them is the primary. Forms libpq accepts that the ledger cannot
//! honour are refused with the reason, never ignored: a URL that silently meant something else
//! would send writes to the wrong server.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::StoreError;

/// One server of the list: how to connect, and how to name it in logs (no credentials).
#[derive(Debug, Clone)]
pub struct Server {
    pub options: PgConnectOptions,
    pub address: String,
}

/// Whether `url` is PostgreSQL's key-value connection string (`host=... dbname=...`).
pub fn is_key_value(url: &str) -> bool {
    !url.contains("://") && url.split_whitespace().next().is_some_and(|word| word.contains('='))
}

/// The servers `url` names, in the order to try them. A single-host URL with nothing of the
/// list's syntax is handed to sqlx as it is.
pub fn parse(url: &str) -> Result<Vec<Server>, StoreError> {
    if is_key_value(url) {
        return parse_key_value(url);
    }
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| StoreError::UnsupportedUrl(redacted(url)))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, query),
        None => (tail, ""),
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "target_session_attrs" => target_session_attrs(value)?,
            "load_balance_hosts" => load_balance_hosts(value)?,
            "host" | "hostaddr" | "port" if value.contains(',') || value.contains("%2C") || value.contains("%2c") => {
                return Err(bad(format!(
                    "a list in the `{key}` parameter is not supported; list the hosts before the path \
                     (postgres://h1:5432,h2:5432/db)"
                )))
            }
            _ => kept.push(pair),
        }
    }
    let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let mut servers = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() && hosts.contains(',') {
            return Err(bad("an empty host in the list".into()));
        }
        let one = format!("postgres://{userinfo}{host}{path}{query}");
        let options = PgConnectOptions::from_str(&one).map_err(|e| bad(format!("host {host:?}: {e}")))?;
        servers.push(Server { address: address(&options), options });
    }
    Ok(servers)
}

/// The key-value form: `key=value` words, a value quoted with `'` when it holds spaces.
fn parse_key_value(text: &str) -> Result<Vec<Server>, StoreError> {
    let mut base = PgConnectOptions::new();
    let (mut hosts, mut ports) = (vec![String::new()], vec![String::new()]);
    for (key, value) in key_value_pairs(text)? {
        base = match key.as_str() {
            "host" => {
                hosts = value.split(',').map(str::to_owned).collect();
                base
            }
            "port" => {
                ports = value.split(',').map(str::to_owned).collect();
                base
            }
            "dbname" => base.database(&value),
            "user" => base.username(&value),
            "password" => base.password(&value),
            "application_name" => base.application_name(&value),
            "sslmode" => base.ssl_mode(value.parse().map_err(|e| bad(format!("sslmode: {e}")))?),
            "sslrootcert" => base.ssl_root_cert(value.as_str()),
            "sslcert" => base.ssl_client_cert(value.as_str()),
            "sslkey" => base.ssl_client_key(value.as_str()),
            "options" => base.options(options_pairs(&value)?),
            "target_session_attrs" => {
                target_session_attrs(&value)?;
                base
            }
            "load_balance_hosts" => {
                load_balance_hosts(&value)?;
                base
            }
            other => {
                return Err(bad(format!(
                    "the key `{other}` is not supported; use host, port, dbname, user, password, sslmode, \
                     sslrootcert, sslcert, sslkey, application_name, options, target_session_attrs"
                )))
            }
        };
    }
    // libpq: one port for every host, or one per host.
    if ports.len() != 1 && ports.len() != hosts.len() {
        return Err(bad(format!("{} hosts but {} ports: give one port, or one per host", hosts.len(), ports.len())));
    }
    let mut servers = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let port = &ports[if ports.len() == 1 { 0 } else { i }];
        let mut options = base.clone();
        if !host.is_empty() {
            options = options.host(host);
        } else if hosts.len() > 1 {
            return Err(bad("an empty host in the list".into()));
        }
        if !port.is_empty() {
            options = options.port(port.parse().map_err(|_| bad(format!("port {port:?} is not a port")))?);
        }
        servers.push(Server { address: address(&options), options });
    }
    Ok(servers)
}

fn key_value_pairs(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(format!("`{key}` has no value (key=value)")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad(format!("the value of `{key}` has no closing quote"))),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// `options='-c a=b -c c=d'` as sqlx takes it.
fn options_pairs(value: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut pairs = Vec::new();
    let mut words = value.split_whitespace();
    while let Some(word) = words.next() {
        let setting = match word {
            "-c" => words.next().ok_or_else(|| bad("options: `-c` without a setting".into()))?,
            other => other.strip_prefix("-c").or_else(|| other.strip_prefix("--")).unwrap_or(other),
        };
        let (name, value) =
            setting.split_once('=').ok_or_else(|| bad(format!("options: {setting:?} is not name=value")))?;
        pairs.push((name.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// The ledger writes, so every connection must reach a primary, whatever else is asked.
fn target_session_attrs(value: &str) -> Result<(), StoreError> {
    match value {
        "read-write" | "primary" | "any" => Ok(()),
        "read-only" | "standby" | "prefer-standby" => Err(bad(format!(
            "target_session_attrs={value} asks for a standby, but planledger writes: use read-write (it connects \
             only to a primary in any case)"
        ))),
        other => Err(bad(format!("target_session_attrs={other} is not one of read-write, primary, any"))),
    }
}

fn load_balance_hosts(value: &str) -> Result<(), StoreError> {
    match value {
        "disable" => Ok(()),
        other => Err(bad(format!(
            "load_balance_hosts={other} is not supported: the hosts are tried in the order given, and only a \
             primary is kept"
        ))),
    }
}

fn address(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

fn bad(reason: String) -> StoreError {
    StoreError::UnsupportedServerList(reason)
}

/// A database URL with its password replaced, for messages: `user:***@` in a URL, `password=***`
/// in the key-value form.
pub fn redacted(url: &str) -> String {
    if is_key_value(url) {
        return match key_value_pairs(url) {
            Ok(pairs) => pairs
                .iter()
                .map(
                    |(key, value)| if key == "password" { "password=***".to_owned() } else { format!("{key}={value}") },
                )
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => "(a key-value connection string that does not parse)".to_owned(),
        };
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(url: &str) -> Vec<String> {
        parse(url).unwrap().into_iter().map(|s| s.address).collect()
    }

    #[test]
    fn a_url_lists_its_hosts_in_order_with_their_ports() {
        assert_eq!(
            addresses("postgres://u:p@h1:5432,h2:5433,[::1]:6000/db?target_session_attrs=read-write&sslmode=disable"),
            ["h1:5432", "h2:5433", "[::1]:6000"]
        );
        let servers = parse("postgresql://u:secret@h1,h2/ledger?application_name=x").unwrap();
        assert_eq!(servers[1].options.get_database(), Some("ledger"));
        assert_eq!(servers[1].options.get_username(), "u");
        assert_eq!(servers[1].options.get_port(), 5432, "a host without a port takes the default");
        assert_eq!(addresses("postgres://postgres@127.0.0.1:5432/postgres"), ["127.0.0.1:5432"]);
    }

    #[test]
    fn the_key_value_form_reads_as_libpq_reads_it() {
        let servers = parse(
            "host=h1,h2 port=5432,5433 dbname=ledger user=postgres password='a b\\'c' target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(servers.iter().map(|s| s.address.as_str()).collect::<Vec<_>>(), ["h1:5432", "h2:5433"]);
        assert_eq!(servers[0].options.get_database(), Some("ledger"));
        assert_eq!(addresses("host=h1,h2,h3 port=6000"), ["h1:6000", "h2:6000", "h3:6000"]);
        assert!(is_key_value("host=h1 dbname=x"));
        assert!(!is_key_value("postgres://h1/x?a=b"));
        assert!(!is_key_value("sqlite://x.db"));
    }

    #[test]
    fn forms_the_ledger_cannot_honour_are_refused_with_the_reason() {
        for (url, reason) in [
            ("postgres://h1,h2/db?target_session_attrs=standby", "asks for a standby"),
            ("postgres://h1,h2/db?target_session_attrs=prefer-standby", "asks for a standby"),
            ("postgres://h1/db?target_session_attrs=whatever", "not one of"),
            ("postgres://h1,h2/db?load_balance_hosts=random", "load_balance_hosts=random"),
            ("postgres:///db?host=h1,h2", "list the hosts before the path"),
            ("postgres://h1,,h2/db", "empty host"),
            ("host=h1,h2,h3 port=1,2", "3 hosts but 2 ports"),
            ("host=h1 hostaddr=10.0.0.1", "`hostaddr` is not supported"),
            ("host=h1 dbname", "has no value"),
            ("host=h1 password='open", "no closing quote"),
            ("host=h1 port=x", "not a port"),
        ] {
            let error = parse(url).unwrap_err().to_string();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redacted("postgres://app:s3cret@db:5432/ledger"), "postgres://app:***@db:5432/ledger");
        assert_eq!(redacted("postgres://app:s3cret@h1,h2/ledger"), "postgres://app:***@h1,h2/ledger");
        assert_eq!(redacted("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(redacted("sqlite://planledger.db"), "sqlite://planledger.db");
        assert_eq!(redacted("host=h1,h2 password='s3 cret' dbname=x"), "host=h1,h2 password=*** dbname=x");
        assert!(!redacted("host=h1 password='s3cret").contains("s3cret"));
    }

    #[test]
    fn a_refused_url_does_not_repeat_its_password() {
        let error = parse("mysql://user:hunter2@h/db").unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
        let error = parse("postgres://user:hunter2@h1,h2/db?target_session_attrs=standby").unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
