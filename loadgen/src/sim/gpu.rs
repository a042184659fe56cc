//! GPU dynamics, advanced once a simulated second: utilization and SM
//! activity from the engine's busy time and batch size, power from activity,
//! temperature approaching a power-dependent target, and the SM clock, which
//! drops when a GPU throttles (thermal: once it passes the slowdown
//! temperature; power: at once) and slows every step of the pods on it.

use super::Sim;
use crate::scenario::ThrottleReason;

/// Temperature at which a thermally throttling GPU lowers its clock (°C).
pub(super) const SLOWDOWN_TEMP_C: f64 = 85.0;
const IDLE_W: f64 = 72.0;
const AMBIENT_C: f64 = 28.0;
const THERMAL_TAU_S: f64 = 40.0;
/// `clocks_event_reasons` bits as NVML defines them.
pub(super) const REASON_SW_POWER_CAP: u64 = 0x4;
pub(super) const REASON_HW_SLOWDOWN: u64 = 0x8;
pub(super) const REASON_SW_THERMAL: u64 = 0x20;

/// One GPU of a node.
#[derive(Debug, Clone)]
pub(crate) struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub pci_bus_id: String,
    /// The pod the device plugin allocated it to.
    pub pod: Option<usize>,
    pub temp_c: f64,
    pub power_w: f64,
    pub energy_mj: f64,
    pub clock_mhz: u32,
    pub max_clock_mhz: u32,
    pub util: f64,
    pub sm_active: f64,
    pub sm_occupancy: f64,
    pub tensor_active: f64,
    pub dram_active: f64,
    pub fb_used_mib: f64,
    pub fb_total_mib: f64,
    pub throttle: Option<(u32, ThrottleReason, bool)>,
    pub reasons: u64,
    pub power_violation_us: u64,
    pub thermal_violation_us: u64,
    pub(crate) last_busy_ns: i64,
    pub(crate) last_batch_ns: f64,
}

impl Gpu {
    pub(crate) fn new(node: &str, index: u32, max_clock_mhz: u32) -> Gpu {
        Gpu {
            index,
            uuid: super::names::gpu_uuid(node, index),
            pci_bus_id: format!("00000000:{:02X}:00.0", 0x18 + index * 0x10),
            pod: None,
            temp_c: 31.0,
            power_w: IDLE_W,
            energy_mj: 0.0,
            clock_mhz: 345,
            max_clock_mhz,
            util: 0.0,
            sm_active: 0.0,
            sm_occupancy: 0.0,
            tensor_active: 0.0,
            dram_active: 0.0,
            fb_used_mib: 0.0,
            fb_total_mib: 81559.0,
            throttle: None,
            reasons: 0,
            power_violation_us: 0,
            thermal_violation_us: 0,
            last_busy_ns: 0,
            last_batch_ns: 0.0,
        }
    }

    /// Compute slowdown from the clock (1.0 at full clock).
    pub(crate) fn slowdown(&self) -> f64 {
        if self.clock_mhz == 0 || self.clock_mhz >= self.max_clock_mhz {
            1.0
        } else {
            f64::from(self.max_clock_mhz) / f64::from(self.clock_mhz)
        }
    }
}

impl Sim {
    pub(crate) fn on_gpu_tick(&mut self) {
        const DT: f64 = 1.0;
        let now = self.now();
        let mut throttled_now: Vec<String> = Vec::new();
        for n in 0..self.nodes.len() {
            if self.nodes[n].lost || !self.nodes[n].ready {
                continue;
            }
            let limit = self.scenario.pools[self.nodes[n].pool].power_limit_w;
            for g in 0..self.nodes[n].gpus.len() {
                let pod = self.nodes[n].gpus[g].pod;
                let (busy, batch, max_seqs, loaded, serving) = match pod.map(|p| &self.pods[p]) {
                    Some(p) => (
                        p.engine.counters.busy_ns,
                        p.engine.counters.batch_ns,
                        f64::from(self.scenario.models[p.model].server.max_num_seqs),
                        p.started.is_some(),
                        p.is_serving(),
                    ),
                    None => (0, 0.0, 1.0, false, false),
                };
                let gpu = &mut self.nodes[n].gpus[g];
                let dbusy = (busy - gpu.last_busy_ns).max(0) as f64;
                let dbatch = (batch - gpu.last_batch_ns).max(0.0);
                gpu.last_busy_ns = busy;
                gpu.last_batch_ns = batch;
                let util = if serving { (dbusy / (DT * 1e9)).clamp(0.0, 1.0) } else { 0.0 };
                let fill = if dbusy > 0.0 { (dbatch / dbusy / max_seqs).clamp(0.0, 1.0) } else { 0.0 };
                gpu.util = util;
                gpu.sm_active = util * (0.45 + 0.5 * fill);
                gpu.sm_occupancy = gpu.sm_active * 0.6;
                gpu.tensor_active = gpu.sm_active * 0.55;
                gpu.dram_active = util * (0.3 + 0.5 * fill);
                gpu.fb_used_mib = if loaded { gpu.fb_total_mib * 0.9 } else { 512.0 };
                let mut power = IDLE_W + (limit - IDLE_W) * (0.2 * util + 0.8 * gpu.sm_active);
                let mut thermal_extra = 0.0;
                let mut clock = if util > 0.0 || loaded { gpu.max_clock_mhz } else { 345 };
                // The clock this GPU would run at unthrottled: an idle GPU's base clock is
                // not a throttle, and the fault takes effect when a clock actually drops.
                let unthrottled = clock;
                gpu.reasons = 0;
                if let Some((c, reason, ref mut recorded)) = gpu.throttle {
                    match reason {
                        ThrottleReason::Power => {
                            power = power.min(limit * f64::from(c) / f64::from(gpu.max_clock_mhz));
                            clock = clock.min(c);
                            gpu.reasons |= REASON_SW_POWER_CAP;
                            gpu.power_violation_us += 1_000_000;
                        }
                        ThrottleReason::Thermal => {
                            thermal_extra = 30.0;
                            if gpu.temp_c >= SLOWDOWN_TEMP_C {
                                clock = clock.min(c);
                                gpu.reasons |= REASON_SW_THERMAL | REASON_HW_SLOWDOWN;
                                gpu.thermal_violation_us += 1_000_000;
                            }
                        }
                    }
                    if clock < unthrottled && !*recorded {
                        *recorded = true;
                        throttled_now.push(format!("{}/{}", n, g));
                    }
                }
                gpu.power_w = power;
                gpu.energy_mj += power * DT * 1000.0;
                let target = AMBIENT_C + 0.075 * power + thermal_extra;
                gpu.temp_c = target + (gpu.temp_c - target) * (-DT / THERMAL_TAU_S).exp();
                gpu.clock_mhz = clock;
            }
        }
        for key in throttled_now {
            self.on_throttle_started(&key);
        }
        self.at(now + 1_000_000_000, super::Ev::GpuTick);
    }

    /// Slowdown of a pod's steps: the slowest of its GPUs, times its version's cost.
    pub(crate) fn pod_slowdown(&self, p: usize) -> f64 {
        let pod = &self.pods[p];
        let mut s: f64 = 1.0;
        if let Some(n) = pod.node {
            for &g in &pod.gpus {
                if let Some(gpu) = self.nodes[n].gpus.get(g as usize) {
                    s = s.max(gpu.slowdown());
                }
            }
        }
        s * self.replicasets[pod.rs].compute_factor
    }
}
