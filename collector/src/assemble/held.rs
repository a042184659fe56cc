//! A span as trace assembly holds it: its fields, and its name and attributes as text
//! checked once on the receiving thread, so that emission slices them instead of reading
//! the span's encoding again.

use std::sync::Arc;

use slo_store::Attr;
#[cfg(test)]
use slo_store::SpanRecord;
use slo_store::encoded::{ResourceView, SpanView};

#[cfg(test)]
use super::TraceSpan;
use super::{Resource, TraceId};

/// A span waiting for its trace: its fields, and its name and attributes as text checked
/// once, as it was received. Emission splits the trace and stores sampled spans from this
/// text without reading or validating the span's encoding again (see [`crate::split`]).
/// It is the span's own copy, not a view into its WAL record: a record kept alive by one
/// slow trace would hold every other span of the export, so memory would no longer follow
/// `max_pending_spans`.
#[derive(Debug, Clone)]
pub(crate) struct HeldSpan {
    /// The name, then each attribute's key and value, back to back.
    text: Box<str>,
    /// Where each piece of `text` ends: the name, then a key and a value per attribute.
    ends: Ends,
    /// Trace and span ids of its links (a consumer's link to its producer).
    links: Box<[(TraceId, [u8; 8])]>,
    resource: Arc<Resource>,
    trace_id: TraceId,
    pub(super) span_id: [u8; 8],
    pub(super) parent: Option<[u8; 8]>,
    kind: i32,
    start_unix_nano: u64,
    end_unix_nano: u64,
    status_code: i32,
    /// Its `spans` row was built as it was received (a collector keeping every span), so
    /// emission must not store it again; one resumed after a restart carries what the
    /// collector that received it did (the state file says).
    pub(crate) stored: bool,
}

impl HeldSpan {
    /// Whether it is an entry span of a trace whose span ids `present` tells.
    pub(super) fn is_entry(&self, present: impl Fn(&[u8; 8]) -> bool) -> bool {
        match self.parent {
            None => true,
            Some(p) => (self.kind == 2 || self.kind == 5) && !present(&p),
        }
    }

    /// Bytes it holds of its own: its text, offsets, links and fields (the resource is
    /// shared with the other spans of its resource and not counted).
    pub(crate) fn footprint(&self) -> usize {
        self.text.len() + self.ends.bytes() + std::mem::size_of_val(&*self.links) + std::mem::size_of::<HeldSpan>()
    }

    /// Its fields as a reader of an encoded span sees them (`raw` and `links` empty: see
    /// [`HeldSpan::attributes`] and [`HeldSpan::link_span_ids`]).
    pub(crate) fn view(&self) -> SpanView<'_> {
        SpanView {
            raw: &[],
            trace_id: &self.trace_id,
            span_id: &self.span_id,
            parent_span_id: self.parent.as_ref().map_or(&[], |p| p.as_slice()),
            name: &self.text[..self.ends.get(0)],
            kind: self.kind,
            start_unix_nano: self.start_unix_nano,
            end_unix_nano: self.end_unix_nano,
            status_code: self.status_code,
            links: &[],
        }
    }

    /// Appends its attributes to `out`, in the order they were received.
    pub(crate) fn attributes<'a>(&'a self, out: &mut Vec<(&'a str, &'a str)>) {
        let mut from = self.ends.get(0);
        // 1 + 2 per attribute: every key has its value.
        for i in (1..self.ends.len()).step_by(2) {
            let (k, v) = (self.ends.get(i), self.ends.get(i + 1));
            out.push((&self.text[from..k], &self.text[k..v]));
            from = v;
        }
    }

    /// Span ids of the spans it links to.
    pub(crate) fn link_span_ids(&self) -> impl Iterator<Item = &[u8]> {
        self.links.iter().map(|(_, s)| s.as_slice())
    }

    /// The resource it came from.
    pub(crate) fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Whether its status is an error.
    pub(crate) fn is_error(&self) -> bool {
        self.status_code == 2
    }

    /// Whether its offsets take four bytes each (past 64 KiB of text).
    #[cfg(test)]
    pub(super) fn long_offsets(&self) -> bool {
        matches!(self.ends, Ends::Long(_))
    }

    /// The span decoded into owned fields.
    #[cfg(test)]
    pub(crate) fn decode(&self) -> TraceSpan {
        let v = self.view();
        let mut attrs = Vec::new();
        self.attributes(&mut attrs);
        let span = SpanRecord {
            trace_id: v.trace_id.to_vec(),
            span_id: v.span_id.to_vec(),
            parent_span_id: v.parent_span_id.to_vec(),
            name: v.name.to_string(),
            kind: v.kind,
            start_unix_nano: v.start_unix_nano,
            end_unix_nano: v.end_unix_nano,
            status_code: v.status_code,
            attributes: attrs.into_iter().map(|(k, v)| Attr::new(k, v)).collect(),
            links: self
                .links
                .iter()
                .map(|(t, s)| slo_store::LinkRef { trace_id: t.to_vec(), span_id: s.to_vec() })
                .collect(),
        };
        TraceSpan { resource: self.resource.clone(), span }
    }
}

/// Turns the spans of encoded records into [`HeldSpan`]s, sharing one [`Resource`] among
/// the spans of a resource.
#[derive(Debug, Default)]
pub(crate) struct Holder {
    current: Option<(usize, Arc<Resource>)>,
    record: Option<usize>,
}

impl Holder {
    /// The held span of `s` with its attributes `attrs`, a span of the record (or export)
    /// `key` names; `None` when its ids are not a trace span's (it is still in `spans`, it
    /// just makes no request row). Spans of one resource of one record share its
    /// [`Resource`].
    pub(crate) fn hold(
        &mut self,
        key: usize,
        r: &ResourceView<'_>,
        s: &SpanView<'_>,
        attrs: &[(&str, &str)],
    ) -> Option<(TraceId, HeldSpan)> {
        let resource = match &self.current {
            Some((index, res)) if *index == r.index && self.record == Some(key) => res.clone(),
            _ => {
                let res = Arc::new(Resource {
                    service: r.service.to_string(),
                    attrs: r.attrs.iter().map(|(k, v)| Attr::new(*k, *v)).collect(),
                });
                self.current = Some((r.index, res.clone()));
                self.record = Some(key);
                res
            }
        };
        let trace_id = TraceId::try_from(s.trace_id).ok()?;
        let span_id = <[u8; 8]>::try_from(s.span_id).ok()?;
        let parent = if s.parent_span_id.is_empty() { None } else { Some(<[u8; 8]>::try_from(s.parent_span_id).ok()?) };
        let len = s.name.len() + attrs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let ends = match u16::try_from(len) {
            Ok(_) => Ends::Short(ends_of(s.name, attrs)?),
            Err(_) => Ends::Long(ends_of(s.name, attrs)?),
        };
        let mut text = String::with_capacity(len);
        text.push_str(s.name);
        for (k, v) in attrs {
            text.push_str(k);
            text.push_str(v);
        }
        let links = if s.links.is_empty() { Box::default() } else { links_of(s.links) };
        let held = HeldSpan {
            text: text.into_boxed_str(),
            ends,
            links,
            resource,
            trace_id,
            span_id,
            parent,
            kind: s.kind,
            start_unix_nano: s.start_unix_nano,
            end_unix_nano: s.end_unix_nano,
            status_code: s.status_code,
            stored: false,
        };
        Some((trace_id, held))
    }
}

/// Where each piece of a held span's text ends: two bytes an offset while the text is
/// under 64 KiB (nearly every span), four beyond.
#[derive(Debug, Clone)]
enum Ends {
    Short(Box<[u16]>),
    Long(Box<[u32]>),
}

impl Ends {
    /// The end of piece `i`.
    fn get(&self, i: usize) -> usize {
        match self {
            Ends::Short(e) => usize::from(e[i]),
            Ends::Long(e) => e[i] as usize,
        }
    }

    /// Pieces.
    fn len(&self) -> usize {
        match self {
            Ends::Short(e) => e.len(),
            Ends::Long(e) => e.len(),
        }
    }

    /// Bytes the offsets take.
    fn bytes(&self) -> usize {
        match self {
            Ends::Short(e) => std::mem::size_of_val(&**e),
            Ends::Long(e) => std::mem::size_of_val(&**e),
        }
    }
}

/// The ends of a span's name and of each of its attributes' key and value, laid back to
/// back; `None` when one does not fit a `T`.
fn ends_of<T: TryFrom<usize>>(name: &str, attrs: &[(&str, &str)]) -> Option<Box<[T]>> {
    let mut at = name.len();
    let mut ends = Vec::with_capacity(1 + 2 * attrs.len());
    ends.push(T::try_from(at).ok()?);
    for (k, v) in attrs {
        at += k.len();
        ends.push(T::try_from(at).ok()?);
        at += v.len();
        ends.push(T::try_from(at).ok()?);
    }
    Some(ends.into_boxed_slice())
}

/// The links of a span's encoded links with a trace span's ids (others could never be
/// found in a trace). Unreadable links, which the collector's own encoding never gives,
/// are left out.
fn links_of(encoded: &[u8]) -> Box<[(TraceId, [u8; 8])]> {
    let mut read = Vec::new();
    if let Err(e) = slo_store::encoded::read_links(encoded, &mut read) {
        tracing::error!(error = %e, "a held span's links do not read; it is held without them");
    }
    read.into_iter().filter_map(|(t, s)| Some((TraceId::try_from(t).ok()?, <[u8; 8]>::try_from(s).ok()?))).collect()
}

/// The held spans of one encoded record.
pub(crate) fn hold_record(record: &[u8]) -> Result<Vec<(TraceId, HeldSpan)>, slo_store::wire::WireError> {
    let mut holder = Holder::default();
    let mut out = Vec::new();
    slo_store::encoded::visit_spans(record, |r, s, a| {
        out.extend(holder.hold(record.as_ptr() as usize, r, s, a));
        Ok::<_, slo_store::wire::WireError>(())
    })?;
    Ok(out)
}
