//! An incremental parser for `text/event-stream` (server-sent events), as the log streams
//! of the API send them. Bytes go in as they arrive, in chunks of any size; complete events
//! come out. Follows the WHATWG rules that matter here: `\n`, `\r\n` and `\r` line ends,
//! `:` comments, multi-line `data`, one optional space after the colon, events without
//! data are not dispatched, and an unterminated event at the end of the stream is dropped.

/// The longest line accepted, so a broken server cannot make the CLI grow without bound.
const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; `None` means the default `message` type.
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server sent an event-stream line longer than {MAX_LINE_BYTES} bytes")]
pub(crate) struct LineTooLong;

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    /// The previous chunk ended in `\r`: a `\n` that starts the next one belongs to it.
    skip_line_feed: bool,
}

impl SseParser {
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut events = Vec::new();
        for &byte in chunk {
            if std::mem::take(&mut self.skip_line_feed) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' => self.end_line(&mut events),
                b'\r' => {
                    self.end_line(&mut events);
                    self.skip_line_feed = true;
                }
                _ if self.line.len() >= MAX_LINE_BYTES => return Err(LineTooLong),
                _ => self.line.push(byte),
            }
        }
        Ok(events)
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                events.push(SseEvent { event, data });
            }
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn parse_in_chunks(stream: &str, chunk_size: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        stream.as_bytes().chunks(chunk_size).flat_map(|chunk| parser.push(chunk).unwrap()).collect()
    }

    #[test]
    fn events_survive_any_chunking() {
        let stream = ": keep-alive\n\ndata: {\"line\":\"a\"}\r\n\r\ndata:one\ndata: two\n\n\
                      event: end\rdata: {\"status\":\"succeeded\"}\r\rid: 7\nretry: 10\n\n\
                      data: unterminated";
        let whole = parse_in_chunks(stream, stream.len());
        for size in 1..8 {
            assert_eq!(parse_in_chunks(stream, size), whole, "chunk size {size}");
        }
        expect![[r#"
            [
                SseEvent {
                    event: None,
                    data: "{\"line\":\"a\"}",
                },
                SseEvent {
                    event: None,
                    data: "one\ntwo",
                },
                SseEvent {
                    event: Some(
                        "end",
                    ),
                    data: "{\"status\":\"succeeded\"}",
                },
            ]
        "#]]
        .assert_debug_eq(&whole);
    }

    #[test]
    fn multibyte_characters_split_across_chunks_are_kept() {
        assert_eq!(parse_in_chunks("data: héllo ✓\n\n", 1)[0].data, "héllo ✓");
    }
}
