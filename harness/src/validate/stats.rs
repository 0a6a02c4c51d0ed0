//! The classification rule of `dangle validate`: how counts such as 3/3 on
//! the base against 0/3 with the patch become **fixed**, **regression**,
//! **unchanged** or **inconclusive**, and how many more runs would settle
//! an inconclusive one.
//!
//! # The rule
//! For one finding title in one scenario, the base saw it in `k_b` of its
//! `n_b` runs and the candidate in `k_c` of `n_c` (runs that failed for
//! infrastructure reasons say nothing about the kernel and are not
//! counted).
//! - Seen on both sides: **unchanged**.
//! - Seen on one side only (say `k` of `n_s` runs there, never in the `n_o`
//!   runs of the other): the question is whether "never" could be luck.
//!   The null hypothesis is that the patch changes nothing, i.e. both sides
//!   have the same rate. Given that `k` runs in all showed the title, the
//!   chance that all `k` fell on one side is the one-sided p-value of
//!   Fisher's exact test for the 2x2 table `[[k, n_s-k], [0, n_o]]`:
//!
//!   ```text
//!   p = C(n_s, k) / C(n_s + n_o, k) = prod_{i<k} (n_s - i) / (n_s + n_o - i)
//!   ```
//!
//!   When `p <= alpha` (0.05) the verdict is **fixed** (seen on the base
//!   only) or **regression** (seen on the candidate only); otherwise it is
//!   **inconclusive**.
//!
//! # Why Fisher's exact test
//! - It is exact at the tiny counts validate runs with (3 runs a side),
//!   where normal approximations (chi-square, z-test) are meaningless.
//! - It accounts for the uncertainty on both sides. The simpler rule
//!   "(1 - k/n)^n < alpha" treats the observed base rate as the truth and
//!   so calls 1/1 against 0/1 settled; Fisher gives p = 0.5 there.
//! - It needs nothing but alpha: no prior on how often a race shows.
//!
//! What it means in practice with the default 3 runs a side: 3/3 vs 0/3
//! gives p = 1/20 = 0.05, which is enough; 2/3 vs 0/3 (p = 0.2) and 1/3 vs
//! 0/3 (p = 0.5) are not. A bug that shows in every run is settled in 3
//! runs; an intermittent one needs more (see [`more_runs`]).
//!
//! # How many runs would settle it
//! For an inconclusive verdict, [`more_runs`] assumes the side that saw
//! the title keeps seeing it at its observed rate `k / n_s`, the other
//! side keeps not seeing it, and both sides get the same extra runs `m`;
//! it returns the smallest `m` for which the p-value above drops to alpha
//! or below. It is an estimate from a small sample, not a promise:
//! `--runs auto` re-decides after every run.

use serde::{Deserialize, Serialize};

/// The significance level of every verdict.
pub const ALPHA: f64 = 0.05;

/// Extra runs beyond which [`more_runs`] gives up (the title is too rare
/// to settle by repetition).
pub const MORE_RUNS_CAP: u32 = 1000;

/// How many of a side's runs showed a title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Runs that showed it.
    pub seen: u32,
    /// Runs that count (infrastructure failures excluded).
    pub runs: u32,
}

impl Counts {
    /// `seen` of `runs`.
    pub fn new(seen: u32, runs: u32) -> Self {
        Self { seen, runs }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.seen, self.runs)
    }
}

/// The class of a (scenario, title) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Seen with the patch and never on the base, significantly.
    Regression,
    /// Seen on one side only, but too few runs to tell.
    Inconclusive,
    /// Seen on the base and never with the patch, significantly.
    Fixed,
    /// Seen on both sides (or on neither).
    Unchanged,
}

impl Class {
    /// The word printed in tables.
    pub fn word(self) -> &'static str {
        match self {
            Class::Regression => "regression",
            Class::Inconclusive => "inconclusive",
            Class::Fixed => "fixed",
            Class::Unchanged => "unchanged",
        }
    }
}

/// A class with the figures behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The class.
    pub class: Class,
    /// Fisher's one-sided p-value, when the title was seen on one side only.
    pub p_value: Option<f64>,
    /// For an inconclusive verdict: extra runs (on each side) that would
    /// settle it at the observed rate; `None` past [`MORE_RUNS_CAP`].
    pub more_runs: Option<u32>,
}

/// The probability that all `seen` sightings fall among the `runs_seen`
/// runs of one side when the `runs_other` runs of the other side are
/// equally likely to show it: the one-sided p-value of Fisher's exact test
/// when the other side saw nothing. 1 when the other side has no runs.
pub fn p_never(seen: u32, runs_seen: u32, runs_other: u32) -> f64 {
    let total = u128::from(runs_seen) + u128::from(runs_other);
    let (mut num, mut den) = (1u128, 1u128);
    let mut exact = true;
    for i in 0..u128::from(seen) {
        let (a, b) = (u128::from(runs_seen).saturating_sub(i), total - i);
        match (num.checked_mul(a), den.checked_mul(b)) {
            (Some(x), Some(y)) => (num, den) = (x, y),
            _ => {
                exact = false;
                break;
            }
        }
    }
    if exact {
        // One rounding, so 6/120 compares equal to the literal 0.05.
        return num as f64 / den as f64;
    }
    (0..seen).fold(1.0, |p, i| {
        p * f64::from(runs_seen.saturating_sub(i))
            / (f64::from(runs_seen) + f64::from(runs_other) - f64::from(i))
    })
}

/// Extra runs on each side after which `seen` (the side that saw the
/// title) against `runs_other` runs that never did would be significant,
/// if the seen side kept its observed rate. `None` when it would take more
/// than [`MORE_RUNS_CAP`] or nothing was seen.
pub fn more_runs(seen: Counts, runs_other: u32, alpha: f64) -> Option<u32> {
    if seen.seen == 0 || seen.runs == 0 {
        return None;
    }
    let rate = f64::from(seen.seen) / f64::from(seen.runs);
    (1..=MORE_RUNS_CAP).find(|&m| {
        let n = seen.runs + m;
        let k = ((rate * f64::from(n)).round() as u32).clamp(seen.seen, n);
        p_never(k, n, runs_other + m) <= alpha
    })
}

/// Classifies a title seen `base` times on the base and `candidate` times
/// with the patch (see the module docs for the rule).
pub fn classify(base: Counts, candidate: Counts, alpha: f64) -> Verdict {
    let one_sided = |seen: Counts, other: Counts, class: Class| {
        let p = p_never(seen.seen, seen.runs, other.runs);
        if p <= alpha {
            Verdict {
                class,
                p_value: Some(p),
                more_runs: None,
            }
        } else {
            Verdict {
                class: Class::Inconclusive,
                p_value: Some(p),
                more_runs: more_runs(seen, other.runs, alpha),
            }
        }
    };
    match (base.seen > 0, candidate.seen > 0) {
        (true, false) => one_sided(base, candidate, Class::Fixed),
        (false, true) => one_sided(candidate, base, Class::Regression),
        _ => Verdict {
            class: Class::Unchanged,
            p_value: None,
            more_runs: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(seen: u32, runs: u32) -> Counts {
        Counts::new(seen, runs)
    }

    #[test]
    fn classify_three_of_three_against_none_is_fixed_at_p_one_twentieth() {
        let v = classify(c(3, 3), c(0, 3), ALPHA);
        assert_eq!(v.class, Class::Fixed);
        assert_eq!(v.p_value, Some(0.05));
        assert_eq!(v.more_runs, None);
    }

    #[test]
    fn classify_candidate_only_is_a_regression_by_the_same_rule() {
        assert_eq!(classify(c(0, 3), c(3, 3), ALPHA).class, Class::Regression);
        assert_eq!(classify(c(0, 3), c(2, 3), ALPHA).class, Class::Inconclusive);
    }

    #[test]
    fn classify_one_of_three_is_inconclusive_and_says_how_many_runs_settle_it() {
        let v = classify(c(1, 3), c(0, 3), ALPHA);
        assert_eq!(v.class, Class::Inconclusive);
        assert_eq!(v.p_value, Some(0.5));
        // At 1 in 3: 11 runs a side would show ~4/11 vs 0/11, p = 0.045.
        assert_eq!(v.more_runs, Some(8));
        // 7 more: ~3/10 vs 0/10 is not enough; 8 more: ~4/11 vs 0/11 is.
        assert!(p_never(3, 10, 10) > ALPHA);
        assert!(p_never(4, 11, 11) <= ALPHA);
    }

    #[test]
    fn classify_two_of_three_settles_sooner_than_one_of_three() {
        let v = classify(c(2, 3), c(0, 3), ALPHA);
        assert_eq!(v.class, Class::Inconclusive);
        assert!((v.p_value.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(v.more_runs, Some(3));
    }

    #[test]
    fn classify_seen_on_both_sides_is_unchanged_whatever_the_rates() {
        for (b, k) in [(c(3, 3), c(3, 3)), (c(3, 3), c(1, 3)), (c(1, 5), c(4, 5))] {
            let v = classify(b, k, ALPHA);
            assert_eq!(v.class, Class::Unchanged, "{b} vs {k}");
            assert_eq!(v.p_value, None);
        }
    }

    #[test]
    fn classify_zero_runs_edge_cases_never_claim_a_change() {
        // Nothing anywhere, even with no runs at all.
        assert_eq!(classify(c(0, 0), c(0, 0), ALPHA).class, Class::Unchanged);
        // Every candidate run failed for infrastructure reasons: "never
        // with the patch" rests on nothing.
        let v = classify(c(3, 3), c(0, 0), ALPHA);
        assert_eq!(v.class, Class::Inconclusive);
        assert_eq!(v.p_value, Some(1.0));
        assert!(v.more_runs.is_some());
    }

    #[test]
    fn classify_one_run_each_is_never_enough() {
        // The naive (1 - k/n)^n rule would call this settled.
        let v = classify(c(1, 1), c(0, 1), ALPHA);
        assert_eq!(v.class, Class::Inconclusive);
        assert_eq!(v.p_value, Some(0.5));
        assert_eq!(v.more_runs, Some(2), "3/3 vs 0/3: p = 1/20");
    }

    #[test]
    fn p_never_matches_the_hypergeometric_tail() {
        // C(5,2)/C(10,2) = 10/45.
        assert!((p_never(2, 5, 5) - 10.0 / 45.0).abs() < 1e-12);
        assert_eq!(p_never(0, 3, 3), 1.0);
        assert_eq!(p_never(2, 4, 0), 1.0);
        // Large counts fall back to floating point without overflow.
        let p = p_never(60, 60, 60);
        assert!(p > 0.0 && p < 1e-15, "{p}");
    }

    #[test]
    fn more_runs_rare_title_is_beyond_the_cap() {
        assert_eq!(more_runs(c(1, 1000), 1000, ALPHA), None);
        assert_eq!(more_runs(c(0, 3), 3, ALPHA), None);
    }
}
