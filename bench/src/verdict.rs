//! Targets and whether a run met them: each measured value against its goal,
//! with the margin computed from the numbers, never written by hand.

use std::fmt;

/// The side of a limit a measured value must stay on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// At least this much (throughput, ratios of throughput).
    AtLeast(f64),
    /// At most this much (latency, memory, counts of bad events).
    AtMost(f64),
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtLeast(v) => write!(f, "≥ {}", number(*v)),
            Self::AtMost(v) => write!(f, "≤ {}", number(*v)),
        }
    }
}

/// A value checked against its goal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// What was measured.
    pub value: f64,
    /// What it had to be.
    pub goal: Goal,
}

impl Verdict {
    /// Checks `value` against `goal`.
    pub fn check(value: f64, goal: Goal) -> Self {
        Self { value, goal }
    }

    /// Whether the goal was met (a value that could not be measured is not).
    pub fn met(&self) -> bool {
        match self.goal {
            Goal::AtLeast(limit) => self.value >= limit,
            Goal::AtMost(limit) => self.value <= limit,
        }
    }

    /// How far the value is from the limit, relative to it: positive on the
    /// good side, negative on the bad side (`0.28`: 28% to spare). `None`
    /// for a limit of zero, where only the absolute amount means anything.
    pub fn margin(&self) -> Option<f64> {
        let (limit, signed) = match self.goal {
            Goal::AtLeast(limit) => (limit, self.value - limit),
            Goal::AtMost(limit) => (limit, limit - self.value),
        };
        (limit != 0.0 && self.value.is_finite()).then(|| signed / limit)
    }
}

/// "met, 17% to spare", "**missed** by 28%", "**missed** by 3.2x the limit".
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.value.is_finite() {
            return write!(f, "**missed**: not measured");
        }
        let limit = match self.goal {
            Goal::AtLeast(l) | Goal::AtMost(l) => l,
        };
        match (self.met(), self.margin()) {
            (true, Some(m)) => write!(f, "met, {:.0}% to spare", m * 100.0),
            (true, None) => write!(f, "met"),
            (false, None) => write!(f, "**missed** by {}", number(self.value - limit)),
            // Far over an upper limit, a factor reads better than "by 870%".
            (false, Some(_))
                if matches!(self.goal, Goal::AtMost(_)) && self.value >= 2.0 * limit =>
            {
                write!(f, "**missed**: {:.1}x the limit", self.value / limit)
            }
            (false, Some(m)) => write!(f, "**missed** by {:.0}%", -m * 100.0),
        }
    }
}

/// A number as the targets quote it: no trailing zeros.
fn number(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_bound_says_by_how_much_it_was_met_or_missed() {
        let missed = Verdict::check(0.86, Goal::AtLeast(1.2));
        assert!(!missed.met());
        assert_eq!(missed.to_string(), "**missed** by 28%");
        let met = Verdict::check(1.4, Goal::AtLeast(1.2));
        assert!(met.met());
        assert_eq!(met.to_string(), "met, 17% to spare");
        assert!(
            Verdict::check(1.2, Goal::AtLeast(1.2)).met(),
            "the limit itself meets it"
        );
    }

    #[test]
    fn an_upper_bound_turns_to_a_factor_when_far_over() {
        assert_eq!(
            Verdict::check(6.0, Goal::AtMost(4.0)).to_string(),
            "**missed** by 50%"
        );
        assert_eq!(
            Verdict::check(9.7, Goal::AtMost(1.0)).to_string(),
            "**missed**: 9.7x the limit"
        );
        assert_eq!(
            Verdict::check(3.0, Goal::AtMost(4.0)).to_string(),
            "met, 25% to spare"
        );
    }

    #[test]
    fn a_zero_limit_counts_absolute_amounts() {
        assert_eq!(Verdict::check(0.0, Goal::AtMost(0.0)).to_string(), "met");
        let missed = Verdict::check(10_000.0, Goal::AtMost(0.0));
        assert_eq!(missed.margin(), None);
        assert_eq!(missed.to_string(), "**missed** by 10000");
    }

    #[test]
    fn an_unmeasured_value_misses() {
        let v = Verdict::check(f64::NAN, Goal::AtMost(10.0));
        assert!(!v.met());
        assert_eq!(v.to_string(), "**missed**: not measured");
        assert_eq!(Goal::AtLeast(0.5).to_string(), "≥ 0.5");
        assert_eq!(Goal::AtMost(4.0).to_string(), "≤ 4");
    }
}
