//! Redaction of prompt and completion content (DESIGN.md section 8).
//!
//! Applied while converting OTLP to records, so content never reaches the WAL, memory
//! tables or segments. Span events are not stored at all, so content carried in events
//! (`gen_ai.content.prompt` and the like) never reaches storage either.

use sha2::{Digest, Sha256};

use crate::config::{RedactionConfig, RedactionMode};

/// Decides, per attribute key, whether its value may be stored.
#[derive(Debug, Clone)]
pub struct Redactor {
    mode: RedactionMode,
    keys: Vec<String>,
}

/// What to do with one attribute.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Store as is.
    Keep,
    /// Do not store.
    Drop,
    /// Store this digest instead of the value.
    Hash,
}

impl Redactor {
    /// A redactor for a config.
    pub fn new(cfg: &RedactionConfig) -> Self {
        Redactor { mode: cfg.mode, keys: cfg.keys.clone() }
    }

    /// Whether `key` holds content.
    pub fn is_content(&self, key: &str) -> bool {
        // The byte after the prefix first: it rules out almost every key without comparing
        // the prefix (this runs for every attribute of every span).
        self.keys.iter().any(|k| {
            matches!(key.as_bytes().get(k.len()), None | Some(b'.') | Some(b'[') | Some(b'_'))
                && key.starts_with(k.as_str())
        })
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
}

/// `sha256:` and the first 16 hex digits of the digest of `value`.
pub fn digest(value: &str) -> String {
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
        for k in ["gen_ai.request.model", "gen_ai.usage.prompt_tokens", "gen_ai.promptly", "input.values_count"] {
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
