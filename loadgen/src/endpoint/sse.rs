//! Server-sent events as OpenAI-compatible servers stream them: `data: …`
//! lines, events ended by a blank line, `data: [DONE]` at the end. Bytes
//! arrive in arbitrary pieces, so lines and even UTF-8 characters may be
//! split across reads.

/// Incremental SSE decoder: push bytes, get the `data` of each finished event.
#[derive(Debug, Default)]
pub(super) struct SseDecoder {
    buf: Vec<u8>,
    data: Option<String>,
}

impl SseDecoder {
    /// Adds bytes; returns the data of every event they complete.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            self.line(&line, &mut events);
            start = end + 1;
        }
        self.buf.drain(..start);
        events
    }

    /// The end of the stream: an event not yet ended by a blank line still counts.
    pub(super) fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        let mut events = Vec::new();
        if !rest.is_empty() {
            self.line(&String::from_utf8_lossy(&rest), &mut events);
        }
        events.extend(self.data.take());
        events.pop()
    }

    fn line(&mut self, line: &str, events: &mut Vec<String>) {
        if line.is_empty() {
            events.extend(self.data.take());
            return;
        }
        let Some(value) = line.strip_prefix("data:") else {
            // `event:`, `id:`, `retry:` and `: comments` carry nothing we measure.
            return;
        };
        let value = value.strip_prefix(' ').unwrap_or(value);
        match &mut self.data {
            Some(d) => {
                d.push('\n');
                d.push_str(value);
            }
            None => self.data = Some(value.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_still_parse() {
        let stream = "data: {\"a\":1}\n\n: keepalive\r\n\r\nevent: x\ndata: {\"b\":\"é\"}\n\ndata: [DONE]\n\n";
        let bytes = stream.as_bytes();
        for cut in 1..bytes.len() {
            let mut d = SseDecoder::default();
            let mut got = d.push(&bytes[..cut]);
            got.extend(d.push(&bytes[cut..]));
            got.extend(d.finish());
            assert_eq!(got, ["{\"a\":1}", "{\"b\":\"é\"}", "[DONE]"], "cut at {cut}");
        }
    }

    #[test]
    fn multi_line_data_and_missing_final_blank_line() {
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: a\ndata: b\n\ndata: c"), ["a\nb"]);
        assert_eq!(d.finish().as_deref(), Some("c"));
    }
}
