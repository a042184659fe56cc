//! NVIDIA dcgm-exporter `/metrics`, one page per node.
//!
//! Families, HELP texts and label names follow the real captures in
//! `tests/fixtures/dcgm/` and the exporter's `default-counters.csv`. The
//! families of the full L4 capture are always rendered; fields that the
//! default counter set or the L4 capture lacks (XID errors, NVLink bandwidth,
//! violation counters, clock-event reasons, SM active/occupancy — enabled in
//! real deployments through a custom counters CSV) are `Option`s, rendered
//! only for the GPUs that have them, with HELP texts from dcgm-exporter's CSVs.
//!
//! dcgm-exporter writes label values unescaped (Go `text/template`); here they
//! are escaped, so a value with a quote still yields valid exposition text.

use std::fmt::Write as _;

use super::{end_sample, write_header, write_label};

/// One GPU as dcgm-exporter reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DcgmGpu {
    /// `gpu` label: the index on the node.
    pub gpu: u32,
    /// `UUID` label, `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: String,
    /// `pci_bus_id` label, e.g. `00000000:53:00.0`.
    pub pci_bus_id: String,
    /// `device` label, e.g. `nvidia0`.
    pub device: String,
    /// `modelName` label, e.g. `NVIDIA H100 80GB HBM3`.
    pub model_name: String,
    /// `Hostname` label: the node name.
    pub hostname: String,
    /// `DCGM_FI_DRIVER_VERSION` label, e.g. `580.105.08`.
    pub driver_version: String,
    /// `container` label of the pod using the GPU; `None` when the exporter
    /// maps no pod to this GPU (unallocated, or pod mapping off).
    pub container: Option<String>,
    /// `namespace` label of the pod using the GPU.
    pub namespace: Option<String>,
    /// `pod` label of the pod using the GPU.
    pub pod: Option<String>,
    /// `pod_uid` label. Rendered whenever `pod` is set; `None` renders as
    /// `pod_uid=""`, as the real exporter does when it does not know the UID.
    pub pod_uid: Option<String>,

    /// `DCGM_FI_DEV_SM_CLOCK`, MHz.
    pub sm_clock_mhz: u32,
    /// `DCGM_FI_DEV_MEM_CLOCK`, MHz.
    pub mem_clock_mhz: u32,
    /// `DCGM_FI_DEV_MEMORY_TEMP`, °C.
    pub memory_temp_c: u32,
    /// `DCGM_FI_DEV_GPU_TEMP`, °C.
    pub gpu_temp_c: u32,
    /// `DCGM_FI_DEV_POWER_USAGE`, W.
    pub power_usage_w: f64,
    /// `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`, mJ since boot (counter).
    pub total_energy_consumption_mj: u64,
    /// `DCGM_FI_DEV_PCIE_REPLAY_COUNTER`, PCIe retries (counter).
    pub pcie_replay_total: u64,
    /// `DCGM_FI_DEV_GPU_UTIL`, percent 0..=100.
    pub gpu_util_pct: u32,
    /// `DCGM_FI_DEV_MEM_COPY_UTIL`, percent 0..=100.
    pub mem_copy_util_pct: u32,
    /// `DCGM_FI_DEV_ENC_UTIL`, percent 0..=100.
    pub enc_util_pct: u32,
    /// `DCGM_FI_DEV_DEC_UTIL`, percent 0..=100.
    pub dec_util_pct: u32,
    /// `DCGM_FI_DEV_XID_ERRORS`: the last XID error code (0 = none); `None`
    /// leaves the family out, as in the L4 capture.
    pub xid_errors: Option<u64>,
    /// `DCGM_FI_DEV_POWER_VIOLATION`, ns throttled for power (counter).
    pub power_violation_ns_total: Option<u64>,
    /// `DCGM_FI_DEV_THERMAL_VIOLATION`, ns throttled for temperature (counter).
    pub thermal_violation_ns_total: Option<u64>,
    /// `DCGM_FI_DEV_CLOCKS_EVENT_REASONS`: NVML clock-event (throttle) reason
    /// bitmask (0x4 SW power cap, 0x8 HW slowdown, 0x20 SW thermal, 0x40 HW thermal, …).
    pub clocks_event_reasons: Option<u64>,
    /// `DCGM_FI_DEV_FB_FREE`, MiB.
    pub fb_free_mib: u64,
    /// `DCGM_FI_DEV_FB_USED`, MiB.
    pub fb_used_mib: u64,
    /// `DCGM_FI_DEV_FB_RESERVED`, MiB.
    pub fb_reserved_mib: u64,
    /// `DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL` (counter); `None` on GPUs without NVLink.
    pub nvlink_bandwidth_total: Option<u64>,
    /// `DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS` (counter).
    pub uncorrectable_remapped_rows_total: u64,
    /// `DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS` (counter).
    pub correctable_remapped_rows_total: u64,
    /// `DCGM_FI_DEV_ROW_REMAP_FAILURE`: 1 when row remapping failed.
    pub row_remap_failure: u32,
    /// `DCGM_FI_DEV_VGPU_LICENSE_STATUS`.
    pub vgpu_license_status: u32,
    /// `DCGM_FI_PROF_GR_ENGINE_ACTIVE`, ratio 0..=1.
    pub gr_engine_active_ratio: f64,
    /// `DCGM_FI_PROF_SM_ACTIVE`, ratio 0..=1.
    pub sm_active_ratio: Option<f64>,
    /// `DCGM_FI_PROF_SM_OCCUPANCY`, ratio 0..=1.
    pub sm_occupancy_ratio: Option<f64>,
    /// `DCGM_FI_PROF_PIPE_TENSOR_ACTIVE`, ratio 0..=1.
    pub pipe_tensor_active_ratio: f64,
    /// `DCGM_FI_PROF_DRAM_ACTIVE`, ratio 0..=1.
    pub dram_active_ratio: f64,
    /// `DCGM_FI_PROF_PCIE_TX_BYTES`, bytes/s.
    pub pcie_tx_bytes_per_s: u64,
    /// `DCGM_FI_PROF_PCIE_RX_BYTES`, bytes/s.
    pub pcie_rx_bytes_per_s: u64,
}

/// A field value: DCGM integer fields print as integers, double fields as Go `%f`.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

type Field = (&'static str, &'static str, &'static str, fn(&DcgmGpu) -> Option<Value>);

/// The families in the order the exporter writes them: the L4 capture's
/// order, with the optional fields at their place in the counters CSV.
const FIELDS: &[Field] = &[
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", |g| int(g.sm_clock_mhz)),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", |g| int(g.mem_clock_mhz)),
    ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "gauge", "Current clock event reasons.", |g| {
        g.clocks_event_reasons.map(Value::Int)
    }),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", |g| int(g.memory_temp_c)),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", |g| int(g.gpu_temp_c)),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", |g| Some(Value::Float(g.power_usage_w))),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).", |g| {
        Some(Value::Int(g.total_energy_consumption_mj))
    }),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", |g| {
        Some(Value::Int(g.pcie_replay_total))
    }),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", |g| int(g.gpu_util_pct)),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", |g| int(g.mem_copy_util_pct)),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", |g| int(g.enc_util_pct)),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", |g| int(g.dec_util_pct)),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.", |g| g.xid_errors.map(Value::Int)),
    ("DCGM_FI_DEV_POWER_VIOLATION", "counter", "Throttling duration due to power constraints (in ns).", |g| {
        g.power_violation_ns_total.map(Value::Int)
    }),
    ("DCGM_FI_DEV_THERMAL_VIOLATION", "counter", "Throttling duration due to thermal constraints (in ns).", |g| {
        g.thermal_violation_ns_total.map(Value::Int)
    }),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", |g| Some(Value::Int(g.fb_free_mib))),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", |g| Some(Value::Int(g.fb_used_mib))),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).", |g| {
        Some(Value::Int(g.fb_reserved_mib))
    }),
    (
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "counter",
        "Total number of NVLink bandwidth counters for all lanes.",
        |g| g.nvlink_bandwidth_total.map(Value::Int),
    ),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors", |g| {
        Some(Value::Int(g.uncorrectable_remapped_rows_total))
    }),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors", |g| {
        Some(Value::Int(g.correctable_remapped_rows_total))
    }),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed", |g| int(g.row_remap_failure)),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "vGPU License status", |g| int(g.vgpu_license_status)),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.", |g| {
        Some(Value::Float(g.gr_engine_active_ratio))
    }),
    ("DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned.", |g| {
        g.sm_active_ratio.map(Value::Float)
    }),
    ("DCGM_FI_PROF_SM_OCCUPANCY", "gauge", "The ratio of number of warps resident on an SM.", |g| {
        g.sm_occupancy_ratio.map(Value::Float)
    }),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.", |g| {
        Some(Value::Float(g.pipe_tensor_active_ratio))
    }),
    (
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "gauge",
        "Ratio of cycles the device memory interface is active sending or receiving data.",
        |g| Some(Value::Float(g.dram_active_ratio)),
    ),
    (
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "gauge",
        "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
        |g| Some(Value::Int(g.pcie_tx_bytes_per_s)),
    ),
    (
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        "gauge",
        "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
        |g| Some(Value::Int(g.pcie_rx_bytes_per_s)),
    ),
];

fn int(v: u32) -> Option<Value> {
    Some(Value::Int(u64::from(v)))
}

/// Writes the label set of one GPU, without braces.
fn write_gpu_labels(out: &mut String, g: &DcgmGpu) {
    let _ = write!(out, "gpu=\"{}\",", g.gpu);
    write_label(out, "UUID", &g.uuid);
    out.push(',');
    write_label(out, "pci_bus_id", &g.pci_bus_id);
    out.push(',');
    write_label(out, "device", &g.device);
    out.push(',');
    write_label(out, "modelName", &g.model_name);
    out.push(',');
    write_label(out, "Hostname", &g.hostname);
    out.push(',');
    write_label(out, "DCGM_FI_DRIVER_VERSION", &g.driver_version);
    // The exporter adds its Kubernetes labels from a Go map, written in
    // sorted key order: container, namespace, pod, pod_uid.
    for (name, value) in [("container", &g.container), ("namespace", &g.namespace), ("pod", &g.pod)] {
        if let Some(v) = value {
            out.push(',');
            write_label(out, name, v);
        }
    }
    if g.pod.is_some() {
        out.push(',');
        write_label(out, "pod_uid", g.pod_uid.as_deref().unwrap_or(""));
    }
}

/// Appends the `/metrics` page of a node's dcgm-exporter to `out`: one
/// family after the other, each with one sample per GPU in the order given.
/// With `Some(ts)` every sample ends in that millisecond timestamp.
pub(crate) fn render_dcgm(out: &mut String, gpus: &[DcgmGpu], timestamp_ms: Option<i64>) {
    // The label block of each GPU is built once and copied into every sample.
    let mut labels = String::new();
    let mut ends = Vec::with_capacity(gpus.len());
    for g in gpus {
        write_gpu_labels(&mut labels, g);
        ends.push(labels.len());
    }
    for &(name, kind, help, get) in FIELDS {
        let mut header = false;
        let mut start = 0;
        for (g, &end) in gpus.iter().zip(&ends) {
            let block = &labels[start..end];
            start = end;
            let Some(value) = get(g) else { continue };
            if !header {
                write_header(out, name, help, kind);
                header = true;
            }
            out.push_str(name);
            out.push('{');
            out.push_str(block);
            out.push_str("} ");
            let _ = match value {
                Value::Int(v) => write!(out, "{v}"),
                Value::Float(v) => write!(out, "{v:.6}"),
            };
            end_sample(out, timestamp_ms);
        }
    }
}
