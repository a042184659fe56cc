//! The template filters: numbers and times written for people, the same way the CLI
//! writes them (`slo_analyzer::text`), and values made safe for URLs.

use std::collections::HashMap;

use tera::{Result, Tera, Value};

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn text_of(f: impl Fn(f64) -> String + Sync + Send + 'static) -> impl tera::Filter {
    move |v: &Value, _: &HashMap<String, Value>| -> Result<Value> {
        Ok(Value::String(num(v).map_or_else(|| "-".to_string(), &f)))
    }
}

/// Registers every filter on `t`.
pub(crate) fn register(t: &mut Tera) {
    t.register_filter("ms", text_of(slo_analyzer::text::ms));
    t.register_filter("pct", text_of(|v| format!("{:.1}%", v * 100.0)));
    t.register_filter("pct3", text_of(|v| format!("{:.3}%", v * 100.0)));
    t.register_filter("burn", text_of(|v| format!("{v:.2}x")));
    t.register_filter("p", text_of(slo_analyzer::text::p_text));
    t.register_filter("dur", text_of(|v| duration(v as i64)));
    t.register_filter(
        "around",
        text_of(|t_ms| {
            // The end of an hour-long view that puts this moment (ms) 30 minutes in.
            let end = (t_ms as i64 + 30 * 60_000) * 1_000_000;
            crate::params::encode(&slo_analyzer::text::rfc3339(end))
        }),
    );
    t.register_filter("hms", |v: &Value, _: &HashMap<String, Value>| -> Result<Value> {
        Ok(Value::String(v.as_str().and_then(|s| s.get(11..19)).unwrap_or("-").to_string()))
    });
    t.register_filter("enc", |v: &Value, _: &HashMap<String, Value>| -> Result<Value> {
        Ok(Value::String(crate::params::encode(v.as_str().unwrap_or(""))))
    });
    t.register_filter("truncate_id", |v: &Value, _: &HashMap<String, Value>| -> Result<Value> {
        let s = v.as_str().unwrap_or("");
        Ok(Value::String(if s.chars().count() > 14 {
            format!("{}…", s.chars().take(12).collect::<String>())
        } else {
            s.to_string()
        }))
    });
    t.register_filter("mclass", |v: &Value, _: &HashMap<String, Value>| -> Result<Value> {
        Ok(Value::String(crate::chart::marker_class(v.as_str().unwrap_or("")).to_string()))
    });
}

/// `3d`, `6h 20m`, `45 min`, `30 s` for a number of seconds.
pub(crate) fn duration(s: i64) -> String {
    if s >= 2 * 86_400 {
        format!("{:.1}d", s as f64 / 86_400.0)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(super::duration(30), "30 s");
        assert_eq!(super::duration(2700), "45 min");
        assert_eq!(super::duration(22_800), "6h 20m");
        assert_eq!(super::duration(28 * 86_400), "28.0d");
    }
}
