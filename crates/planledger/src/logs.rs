//! The process's logs: text (the default) or one JSON object per line
//! (`PLANLEDGER_LOG_FORMAT=json`), on stderr.
//!
//! Text logs carry values that came from outside (a rebuild's reason, a URL, a token's name), so
//! their fields are written by [`EscapedFields`]: a control character in a value (a newline, a
//! carriage return, an ANSI escape) is written escaped, so no value can end its line and forge
//! the next one, or recolour a terminal. tracing-subscriber escapes ANSI sequences itself, but not
//! line breaks.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// The fields of an event or span, as tracing-subscriber's default text format writes them
/// (`message` first and bare, then `name=value`), with every control character escaped; a value
/// that contains a space, a quote or `=` is quoted, so it cannot pass for further fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor { writer: &mut writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'a, 'writer> {
    writer: &'a mut Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_, '_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{separator}{}", escaped(value))
        } else if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
            // Debug quoting escapes quotes, backslashes and control characters.
            write!(self.writer, "{separator}{}={value:?}", field.name())
        } else {
            write!(self.writer, "{separator}{}={}", field.name(), escaped(value))
        };
    }
}

impl Visit for Visitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.write(field, &text);
    }
}

/// `text` with each control character (C0, DEL, C1) written as an escape.
fn escaped(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Where the logs go and in which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("PLANLEDGER_LOG_FORMAT must be text or json, not {other:?}")),
        }
    }
}

/// The subscriber the process logs with, writing to `writer` (stderr in the binary).
pub fn subscriber<W>(
    format: LogFormat,
    ansi: bool,
    filter: &str,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => Box::new(logs.json().with_current_span(false).finish()),
        LogFormat::Text => Box::new(logs.with_ansi(ansi).fmt_fields(EscapedFields).finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat, log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(format, false, "info", move || writer.clone());
        tracing::subscriber::with_default(subscriber, log);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    const FORGED: &str = "tidy up\n2026-12-03T00:00:00Z  INFO planledger: rebuild done actor=root\x1b[2J";

    #[test]
    fn a_value_from_outside_cannot_end_its_line_or_reach_the_terminal() {
        let text = logged(LogFormat::Text, || {
            let span = tracing::info_span!("request", route = "/admin");
            let _entered = span.enter();
            tracing::info!(reason = %FORGED, actor = "ops", "rebuild requested: {}", FORGED);
        });
        assert_eq!(text.lines().count(), 1, "one event, one line: {text:?}");
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.contains(r"tidy up\n2026-12-03T00:00:00Z"), "the message, escaped: {text:?}");
        assert!(text.contains(r#"reason="tidy up\n2026"#), "the field, quoted and escaped: {text:?}");
        assert!(text.contains("actor=ops"), "{text:?}");
        assert!(text.contains("request{route=/admin}"), "span fields as before: {text:?}");
    }

    #[test]
    fn the_json_format_writes_one_object_per_line() {
        let json = logged(LogFormat::Json, || tracing::warn!(reason = %FORGED, "rebuild requested"));
        assert_eq!(json.lines().count(), 1, "{json:?}");
        let line: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(line["fields"]["reason"], FORGED);
        assert!(LogFormat::parse("xml").is_err());
    }
}
