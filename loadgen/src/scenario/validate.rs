//! Scenario validation: every problem is reported at once, each naming its
//! field (`models[1].hpa.min: ...`).

use super::spec::*;

fn dns1123(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 53
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Scenario {
    /// Parses and validates a scenario document.
    pub fn from_yaml(text: &str) -> Result<Scenario, String> {
        let s: Scenario = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Checks the whole document; the error lists every problem, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        let mut e = |field: String, msg: &str| errs.push(format!("{field}: {msg}"));
        if !dns1123(&self.name.replace('_', "-")) {
            e("name".into(), "must be a short lowercase name");
        }
        if self.duration.0.is_zero() || self.duration.0.as_secs() > 7 * 86400 {
            e("duration".into(), "must be between 1s and 7d");
        }
        if !dns1123(&self.namespace) {
            e("namespace".into(), "must be a DNS-1123 label");
        }
        if self.scrape_interval.0.as_millis() < 100 {
            e("scrape_interval".into(), "must be at least 100ms");
        }
        if self.pools.is_empty() {
            e("pools".into(), "at least one pool is needed");
        }
        for (i, p) in self.pools.iter().enumerate() {
            let f = |x: &str| format!("pools[{i}].{x}");
            if !dns1123(&p.name) {
                e(f("name"), "must be a DNS-1123 label");
            }
            if self.pools.iter().filter(|q| q.name == p.name).count() > 1 {
                e(f("name"), "duplicate pool name");
            }
            if p.nodes == 0 || p.nodes > 1000 {
                e(f("nodes"), "must be in 1..=1000");
            }
            if p.max_nodes.is_some_and(|m| m < p.nodes || m > 1000) {
                e(f("max_nodes"), "must be >= nodes and <= 1000");
            }
            if p.gpus_per_node == 0 || p.gpus_per_node > 16 {
                e(f("gpus_per_node"), "must be in 1..=16");
            }
            if p.sm_clock_mhz < 300 {
                e(f("sm_clock_mhz"), "must be at least 300");
            }
            if p.power_limit_w <= 50.0 {
                e(f("power_limit_w"), "must be above 50");
            }
        }
        if self.models.is_empty() {
            e("models".into(), "at least one model is needed");
        }
        if self.model(&self.service).is_none() {
            e("service".into(), "must name one of the models");
        }
        for (i, m) in self.models.iter().enumerate() {
            let f = |x: &str| format!("models[{i}].{x}");
            if !dns1123(&m.name) {
                e(f("name"), "must be a DNS-1123 label of at most 53 characters");
            }
            if self.models.iter().filter(|q| q.name == m.name).count() > 1 {
                e(f("name"), "duplicate model name");
            }
            if m.model.is_empty() {
                e(f("model"), "must not be empty");
            }
            if m.replicas > 1000 {
                e(f("replicas"), "must be at most 1000");
            }
            let pool = match &m.pool {
                Some(p) => self.pools.iter().find(|q| &q.name == p),
                None => self.pools.first(),
            };
            match pool {
                None if m.pool.is_some() => e(f("pool"), "no such pool"),
                Some(p) if m.gpus_per_pod == 0 || m.gpus_per_pod > p.gpus_per_node => {
                    e(f("gpus_per_pod"), "must be in 1..=the pool's gpus_per_node")
                }
                _ => {}
            }
            let s = &m.server;
            if s.max_num_seqs == 0 || s.kv_cache_tokens < 1000 || s.max_batched_tokens < 16 {
                e(f("server"), "max_num_seqs >= 1, kv_cache_tokens >= 1000 and max_batched_tokens >= 16 are required");
            }
            for (name, v) in [
                ("prefill_us_per_token", s.prefill_us_per_token),
                ("decode_step_ms", s.decode_step_ms),
                ("decode_us_per_seq", s.decode_us_per_seq),
                ("decode_ns_per_kv_token", s.decode_ns_per_kv_token),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    e(f(&format!("server.{name}")), "must be a number >= 0");
                }
            }
            if s.decode_step_ms <= 0.0 {
                e(f("server.decode_step_ms"), "must be > 0");
            }
            if let Some(h) = &m.hpa {
                if h.min == 0 || h.min > h.max {
                    e(f("hpa.min"), "must be >= 1 and <= max");
                }
                if !(h.target.is_finite() && h.target > 0.0) {
                    e(f("hpa.target"), "must be > 0");
                }
                if h.scale_down_pods_per_minute == Some(0) {
                    e(f("hpa.scale_down_pods_per_minute"), "must be >= 1 when set");
                }
            }
            let t = &m.traffic;
            if !(t.rate.is_finite() && (0.0..=1e6).contains(&t.rate)) {
                e(f("traffic.rate"), "must be in 0..=1000000 requests/s");
            }
            if let Some(d) = &t.diurnal
                && (!(0.0..=1.0).contains(&d.amplitude) || d.period.0.is_zero())
            {
                e(f("traffic.diurnal"), "amplitude must be in 0..=1 and period > 0");
            }
            if let Some(b) = &t.bursts
                && (b.every.0.is_zero() || b.length >= b.every || b.factor.is_nan() || b.factor <= 0.0)
            {
                e(f("traffic.bursts"), "needs every > length > 0 and factor > 0");
            }
            if t.api != "chat" && t.api != "completions" {
                e(f("traffic.api"), "must be chat or completions");
            }
        }
        // By name, not by listing them: a pool's node count is only reported above when
        // out of range, and a billion names would be built before the report (fuzzing
        // found it).
        let known_node = |n: &str| {
            self.pools.iter().any(|p| {
                n.strip_prefix(&format!("{}-", p.name))
                    .and_then(|k| k.parse::<u32>().ok())
                    .is_some_and(|k| k >= 1 && k <= p.max_nodes.unwrap_or(p.nodes).max(p.nodes))
            })
        };
        for (i, a) in self.actions.iter().enumerate() {
            let f = |x: &str| format!("actions[{i}].{x}");
            if a.at >= self.duration {
                e(f("at"), "must be before the end of the scenario");
            }
            let set = [
                a.deploy.is_some(),
                a.set_hpa.is_some(),
                a.scale.is_some(),
                a.traffic.is_some(),
                a.workload.is_some(),
                a.node_lost.is_some(),
                a.add_node.is_some(),
                a.gpu_throttle.is_some(),
                a.oom_loop.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if set != 1 {
                e(
                    format!("actions[{i}]"),
                    "exactly one of deploy, set_hpa, scale, traffic, workload, node_lost, add_node, gpu_throttle, oom_loop is needed",
                );
            }
            let missing = |d: &str| self.model(d).is_none();
            if let Some(d) = &a.deploy {
                if missing(&d.deployment) {
                    e(f("deploy.deployment"), "no model of that name");
                }
                if !(d.compute_factor.is_finite() && d.compute_factor > 0.0) {
                    e(f("deploy.compute_factor"), "must be > 0");
                }
            }
            if let Some(h) = &a.set_hpa {
                match self.model(&h.deployment) {
                    None => e(f("set_hpa.deployment"), "no model of that name"),
                    Some(m) if m.hpa.is_none() => e(f("set_hpa.deployment"), "that model has no hpa"),
                    _ => {}
                }
                if h.target.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
                    e(f("set_hpa.target"), "must be > 0");
                }
                if let (Some(lo), Some(hi)) = (h.min, h.max)
                    && (lo == 0 || lo > hi)
                {
                    e(f("set_hpa.min"), "must be >= 1 and <= max");
                }
            }
            if let Some(s) = &a.scale
                && missing(&s.deployment)
            {
                e(f("scale.deployment"), "no model of that name");
            }
            if let Some(t) = &a.traffic {
                if missing(&t.deployment) {
                    e(f("traffic.deployment"), "no model of that name");
                }
                if !(t.factor.is_finite() && t.factor >= 0.0) {
                    e(f("traffic.factor"), "must be >= 0");
                }
            }
            if let Some(w) = &a.workload {
                if missing(&w.deployment) {
                    e(f("workload.deployment"), "no model of that name");
                }
                if w.prompt_tokens.is_none() && w.output_tokens.is_none() {
                    e(f("workload"), "set prompt_tokens or output_tokens");
                }
            }
            if let Some(n) = &a.node_lost
                && !known_node(&n.node)
            {
                e(f("node_lost.node"), "no such node (nodes are named <pool>-<n>)");
            }
            if let Some(p) = &a.add_node
                && !self.pools.iter().any(|q| q.name == p.pool)
            {
                e(f("add_node.pool"), "no such pool");
            }
            if let Some(g) = &a.gpu_throttle {
                if !known_node(&g.node) {
                    e(f("gpu_throttle.node"), "no such node (nodes are named <pool>-<n>)");
                }
                if g.clock_mhz < 100 {
                    e(f("gpu_throttle.clock_mhz"), "must be at least 100");
                }
            }
            if let Some(o) = &a.oom_loop {
                if missing(&o.deployment) {
                    e(f("oom_loop.deployment"), "no model of that name");
                }
                if o.pods == 0 {
                    e(f("oom_loop.pods"), "must be >= 1");
                }
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs.join("\n")) }
    }
}
