//! The open-loop schedule: every intended send time, prompt length and
//! output length is fixed by the seed before anything is sent, so a slow
//! endpoint cannot slow the load down (no coordinated omission) and two runs
//! with the same seed send the same requests at the same offsets.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use super::args::Arrival;
use crate::dist::TokenDist;

/// One request of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    /// 0, 1, 2, … in send order.
    pub index: u64,
    /// Intended send time, from the start of the run.
    pub at: Duration,
    /// Prompt length asked for, in (approximate) tokens.
    pub prompt_tokens: u32,
    /// `max_tokens` (and `min_tokens`) of the request.
    pub output_tokens: u32,
    /// Seed of this request's prompt text (see [`prompt`]).
    pub prompt_seed: u64,
}

/// The schedule as a lazy iterator: memory stays flat however long the run.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    arrival: Arrival,
    rps: f64,
    end: f64,
    gaps: ChaCha8Rng,
    tokens: ChaCha8Rng,
    prompt: TokenDist,
    output: TokenDist,
    next_at: f64,
    index: u64,
}

impl Schedule {
    /// Requests at `rps` (constant or Poisson) over `[0, duration)`.
    pub(crate) fn new(
        seed: u64,
        arrival: Arrival,
        rps: f64,
        duration: Duration,
        prompt: TokenDist,
        output: TokenDist,
    ) -> Self {
        let gaps = ChaCha8Rng::seed_from_u64(seed);
        let mut tokens = ChaCha8Rng::seed_from_u64(seed);
        tokens.set_stream(1);
        let mut s = Schedule {
            arrival,
            rps,
            end: duration.as_secs_f64(),
            gaps,
            tokens,
            prompt,
            output,
            next_at: 0.0,
            index: 0,
        };
        if arrival == Arrival::Poisson {
            s.next_at = s.gap();
        }
        s
    }

    fn gap(&mut self) -> f64 {
        match self.arrival {
            Arrival::Constant => 1.0 / self.rps,
            Arrival::Poisson => Exp::new(self.rps).map(|d| d.sample(&mut self.gaps)).unwrap_or(1.0 / self.rps),
        }
    }
}

impl Iterator for Schedule {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        if self.next_at >= self.end {
            return None;
        }
        let at = Duration::from_secs_f64(self.next_at);
        let planned = Planned {
            index: self.index,
            at,
            prompt_tokens: self.prompt.sample(&mut self.tokens),
            output_tokens: self.output.sample(&mut self.tokens),
            prompt_seed: self.tokens.random(),
        };
        self.index += 1;
        self.next_at = match self.arrival {
            // Multiply rather than accumulate so constant spacing does not drift.
            Arrival::Constant => self.index as f64 / self.rps,
            Arrival::Poisson => self.next_at + self.gap(),
        };
        Some(planned)
    }
}

/// Short common English words, each one token (with its leading space) in
/// the usual BPE vocabularies, so a prompt of N words is about N tokens.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as", "with", "his",
    "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were",
    "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if",
    "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make",
    "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could",
    "people", "my", "than", "first", "water", "been", "call", "who", "its", "now", "find", "long", "down", "day",
    "did", "get", "come", "made", "may", "part",
];

/// A prompt of `tokens` words drawn from `seed`. Words are random from the
/// first one, so prompts share no prefix and the server's prefix cache does
/// not make the load lighter than it looks.
pub(crate) fn prompt(seed: u64, tokens: u32) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut s = String::with_capacity(tokens as usize * 5);
    for i in 0..tokens {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    s
}
