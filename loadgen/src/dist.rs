//! Token-count distributions: `--prompt-tokens lognormal:512,0.6` and the same
//! strings in scenario files.
//!
//! Syntax (all counts are tokens, results are clamped to `1..=1_000_000`):
//! - `N` or `const:N`: always N
//! - `uniform:MIN,MAX`: uniform integers in `MIN..=MAX`
//! - `normal:MEAN,SD`
//! - `lognormal:MEDIAN,SIGMA`: the usual shape of prompt and output lengths
//! - `exp:MEAN`

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

const MAX_TOKENS: f64 = 1_000_000.0;

/// A distribution of token counts.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenDist {
    Const(u32),
    Uniform(u32, u32),
    Normal(f64, f64),
    LogNormal(f64, f64),
    Exp(f64),
}

impl TokenDist {
    /// Draws one token count (at least 1).
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        let x = match *self {
            TokenDist::Const(n) => f64::from(n),
            TokenDist::Uniform(lo, hi) => f64::from(rng.random_range(lo..=hi)),
            TokenDist::Normal(mean, sd) => Normal::new(mean, sd).map(|d| d.sample(rng)).unwrap_or(mean),
            TokenDist::LogNormal(median, sigma) => {
                LogNormal::new(median.ln(), sigma).map(|d| d.sample(rng)).unwrap_or(median)
            }
            TokenDist::Exp(mean) => Exp::new(1.0 / mean).map(|d| d.sample(rng)).unwrap_or(mean),
        };
        x.round().clamp(1.0, MAX_TOKENS) as u32
    }

    /// The mean of the distribution (before clamping), for capacity planning
    /// and the scenario listing.
    pub fn mean(&self) -> f64 {
        match *self {
            TokenDist::Const(n) => f64::from(n),
            TokenDist::Uniform(lo, hi) => (f64::from(lo) + f64::from(hi)) / 2.0,
            TokenDist::Normal(mean, _) => mean,
            TokenDist::LogNormal(median, sigma) => median * (sigma * sigma / 2.0).exp(),
            TokenDist::Exp(mean) => mean,
        }
    }

    /// The same distribution with every count multiplied by `factor` (a
    /// workload shift towards longer or shorter prompts).
    pub fn scaled(&self, factor: f64) -> TokenDist {
        let s = |n: u32| ((f64::from(n) * factor).round().max(1.0)) as u32;
        match *self {
            TokenDist::Const(n) => TokenDist::Const(s(n)),
            TokenDist::Uniform(lo, hi) => TokenDist::Uniform(s(lo), s(hi)),
            TokenDist::Normal(mean, sd) => TokenDist::Normal(mean * factor, sd * factor),
            TokenDist::LogNormal(median, sigma) => TokenDist::LogNormal(median * factor, sigma),
            TokenDist::Exp(mean) => TokenDist::Exp(mean * factor),
        }
    }
}

fn number(s: &str, what: &str, whole: &str) -> Result<f64, Error> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("token distribution {whole:?}: {what} {s:?} is not a number")))?;
    if !v.is_finite() || v < 0.0 {
        return Err(Error::Invalid(format!("token distribution {whole:?}: {what} must be a finite number >= 0")));
    }
    Ok(v)
}

fn count(v: f64, what: &str, whole: &str) -> Result<u32, Error> {
    if !(1.0..=MAX_TOKENS).contains(&v) || v.fract() != 0.0 {
        return Err(Error::Invalid(format!(
            "token distribution {whole:?}: {what} must be a whole number in 1..=1000000"
        )));
    }
    Ok(v as u32)
}

impl FromStr for TokenDist {
    type Err = Error;

    fn from_str(whole: &str) -> Result<Self, Error> {
        let (kind, args) = whole.split_once(':').unwrap_or(("const", whole));
        let args: Vec<&str> = args.split(',').collect();
        let want = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "token distribution {whole:?}: {kind} takes {n} argument(s) separated by ','"
                )))
            }
        };
        match kind.trim() {
            "const" => {
                want(1)?;
                Ok(TokenDist::Const(count(number(args[0], "N", whole)?, "N", whole)?))
            }
            "uniform" => {
                want(2)?;
                let lo = count(number(args[0], "MIN", whole)?, "MIN", whole)?;
                let hi = count(number(args[1], "MAX", whole)?, "MAX", whole)?;
                if lo > hi {
                    return Err(Error::Invalid(format!("token distribution {whole:?}: MIN > MAX")));
                }
                Ok(TokenDist::Uniform(lo, hi))
            }
            "normal" => {
                want(2)?;
                let mean = number(args[0], "MEAN", whole)?;
                if mean < 1.0 {
                    return Err(Error::Invalid(format!("token distribution {whole:?}: MEAN must be >= 1")));
                }
                Ok(TokenDist::Normal(mean, number(args[1], "SD", whole)?))
            }
            "lognormal" => {
                want(2)?;
                let median = number(args[0], "MEDIAN", whole)?;
                if median < 1.0 {
                    return Err(Error::Invalid(format!("token distribution {whole:?}: MEDIAN must be >= 1")));
                }
                let sigma = number(args[1], "SIGMA", whole)?;
                if sigma > 4.0 {
                    return Err(Error::Invalid(format!("token distribution {whole:?}: SIGMA must be <= 4")));
                }
                Ok(TokenDist::LogNormal(median, sigma))
            }
            "exp" => {
                want(1)?;
                let mean = number(args[0], "MEAN", whole)?;
                if mean < 1.0 {
                    return Err(Error::Invalid(format!("token distribution {whole:?}: MEAN must be >= 1")));
                }
                Ok(TokenDist::Exp(mean))
            }
            other => Err(Error::Invalid(format!(
                "token distribution {whole:?}: unknown kind {other:?} (use const, uniform, normal, lognormal or exp)"
            ))),
        }
    }
}

impl fmt::Display for TokenDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenDist::Const(n) => write!(f, "{n}"),
            TokenDist::Uniform(lo, hi) => write!(f, "uniform:{lo},{hi}"),
            TokenDist::Normal(m, s) => write!(f, "normal:{m},{s}"),
            TokenDist::LogNormal(m, s) => write!(f, "lognormal:{m},{s}"),
            TokenDist::Exp(m) => write!(f, "exp:{m}"),
        }
    }
}

impl Serialize for TokenDist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenDist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(TokenDist::Const(n.max(1))),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_every_kind_and_round_trips() {
        for s in ["512", "uniform:10,20", "normal:300,50", "lognormal:512,0.6", "exp:200"] {
            let d: TokenDist = s.parse().unwrap();
            assert_eq!(d.to_string().parse::<TokenDist>().unwrap(), d, "{s}");
        }
        assert_eq!("const:7".parse::<TokenDist>().unwrap(), TokenDist::Const(7));
    }

    #[test]
    fn bad_input_names_the_problem() {
        let e = "lognormal:abc,1".parse::<TokenDist>().unwrap_err().to_string();
        assert!(e.contains("MEDIAN \"abc\" is not a number"), "{e}");
        let e = "gamma:1,2".parse::<TokenDist>().unwrap_err().to_string();
        assert!(e.contains("unknown kind \"gamma\""), "{e}");
        let e = "uniform:9,3".parse::<TokenDist>().unwrap_err().to_string();
        assert!(e.contains("MIN > MAX"), "{e}");
        assert!("0".parse::<TokenDist>().is_err());
        assert!("uniform:1".parse::<TokenDist>().is_err());
    }

    #[test]
    fn samples_follow_the_distribution() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let d: TokenDist = "lognormal:500,0.5".parse().unwrap();
        let mut v: Vec<u32> = (0..20_000).map(|_| d.sample(&mut rng)).collect();
        v.sort_unstable();
        let median = f64::from(v[v.len() / 2]);
        assert!((median - 500.0).abs() < 15.0, "median {median}");
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!((mean - d.mean()).abs() / d.mean() < 0.03, "mean {mean} vs {}", d.mean());
        assert!(v[0] >= 1);
        let u: TokenDist = "uniform:3,5".parse().unwrap();
        assert!((0..1000).map(|_| u.sample(&mut rng)).all(|x| (3..=5).contains(&x)));
    }
}
