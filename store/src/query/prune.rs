//! Which segment files a query can skip: the bounds its filters put on `time`, against the
//! manifest's min/max time of each file. A file outside them is never opened (over an
//! object store, each opened file costs requests for its footer). The filters are applied
//! again above the scan, so bounds that are looser than the filter are fine; ones tighter
//! would lose rows, so anything not understood here leaves the bound open.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use crate::schema::col;

/// `[from, to]` in ns (both inclusive) that every row a query keeps has its `time` in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TimeBounds {
    pub(crate) from: i64,
    pub(crate) to: i64,
}

impl TimeBounds {
    const ALL: TimeBounds = TimeBounds { from: i64::MIN, to: i64::MAX };

    /// The bounds all of `filters` (a conjunction) put on `time`.
    pub(crate) fn of(filters: &[Expr]) -> TimeBounds {
        let mut b = TimeBounds::ALL;
        for f in filters {
            b.narrow(f);
        }
        b
    }

    /// Whether a file whose rows' times are within `[min, max]` may hold a kept row.
    pub(crate) fn overlaps(&self, min: i64, max: i64) -> bool {
        max >= self.from && min <= self.to
    }

    fn narrow(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                self.narrow(left);
                self.narrow(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, ns) = match (is_time(left), ns_of(right), is_time(right), ns_of(left)) {
                    (true, Some(ns), _, _) => (*op, ns),
                    // `literal op time`: the same with the operator turned around.
                    (_, _, true, Some(ns)) => match op.swap() {
                        Some(op) => (op, ns),
                        None => return,
                    },
                    _ => return,
                };
                match op {
                    Operator::Gt => self.from = self.from.max(ns.saturating_add(1)),
                    Operator::GtEq => self.from = self.from.max(ns),
                    Operator::Lt => self.to = self.to.min(ns.saturating_sub(1)),
                    Operator::LtEq => self.to = self.to.min(ns),
                    Operator::Eq => {
                        self.from = self.from.max(ns);
                        self.to = self.to.min(ns);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated && is_time(&b.expr) => {
                if let Some(lo) = ns_of(&b.low) {
                    self.from = self.from.max(lo);
                }
                if let Some(hi) = ns_of(&b.high) {
                    self.to = self.to.min(hi);
                }
            }
            _ => {}
        }
    }
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == col::TIME)
}

/// A timestamp literal in ns (a string or a number is left alone: its meaning is the
/// coercion's, which comes before pushdown and turns the usual forms into timestamps).
fn ns_of(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}
