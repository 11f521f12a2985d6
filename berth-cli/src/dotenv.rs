//! The `.env` format of `berth env-var import`: `KEY=VALUE` lines, an optional `export `
//! prefix, blank lines and `#` comments, unquoted values (a ` #` starts a comment),
//! single-quoted values (literal) and double-quoted values (`\n`, `\t`, `\"`, `\\`
//! escapes); quoted values may span lines. A malformed file is refused as a whole with the
//! number of the offending line, so an import sets all variables or none.
//!
//! Variable names are checked with the server's rule (mirrored from `berth-domain`, which
//! the CLI does not depend on) so that a bad name is found before anything is set.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DotenvEntry {
    /// 1-based line where the entry starts.
    pub(crate) line: usize,
    pub(crate) key: String,
    pub(crate) value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub(crate) struct DotenvError {
    pub(crate) line: usize,
    pub(crate) reason: String,
}

/// Checks a variable name as the server does; the reason says what to fix.
pub(crate) fn check_variable_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 255
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if !valid {
        return Err(format!(
            "{name:?} is not a valid variable name: use letters, digits and '_', not starting with a digit (e.g. DATABASE_URL)"
        ));
    }
    if name.to_ascii_uppercase().starts_with("BERTH_") || name == "PORT" {
        return Err(format!(
            "{name:?} is reserved: names starting with BERTH_ and the name PORT are set by Berth itself"
        ));
    }
    Ok(())
}

pub(crate) fn parse_dotenv(text: &str) -> Result<Vec<DotenvEntry>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut entries: Vec<DotenvEntry> = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line_number = index + 1;
        let error = |reason: String| DotenvError { line: line_number, reason };
        let line = lines[index].trim_start();
        index += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let Some((key, rest)) = line.split_once('=') else {
            return Err(error("expected KEY=VALUE".into()));
        };
        let key = key.trim_end();
        check_variable_name(key).map_err(error)?;
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let (value, after) = quoted_value(quote, &rest[1..], &lines, &mut index)
                    .ok_or_else(|| error(format!("the {quote} quote is never closed")))?;
                let after = after.trim();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(error(format!("unexpected {after:?} after the closing quote")));
                }
                value
            }
            _ => unquoted_value(rest),
        };
        match entries.iter_mut().find(|entry| entry.key == key) {
            Some(entry) => {
                entry.value = value;
                entry.line = line_number;
            }
            None => entries.push(DotenvEntry { line: line_number, key: key.to_owned(), value }),
        }
    }
    Ok(entries)
}

/// Reads a quoted value starting at `first` (the text after the opening quote), taking
/// following lines while the quote is open. Returns the value and the text after the
/// closing quote, or `None` when the file ends first.
fn quoted_value<'a>(
    quote: char,
    first: &'a str,
    lines: &[&'a str],
    next_line: &mut usize,
) -> Option<(String, &'a str)> {
    let mut value = String::new();
    let mut current = first;
    loop {
        let mut chars = current.char_indices();
        while let Some((position, c)) = chars.next() {
            if c == quote {
                return Some((value, &current[position + 1..]));
            }
            if c == '\\' && quote == '"' {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, escaped @ ('"' | '\\' | '$'))) => value.push(escaped),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                }
                continue;
            }
            value.push(c);
        }
        current = lines.get(*next_line)?;
        *next_line += 1;
        value.push('\n');
    }
}

fn unquoted_value(rest: &str) -> String {
    let mut end = rest.len();
    let mut previous_is_space = true;
    for (position, c) in rest.char_indices() {
        if c == '#' && previous_is_space {
            end = position;
            break;
        }
        previous_is_space = c == ' ' || c == '\t';
    }
    rest[..end].trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(text: &str, expected: Expect) {
        let rendered = match parse_dotenv(text) {
            Ok(entries) => entries
                .iter()
                .map(|e| format!("{}: {}={:?}\n", e.line, e.key, e.value))
                .collect::<String>(),
            Err(error) => format!("error: {error}\n"),
        };
        expected.assert_eq(&rendered);
    }

    #[test]
    fn a_realistic_file() {
        check(
            "\u{feff}# database\n\
             DATABASE_URL=postgres://u:p@db:5432/app   # the main one\n\
             \n\
             export  API_KEY = abc#not-a-comment\n\
             EMPTY=\n\
             GREETING=\"hello\\n\\\"world\\\"\" # quoted\n\
             LITERAL='no $expansion \\n here'\n\
             PEM=\"-----BEGIN KEY-----\n\
             abc\n\
             -----END KEY-----\"\n\
             \tINDENTED=yes\r\n\
             API_KEY=second-wins\n",
            expect![[r#"
                2: DATABASE_URL="postgres://u:p@db:5432/app"
                12: API_KEY="second-wins"
                5: EMPTY=""
                6: GREETING="hello\n\"world\""
                7: LITERAL="no $expansion \\n here"
                8: PEM="-----BEGIN KEY-----\nabc\n-----END KEY-----"
                11: INDENTED="yes"
            "#]],
        );
    }

    #[test]
    fn malformed_lines_are_named() {
        check("A=1\nB 2\n", expect!["error: line 2: expected KEY=VALUE\n"]);
        check(
            "A=1\n\n9LIVES=cat\n",
            expect![[r#"
                error: line 3: "9LIVES" is not a valid variable name: use letters, digits and '_', not starting with a digit (e.g. DATABASE_URL)
            "#]],
        );
        check(
            "BERTH_PROJECT_NAME=x\n",
            expect![[r#"
                error: line 1: "BERTH_PROJECT_NAME" is reserved: names starting with BERTH_ and the name PORT are set by Berth itself
            "#]],
        );
        check(
            "A=\"open\nstill open\n",
            expect![[r#"
            error: line 1: the " quote is never closed
        "#]],
        );
        check(
            "A='x' trailing\n",
            expect![[r#"
            error: line 1: unexpected "trailing" after the closing quote
        "#]],
        );
        check(
            "export=1\n",
            expect![[r#"
            1: export="1"
        "#]],
        );
    }
}
