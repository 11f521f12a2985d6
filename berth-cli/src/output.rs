//! Everything the CLI shows: the console (stdout, stderr, stdin and whether they are
//! terminals, injectable for tests), hand-written aligned tables, JSON output, and the
//! formatting of timestamps and durations.
//!
//! Text that comes from the server (messages, log lines, names) is passed through
//! [`sanitize`] before it reaches a terminal, so a hostile string cannot move the cursor,
//! rewrite earlier lines or change the terminal's title.

use std::borrow::Cow;
use std::io::{self, BufRead, IsTerminal, Read, Write};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::args::OutputFormat;

/// The process's standard streams, or buffers in tests.
pub(crate) struct Console {
    format: OutputFormat,
    out: Box<dyn Write + Send>,
    err: Box<dyn Write + Send>,
    input: Box<dyn BufRead + Send>,
    stdin_is_terminal: bool,
    stderr_is_terminal: bool,
}

impl Console {
    pub(crate) fn from_process(format: OutputFormat) -> Self {
        let terminals =
            Terminals { stdin: io::stdin().is_terminal(), stderr: io::stderr().is_terminal() };
        Console::new(
            format,
            Box::new(io::stdout()),
            Box::new(io::stderr()),
            Box::new(io::BufReader::new(io::stdin())),
            terminals,
        )
    }

    pub(crate) fn new(
        format: OutputFormat,
        out: Box<dyn Write + Send>,
        err: Box<dyn Write + Send>,
        input: Box<dyn BufRead + Send>,
        terminals: Terminals,
    ) -> Self {
        Console {
            format,
            out,
            err,
            input,
            stdin_is_terminal: terminals.stdin,
            stderr_is_terminal: terminals.stderr,
        }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    pub(crate) fn stdin_is_terminal(&self) -> bool {
        self.stdin_is_terminal
    }

    pub(crate) fn stderr_is_terminal(&self) -> bool {
        self.stderr_is_terminal
    }

    /// Writes `text` and a newline to stdout.
    pub(crate) fn println(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out, "{text}")
    }

    /// Writes `text` to stdout as is (tables carry their own newlines).
    pub(crate) fn print(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }

    /// Writes `text` and a newline to stderr (progress, prompts, errors).
    pub(crate) fn eprintln(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.err, "{text}")
    }

    /// Writes to stderr without a newline and flushes (prompts, updating lines).
    pub(crate) fn eprint(&mut self, text: &str) -> io::Result<()> {
        self.err.write_all(text.as_bytes())?;
        self.err.flush()
    }

    /// Pretty JSON of an API value on stdout.
    pub(crate) fn print_json<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut self.out, value)?;
        writeln!(self.out)
    }

    /// One JSON value per line (for streams).
    pub(crate) fn print_json_line<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        writeln!(self.out)?;
        self.out.flush()
    }

    /// Reads one line from stdin, without its line ending; `None` at end of input.
    pub(crate) fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(trim_one_line_ending(&line).to_owned()))
    }

    /// Reads stdin to its end and removes one trailing line ending.
    pub(crate) fn read_all(&mut self) -> io::Result<String> {
        let mut all = String::new();
        self.input.read_to_string(&mut all)?;
        Ok(trim_one_line_ending(&all).to_owned())
    }
}

/// Which of the standard streams are terminals.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Terminals {
    pub(crate) stdin: bool,
    pub(crate) stderr: bool,
}

fn trim_one_line_ending(text: &str) -> &str {
    text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(text)
}

/// An aligned table with a header row. Cells are sanitized; the last column is not padded.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Table { header: header.to_vec(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|cell| sanitize(&cell, false).into_owned()).collect());
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate().take(columns) {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        let mut rendered = String::new();
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = row.get(index).map(String::as_str).unwrap_or("");
                if index + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let padding = width.saturating_sub(cell.chars().count()) + 3;
                    line.extend(std::iter::repeat_n(' ', padding));
                }
            }
            rendered.push_str(line.trim_end());
            rendered.push('\n');
        }
        rendered
    }
}

/// Key/value lines such as `application show`: keys aligned, values sanitized.
pub(crate) fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(key, _)| key.chars().count()).max().unwrap_or(0);
    let mut rendered = String::new();
    for (key, value) in fields {
        let key = format!("{key}:");
        rendered.push_str(&format!("{key:<w$} {}\n", sanitize(value, false), w = width + 1));
    }
    rendered
}

/// Removes terminal escape sequences and control characters from untrusted text.
/// Tabs survive when `keep_tabs` (log lines).
pub(crate) fn sanitize(text: &str, keep_tabs: bool) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    chars.next();
                    for next in chars.by_ref() {
                        if ('@'..='~').contains(&next) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    chars.next();
                    while let Some(next) = chars.next() {
                        if next == '\u{7}' {
                            break;
                        }
                        if next == '\u{1b}' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                _ => {
                    chars.next();
                }
            },
            '\t' if keep_tabs => clean.push('\t'),
            '\t' | '\n' => clean.push(' '),
            c if c.is_control() => {}
            c => clean.push(c),
        }
    }
    Cow::Owned(clean)
}

/// `2024-05-01T10:00:00.123Z` → `2024-05-01 10:00:00` (UTC); other text is shown as is.
pub(crate) fn format_timestamp(raw: &str) -> String {
    match OffsetDateTime::parse(raw, &Rfc3339) {
        Ok(at) => {
            let at = at.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            )
        }
        Err(_) => raw.to_owned(),
    }
}

pub(crate) fn parse_timestamp(raw: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(raw, &Rfc3339).ok()
}

/// Milliseconds from `start` to `end` (or to `now` when `end` is absent).
pub(crate) fn elapsed_ms(start: &str, end: Option<&str>, now: OffsetDateTime) -> Option<u64> {
    let start = parse_timestamp(start)?;
    let end = match end {
        Some(end) => parse_timestamp(end)?,
        None => now,
    };
    u64::try_from((end - start).whole_milliseconds()).ok()
}

/// `850ms`, `12.3s`, `2m05s`, `1h02m`.
pub(crate) fn format_duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{}s", ms / 1_000, (ms % 1_000) / 100)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// `512 B`, `3.4 KiB`, `1.2 MiB`, `2.0 GiB` (binary units, one decimal).
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The first 7 characters of a commit hash.
pub(crate) fn short_commit(commit: &str) -> String {
    commit.chars().take(7).collect()
}

pub(crate) fn or_dash(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn tables_align_columns_and_do_not_pad_the_last_one() {
        let mut table = Table::new(&["NAME", "STATUS", "MESSAGE"]);
        table.row(vec!["web".into(), "running".into(), String::new()]);
        table.row(vec!["a-longer-name".into(), "crashed".into(), "exited with code 1".into()]);
        expect![[r#"
            NAME            STATUS    MESSAGE
            web             running
            a-longer-name   crashed   exited with code 1
        "#]]
        .assert_eq(&table.render());
    }

    #[test]
    fn escape_sequences_from_the_server_never_reach_the_terminal() {
        assert_eq!(sanitize("\u{1b}[31mred\u{1b}[0m\tok", true), "red\tok");
        assert_eq!(sanitize("a\u{1b}]0;title\u{7}b\rc\nd", false), "abc d");
        assert_eq!(sanitize("plain", false), "plain");
    }

    #[test]
    fn timestamps_and_durations_are_short() {
        assert_eq!(format_timestamp("2024-05-01T10:00:00.123+02:00"), "2024-05-01 08:00:00");
        assert_eq!(format_timestamp("yesterday"), "yesterday");
        let formatted: Vec<String> =
            [0, 850, 12_345, 125_000, 3_725_000].into_iter().map(format_duration_ms).collect();
        assert_eq!(formatted, ["0ms", "850ms", "12.3s", "2m05s", "1h02m"]);
        assert_eq!(
            elapsed_ms(
                "2024-05-01T10:00:00Z",
                Some("2024-05-01T10:00:02.5Z"),
                OffsetDateTime::UNIX_EPOCH
            ),
            Some(2_500)
        );
    }

    #[test]
    fn sizes_are_short() {
        let formatted: Vec<String> = [0, 1023, 1024, 3_500, 1_258_291, 2 << 30, u64::MAX]
            .into_iter()
            .map(format_size)
            .collect();
        assert_eq!(
            formatted,
            ["0 B", "1023 B", "1.0 KiB", "3.4 KiB", "1.2 MiB", "2.0 GiB", "16777216.0 TiB"]
        );
    }

    #[test]
    fn fields_align_their_keys() {
        expect![[r#"
            name: web
            url:  http://web.localhost:8000
        "#]]
        .assert_eq(&render_fields(&[
            ("name", "web".into()),
            ("url", "http://web.localhost:8000".into()),
        ]));
    }

    #[test]
    fn stdin_loses_exactly_one_line_ending() {
        assert_eq!(trim_one_line_ending("token\n"), "token");
        assert_eq!(trim_one_line_ending("token\r\n"), "token");
        assert_eq!(trim_one_line_ending("a\n\n"), "a\n");
        assert_eq!(trim_one_line_ending("a"), "a");
    }
}
