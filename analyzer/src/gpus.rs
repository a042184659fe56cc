//! The dashboard's GPU panel: each GPU of the nodes a service's pods run on, with its SM
//! clock, utilization, temperature and power (newest minute, and the SM clock per minute),
//! the pod it was attributed to and how (`samples.attribution`: exporter labels are
//! evidence, not truth).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rollup::MINUTE_NS;

/// The gauges the panel shows, as dcgm-exporter names them.
pub(crate) const METRICS: [&str; 4] =
    ["DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"];

/// A minute counts as busy from this utilization, %.
pub(crate) const BUSY_PCT: f64 = 10.0;

/// GPUs listed at most.
pub(crate) const MAX_GPUS: usize = 32;

/// One GPU, metric and minute: the mean of its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuMinute {
    /// Node.
    pub node: String,
    /// GPU UUID.
    pub gpu: String,
    /// dcgm-exporter metric.
    pub metric: String,
    /// Minute, ns.
    pub minute: i64,
    /// Mean value.
    pub value: f64,
    /// Pod attributed in that minute (empty: none).
    pub pod: String,
    /// How it was attributed.
    pub attribution: String,
}

/// One GPU on the panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// Node.
    pub node: String,
    /// GPU UUID.
    pub gpu: String,
    /// Pod in its newest minute (empty: idle or unknown).
    pub pod: String,
    /// How the pod was found (`exporter_labels`, `allocation`, `ambiguous`, `idle`, ...).
    pub attribution: String,
    /// Newest minute's SM clock, MHz.
    pub sm_clock_mhz: Option<f64>,
    /// Lowest SM clock over the range's busy minutes (utilization at least
    /// [`BUSY_PCT`]; an idle GPU's clock drops by design), MHz.
    pub sm_clock_min_mhz: Option<f64>,
    /// Newest minute's utilization, %.
    pub util_pct: Option<f64>,
    /// Newest minute's temperature, °C.
    pub temp_c: Option<f64>,
    /// Newest minute's power, W.
    pub power_w: Option<f64>,
    /// SM clock per minute of `[from, to)`, MHz (`None`: no sample).
    pub sm_clock: Vec<Option<f64>>,
}

/// The GPUs of every node where one of `service`'s pods held a GPU in `[from, to)`.
pub fn panel(service: &str, rows: &[GpuMinute], from: i64, to: i64) -> Vec<Gpu> {
    let nodes: std::collections::BTreeSet<&str> =
        rows.iter().filter(|r| crate::board::named_after(service, &r.pod)).map(|r| r.node.as_str()).collect();
    let minutes = ((to - from) / MINUTE_NS).max(0) as usize;
    let mut gpus: BTreeMap<(&str, &str), Gpu> = BTreeMap::new();
    let mut newest: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    let mut busy: std::collections::BTreeSet<(&str, &str, i64)> = std::collections::BTreeSet::new();
    for r in rows.iter().filter(|r| nodes.contains(r.node.as_str())) {
        let g = gpus.entry((&r.node, &r.gpu)).or_insert_with(|| Gpu {
            node: r.node.clone(),
            gpu: r.gpu.clone(),
            pod: String::new(),
            attribution: String::new(),
            sm_clock_mhz: None,
            sm_clock_min_mhz: None,
            util_pct: None,
            temp_c: None,
            power_w: None,
            sm_clock: vec![None; minutes],
        });
        let latest = newest.entry((&r.node, &r.gpu, &r.metric)).or_insert(i64::MIN);
        let is_newest = r.minute >= *latest;
        if is_newest {
            *latest = r.minute;
            g.pod.clone_from(&r.pod);
            g.attribution.clone_from(&r.attribution);
        }
        let v = (r.value * 10.0).round() / 10.0;
        match r.metric.as_str() {
            "DCGM_FI_DEV_SM_CLOCK" => {
                if let Some(slot) =
                    usize::try_from((r.minute - from) / MINUTE_NS).ok().and_then(|i| g.sm_clock.get_mut(i))
                {
                    *slot = Some(v);
                }
                if is_newest {
                    g.sm_clock_mhz = Some(v);
                }
            }
            "DCGM_FI_DEV_GPU_UTIL" => {
                if v >= BUSY_PCT {
                    busy.insert((&r.node, &r.gpu, r.minute));
                }
                if is_newest {
                    g.util_pct = Some(v);
                }
            }
            "DCGM_FI_DEV_GPU_TEMP" if is_newest => g.temp_c = Some(v),
            "DCGM_FI_DEV_POWER_USAGE" if is_newest => g.power_w = Some(v),
            _ => {}
        }
    }
    for r in rows.iter().filter(|r| r.metric == "DCGM_FI_DEV_SM_CLOCK" && busy.contains(&(&r.node, &r.gpu, r.minute))) {
        if let Some(g) = gpus.get_mut(&(r.node.as_str(), r.gpu.as_str())) {
            let v = (r.value * 10.0).round() / 10.0;
            g.sm_clock_min_mhz = Some(g.sm_clock_min_mhz.map_or(v, |m: f64| m.min(v)));
        }
    }
    let mut out: Vec<Gpu> = gpus.into_values().collect();
    // The service's own GPUs first, the slowest busy clock first among them: a throttled
    // GPU under its pods is what this panel is for.
    out.sort_by(|a, b| {
        (!crate::board::named_after(service, &a.pod))
            .cmp(&!crate::board::named_after(service, &b.pod))
            .then(a.sm_clock_min_mhz.unwrap_or(f64::MAX).total_cmp(&b.sm_clock_min_mhz.unwrap_or(f64::MAX)))
            .then_with(|| (&a.node, &a.gpu).cmp(&(&b.node, &b.gpu)))
    });
    out.truncate(MAX_GPUS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, gpu: &str, metric: &str, minute: i64, value: f64, pod: &str) -> GpuMinute {
        GpuMinute {
            node: node.into(),
            gpu: gpu.into(),
            metric: metric.into(),
            minute: minute * MINUTE_NS,
            value,
            pod: pod.into(),
            attribution: if pod.is_empty() { "idle".into() } else { "exporter_labels".into() },
        }
    }

    #[test]
    fn the_service_s_nodes_are_shown_the_throttled_gpu_first() {
        let (clock, util) = ("DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_GPU_UTIL");
        let rows = vec![
            row("n1", "GPU-a", clock, 0, 1980.0, "llama-70b-abc-1"),
            row("n1", "GPU-a", util, 0, 99.0, "llama-70b-abc-1"),
            row("n1", "GPU-a", clock, 1, 1980.0, "llama-70b-abc-1"),
            row("n1", "GPU-a", util, 1, 99.0, "llama-70b-abc-1"),
            row("n1", "GPU-d", clock, 0, 1980.0, "llama-70b-abc-2"),
            row("n1", "GPU-d", util, 0, 99.0, "llama-70b-abc-2"),
            row("n1", "GPU-d", clock, 1, 1100.0, "llama-70b-abc-2"),
            row("n1", "GPU-d", util, 1, 99.0, "llama-70b-abc-2"),
            row("n1", "GPU-d", "DCGM_FI_DEV_GPU_TEMP", 1, 91.0, "llama-70b-abc-2"),
            row("n1", "GPU-b", clock, 1, 345.0, ""),
            row("n1", "GPU-b", util, 1, 0.0, ""),
            row("n2", "GPU-c", clock, 1, 900.0, "embedder-x-1"),
        ];
        let p = panel("llama-70b", &rows, 0, 3 * MINUTE_NS);
        let order: Vec<&str> = p.iter().map(|g| g.gpu.as_str()).collect();
        assert_eq!(
            order,
            ["GPU-d", "GPU-a", "GPU-b"],
            "only n1 runs llama-70b; its own GPUs first, the throttled one first"
        );
        assert_eq!(p[0].sm_clock, vec![Some(1980.0), Some(1100.0), None]);
        assert_eq!((p[0].sm_clock_mhz, p[0].sm_clock_min_mhz, p[0].temp_c), (Some(1100.0), Some(1100.0), Some(91.0)));
        assert_eq!(p[1].pod, "llama-70b-abc-1");
        assert_eq!(p[1].attribution, "exporter_labels");
        assert_eq!(p[2].sm_clock_min_mhz, None, "an idle GPU's low clock is not a lowest busy clock");
        assert_eq!(p[2].sm_clock_mhz, Some(345.0));
        assert!(panel("nothing", &rows, 0, 3 * MINUTE_NS).is_empty());
    }
}
