//! Redaction of prompt and completion content, before anything is stored.
//!
//! Applied while converting OTLP to records, so content never reaches the WAL, memory
//! tables or segments. Span events are not stored at all, so content carried in events
//! (`gen_ai.content.prompt` and the like) never reaches storage either.
//!
//! A key is content when (ASCII case ignored, numeric index segments skipped):
//! - it is, or is below, one of the configured `keys` (the content attributes of
//!   OpenTelemetry GenAI, OpenLLMetry/Traceloop, OpenInference, LangChain/LangSmith through
//!   those, the Vercel AI SDK, MLflow and Langfuse by default); or
//! - one of its segments belongs to a content family: it is, or ends in `_` and, one of
//!   `messages`, `prompt(s)`, `completion(s)`, `input(s)`, `output(s)`, `content(s)`,
//!   `instructions`, or starts with `prompt` or `completion` (`prompt_template`); so
//!   `GEN_AI.PROMPT`, `myapp.user_prompt` and `agent.input` are content without a list;
//! - unless it counts: a segment `usage` or `token_count`, or a last segment ending in
//!   `tokens` or `_count` (`gen_ai.usage.prompt_tokens`, `llm.token_count.prompt`), or it is
//!   one of the configured `keep_keys`.
//!
//! What stays: span names (operation names such as `chat llama-70b`; the split reads them),
//! and status messages unless `status_messages` says otherwise.

use sha2::{Digest, Sha256};

use crate::config::{RedactionConfig, RedactionMode};

/// Decides, per attribute key, whether its value may be stored.
#[derive(Debug, Clone)]
pub struct Redactor {
    mode: RedactionMode,
    keys: Vec<String>,
    keep: Vec<String>,
    status_messages: RedactionMode,
}

/// What to do with one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store as is.
    Keep,
    /// Do not store.
    Drop,
    /// Store this digest instead of the value.
    Hash,
}

/// Segments that make a key content.
const FAMILIES: &[&str] = &[
    "messages",
    "prompt",
    "prompts",
    "completion",
    "completions",
    "input",
    "inputs",
    "output",
    "outputs",
    "content",
    "contents",
    "instructions",
];

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn starts(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// `key` is `prefix` or below it (`.`, `[` or `_` follows), case ignored.
fn under(key: &str, prefix: &str) -> bool {
    matches!(key.as_bytes().get(prefix.len()), None | Some(b'.') | Some(b'[') | Some(b'_')) && starts(key, prefix)
}

fn family(segment: &str) -> bool {
    if starts(segment, "prompt") || starts(segment, "completion") {
        return true;
    }
    FAMILIES.iter().any(|f| {
        eq(segment, f)
            || (segment.len() > f.len() && ends(segment, f) && segment.as_bytes()[segment.len() - f.len() - 1] == b'_')
    })
}

/// Whether the key names a count (token usage), which is never content.
fn counts(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    ends(last, "tokens")
        || ends(last, "_count")
        || key.split('.').any(|s| eq(s, "usage") || eq(s, "token_count") || eq(s, "token_counts"))
}

impl Redactor {
    /// A redactor for a config.
    pub fn new(cfg: &RedactionConfig) -> Self {
        Redactor {
            mode: cfg.mode,
            keys: cfg.keys.clone(),
            keep: cfg.keep_keys.clone(),
            status_messages: cfg.status_messages,
        }
    }

    /// Whether `key` holds content.
    pub fn is_content(&self, key: &str) -> bool {
        // Keys are short and this runs for every attribute of every span: no allocation.
        if self.keep.iter().any(|k| eq(key, k)) {
            return false;
        }
        if self.keys.iter().any(|k| under(key, k)) {
            return true;
        }
        let segments = key.split(['.', '[', ']']).filter(|s| !s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit()));
        let mut content = false;
        for s in segments {
            if family(s) {
                content = true;
                break;
            }
        }
        content && !counts(key)
    }

    /// The verdict for `key`.
    pub fn verdict(&self, key: &str) -> Verdict {
        if self.mode == RedactionMode::Keep || !self.is_content(key) {
            return Verdict::Keep;
        }
        match self.mode {
            RedactionMode::Hash => Verdict::Hash,
            _ => Verdict::Drop,
        }
    }

    /// The verdict for a span's status message (stored as `otel.status_description`).
    pub fn status_verdict(&self) -> Verdict {
        match self.status_messages {
            RedactionMode::Keep => Verdict::Keep,
            RedactionMode::Hash => Verdict::Hash,
            RedactionMode::Drop => Verdict::Drop,
        }
    }
}

/// `sha256:` and the first 16 hex digits of the digest of `value`.
pub(crate) fn digest(value: &str) -> String {
    let d = Sha256::digest(value.as_bytes());
    format!("sha256:{}", hex::encode(&d[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_keys_match_themselves_and_below() {
        let r = Redactor::new(&RedactionConfig::default());
        for k in [
            "gen_ai.prompt",
            "gen_ai.prompt.0.content",
            "gen_ai.completion.0.role",
            "gen_ai.input.messages",
            "llm.input_messages.0.message.content",
        ] {
            assert_eq!(r.verdict(k), Verdict::Drop, "{k}");
        }
        for k in ["gen_ai.request.model", "gen_ai.usage.prompt_tokens", "input.values_count"] {
            assert_eq!(r.verdict(k), Verdict::Keep, "{k}");
        }
    }

    #[test]
    fn hash_and_keep_modes() {
        let mut cfg = RedactionConfig { mode: RedactionMode::Hash, ..Default::default() };
        assert_eq!(Redactor::new(&cfg).verdict("gen_ai.prompt"), Verdict::Hash);
        assert_eq!(digest("hello"), digest("hello"));
        assert_ne!(digest("hello"), digest("hello!"));
        assert!(digest("x").starts_with("sha256:") && digest("x").len() == 7 + 16);
        cfg.mode = RedactionMode::Keep;
        assert_eq!(Redactor::new(&cfg).verdict("gen_ai.prompt"), Verdict::Keep);
    }
}
