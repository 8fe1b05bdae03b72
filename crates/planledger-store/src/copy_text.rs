//! PostgreSQL's `COPY ... FROM STDIN` text format, for bulk loads (a rebuild's rows, the
//! bench's generated logs): one line per row, fields separated by tabs.

/// Appends `value` as one field: backslash, tab, newline and carriage return escaped.
pub fn push_field(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Appends a field that may be NULL (`\N`).
pub fn push_nullable(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => push_field(out, value),
        None => out.push_str("\\N"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_escape_what_the_text_format_treats_as_structure() {
        let mut out = String::new();
        push_field(&mut out, "a\tb\nc\rd\\e \"f\"");
        out.push('\t');
        push_nullable(&mut out, None);
        assert_eq!(out, "a\\tb\\nc\\rd\\\\e \"f\"\t\\N");
    }
}
