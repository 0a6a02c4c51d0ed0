//! Fault plans: deliberate misbehaviour that makes kernel races
//! deterministic.
//!
//! # Syntax
//!
//! A fault spec is `KIND[:KEY=VALUE[,KEY=VALUE...]]`, given with `--fault`
//! (repeatable) or through the control socket (`set_faults`).
//!
//! | kind    | effect                                              | keys |
//! |---------|-----------------------------------------------------|------|
//! | `delay` | sleep before replying                               | `ms` or `us` (required), filters |
//! | `err`   | answer `ERR` instead of executing the request       | filters |
//! | `hold`  | never reply: keep the chain off the used ring       | filters |
//! | `abort` | abort the backend process (SIGABRT) at the request  | filters |
//! | `storm` | toggle a GPIO input line `count` times (edge storm), once; each toggle counts as one `storm` in `faults_fired` | `line` (required), `count` (default 1000), `period_us` (default 100) |
//!
//! Filters select the requests a rule applies to (request-queue requests
//! only; event buffers are never faulted):
//! - `nth=N`: only the N-th matching request (1-based), counted from the
//!   moment the plan was set; without it the rule fires on every match;
//! - `addr=0xNN`: only I2C requests to this 7-bit address;
//! - `line=N`: only GPIO requests about line N.
//!
//! Examples: `delay:ms=50`, `delay:ms=2000,nth=3`, `err:addr=0x50`,
//! `err:nth=5`, `hold:nth=2`, `abort:nth=10`, `storm:line=3,count=500,period_us=50`.
//!
//! Several rules may fire on one request: delays add up, and the strongest
//! outcome wins (`abort` > `hold` > `err`).

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;
use std::time::Duration;

/// Why a fault spec did not parse.
#[derive(Debug, thiserror::Error)]
pub enum FaultParseError {
    /// The kind before `:` is not one of the documented ones.
    #[error(
        "fault spec {spec:?}: unknown kind {kind:?} (expected delay, err, hold, abort or storm)"
    )]
    UnknownKind {
        /// The whole spec.
        spec: String,
        /// The kind found.
        kind: String,
    },
    /// A key the kind does not take.
    #[error("fault spec {spec:?}: key {key:?} is not valid for {kind}")]
    UnknownKey {
        /// The whole spec.
        spec: String,
        /// The kind.
        kind: &'static str,
        /// The key found.
        key: String,
    },
    /// A `KEY=VALUE` item without `=`.
    #[error("fault spec {spec:?}: expected KEY=VALUE, found {item:?}")]
    NotKeyValue {
        /// The whole spec.
        spec: String,
        /// The item found.
        item: String,
    },
    /// A value that is not a number in range.
    #[error("fault spec {spec:?}: bad value {value:?} for {key}")]
    BadNumber {
        /// The whole spec.
        spec: String,
        /// The key.
        key: String,
        /// The value found.
        value: String,
        /// The parse failure.
        #[source]
        source: ParseIntError,
    },
    /// A value out of its documented range.
    #[error("fault spec {spec:?}: {key} must be {expected}")]
    OutOfRange {
        /// The whole spec.
        spec: String,
        /// The key.
        key: &'static str,
        /// What is allowed.
        expected: &'static str,
    },
    /// A required key is absent.
    #[error("fault spec {spec:?}: {kind} needs {key}=")]
    Missing {
        /// The whole spec.
        spec: String,
        /// The kind.
        kind: &'static str,
        /// The key.
        key: &'static str,
    },
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Sleep before replying.
    Delay(Duration),
    /// Reply `ERR`.
    Err,
    /// Never reply.
    Hold,
    /// Abort the process.
    Abort,
    /// Toggle an input line `count` times, every `period`.
    Storm {
        /// GPIO line.
        line: u16,
        /// Number of level changes.
        count: u32,
        /// Time between changes.
        period: Duration,
    },
}

impl FaultAction {
    /// Short name used in counters.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultAction::Delay(_) => "delay",
            FaultAction::Err => "err",
            FaultAction::Hold => "hold",
            FaultAction::Abort => "abort",
            FaultAction::Storm { .. } => "storm",
        }
    }
}

/// One parsed fault spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// What happens.
    pub action: FaultAction,
    /// Only the n-th matching request (1-based).
    pub nth: Option<u64>,
    /// Only I2C requests to this 7-bit address.
    pub addr: Option<u16>,
    /// Only GPIO requests about this line.
    pub line: Option<u16>,
    text: String,
}

fn parse_num<T: FromStr<Err = ParseIntError>>(
    spec: &str,
    key: &str,
    value: &str,
) -> Result<T, FaultParseError> {
    let parsed = if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        // Reparse through u64 so every integer type accepts hex.
        u64::from_str_radix(hex, 16).map(|v| v.to_string())
    } else {
        Ok(value.to_owned())
    };
    parsed
        .and_then(|v| v.parse::<T>())
        .map_err(|source| FaultParseError::BadNumber {
            spec: spec.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            source,
        })
}

impl FromStr for FaultSpec {
    type Err = FaultParseError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let kind: &'static str = match kind {
            "delay" => "delay",
            "err" => "err",
            "hold" => "hold",
            "abort" => "abort",
            "storm" => "storm",
            other => {
                return Err(FaultParseError::UnknownKind {
                    spec: spec.to_owned(),
                    kind: other.to_owned(),
                });
            }
        };
        let mut nth = None;
        let mut addr = None;
        let mut line = None;
        let mut delay = None;
        let mut count = 1000u32;
        let mut period = Duration::from_micros(100);
        for item in rest.split(',').filter(|s| !s.is_empty()) {
            let (key, value) =
                item.split_once('=')
                    .ok_or_else(|| FaultParseError::NotKeyValue {
                        spec: spec.to_owned(),
                        item: item.to_owned(),
                    })?;
            match (kind, key) {
                ("storm", "nth" | "addr") => {
                    return Err(FaultParseError::UnknownKey {
                        spec: spec.to_owned(),
                        kind,
                        key: key.to_owned(),
                    });
                }
                (_, "nth") => {
                    let n: u64 = parse_num(spec, key, value)?;
                    if n == 0 {
                        return Err(FaultParseError::OutOfRange {
                            spec: spec.to_owned(),
                            key: "nth",
                            expected: "at least 1",
                        });
                    }
                    nth = Some(n);
                }
                (_, "addr") => {
                    let a: u16 = parse_num(spec, key, value)?;
                    if a > 0x7f {
                        return Err(FaultParseError::OutOfRange {
                            spec: spec.to_owned(),
                            key: "addr",
                            expected: "a 7-bit address (0x00..=0x7f)",
                        });
                    }
                    addr = Some(a);
                }
                (_, "line") => line = Some(parse_num(spec, key, value)?),
                ("delay", "ms") => {
                    delay = Some(Duration::from_millis(parse_num(spec, key, value)?))
                }
                ("delay", "us") => {
                    delay = Some(Duration::from_micros(parse_num(spec, key, value)?))
                }
                ("storm", "count") => count = parse_num(spec, key, value)?,
                ("storm", "period_us") => {
                    period = Duration::from_micros(parse_num(spec, key, value)?);
                }
                _ => {
                    return Err(FaultParseError::UnknownKey {
                        spec: spec.to_owned(),
                        kind,
                        key: key.to_owned(),
                    });
                }
            }
        }
        let action = match kind {
            "delay" => FaultAction::Delay(delay.ok_or(FaultParseError::Missing {
                spec: spec.to_owned(),
                kind,
                key: "ms",
            })?),
            "err" => FaultAction::Err,
            "hold" => FaultAction::Hold,
            "abort" => FaultAction::Abort,
            _ => {
                let target = line.take().ok_or(FaultParseError::Missing {
                    spec: spec.to_owned(),
                    kind,
                    key: "line",
                })?;
                FaultAction::Storm {
                    line: target,
                    count,
                    period,
                }
            }
        };
        Ok(FaultSpec {
            action,
            nth,
            addr,
            line,
            text: spec.to_owned(),
        })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a request is about, for matching filters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// I2C 7-bit address.
    pub addr: Option<u16>,
    /// GPIO line.
    pub line: Option<u16>,
}

impl RequestInfo {
    /// A request to the I2C chip at `addr`.
    pub fn addr(addr: u16) -> Self {
        RequestInfo {
            addr: Some(addr),
            line: None,
        }
    }

    /// A request about GPIO line `line`.
    pub fn line(line: u16) -> Self {
        RequestInfo {
            addr: None,
            line: Some(line),
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// Execute normally.
    #[default]
    Execute,
    /// Reply `ERR` without executing.
    Err,
    /// Never reply.
    Hold,
    /// Abort the process.
    Abort,
}

/// The plan's decision for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Sleep this long before replying.
    pub delay: Duration,
    /// What to do.
    pub outcome: Outcome,
    /// Kinds of the rules that fired, for counters.
    pub fired: Vec<&'static str>,
}

#[derive(Debug)]
struct Rule {
    spec: FaultSpec,
    seen: u64,
}

/// The set of request rules of one device.
#[derive(Debug, Default)]
pub struct FaultPlan {
    rules: Vec<Rule>,
}

impl FaultPlan {
    /// A plan of the request rules among `specs` (storms are not request
    /// rules: the device starts them when the plan is set).
    pub fn new(specs: &[FaultSpec]) -> Self {
        FaultPlan {
            rules: specs
                .iter()
                .filter(|s| !matches!(s.action, FaultAction::Storm { .. }))
                .map(|s| Rule {
                    spec: s.clone(),
                    seen: 0,
                })
                .collect(),
        }
    }

    /// The specs in force.
    pub fn specs(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.spec.to_string()).collect()
    }

    /// Decides the fate of one request (and counts it against `nth`).
    pub fn on_request(&mut self, info: RequestInfo) -> Verdict {
        let mut verdict = Verdict::default();
        for rule in &mut self.rules {
            let s = &rule.spec;
            if s.addr.is_some_and(|a| info.addr != Some(a))
                || s.line.is_some_and(|l| info.line != Some(l))
            {
                continue;
            }
            rule.seen += 1;
            if s.nth.is_some_and(|n| n != rule.seen) {
                continue;
            }
            verdict.fired.push(s.action.kind());
            let outcome = match s.action {
                FaultAction::Delay(d) => {
                    verdict.delay += d;
                    continue;
                }
                FaultAction::Err => Outcome::Err,
                FaultAction::Hold => Outcome::Hold,
                FaultAction::Abort => Outcome::Abort,
                FaultAction::Storm { .. } => continue,
            };
            verdict.outcome = strongest(verdict.outcome, outcome);
        }
        verdict
    }
}

fn strongest(a: Outcome, b: Outcome) -> Outcome {
    fn rank(o: Outcome) -> u8 {
        match o {
            Outcome::Execute => 0,
            Outcome::Err => 1,
            Outcome::Hold => 2,
            Outcome::Abort => 3,
        }
    }
    if rank(b) > rank(a) { b } else { a }
}

/// Parses a list of specs, stopping at the first error.
pub fn parse_specs<S: AsRef<str>>(specs: &[S]) -> Result<Vec<FaultSpec>, FaultParseError> {
    specs.iter().map(|s| s.as_ref().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(specs: &[&str]) -> FaultPlan {
        FaultPlan::new(&parse_specs(specs).unwrap())
    }

    #[test]
    fn parse_valid_specs_yield_actions() {
        let s: FaultSpec = "delay:ms=50".parse().unwrap();
        assert_eq!(s.action, FaultAction::Delay(Duration::from_millis(50)));
        let s: FaultSpec = "err:addr=0x50,nth=2".parse().unwrap();
        assert_eq!(
            (s.action, s.addr, s.nth),
            (FaultAction::Err, Some(0x50), Some(2))
        );
        let s: FaultSpec = "storm:line=3,count=10,period_us=5".parse().unwrap();
        assert_eq!(
            s.action,
            FaultAction::Storm {
                line: 3,
                count: 10,
                period: Duration::from_micros(5)
            }
        );
        assert_eq!(s.line, None);
        assert_eq!(s.to_string(), "storm:line=3,count=10,period_us=5");
    }

    #[test]
    fn parse_bad_specs_name_the_problem() {
        let cases = [
            ("explode", "unknown kind"),
            ("delay", "needs ms="),
            ("delay:ms=abc", "bad value \"abc\" for ms"),
            ("err:addr=0x80", "7-bit address"),
            ("err:nth=0", "at least 1"),
            ("err:colour=red", "key \"colour\" is not valid for err"),
            ("hold:nth", "expected KEY=VALUE"),
            ("storm:count=3", "needs line="),
            ("storm:line=1,nth=2", "key \"nth\" is not valid for storm"),
            ("err:count=2", "key \"count\" is not valid for err"),
        ];
        for (spec, want) in cases {
            let err = spec.parse::<FaultSpec>().unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn plan_nth_fires_once_on_the_nth_match() {
        let mut p = plan(&["err:nth=3"]);
        let outcomes: Vec<Outcome> = (0..5)
            .map(|_| p.on_request(RequestInfo::default()).outcome)
            .collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Execute,
                Outcome::Execute,
                Outcome::Err,
                Outcome::Execute,
                Outcome::Execute
            ]
        );
    }

    #[test]
    fn plan_addr_filter_counts_only_matching_requests() {
        let mut p = plan(&["hold:addr=0x50,nth=2"]);
        let at = |a| RequestInfo {
            addr: Some(a),
            line: None,
        };
        assert_eq!(p.on_request(at(0x50)).outcome, Outcome::Execute);
        assert_eq!(p.on_request(at(0x20)).outcome, Outcome::Execute);
        assert_eq!(p.on_request(at(0x50)).outcome, Outcome::Hold);
    }

    #[test]
    fn plan_delays_add_and_strongest_outcome_wins() {
        let mut p = plan(&[
            "delay:ms=5",
            "delay:us=10",
            "err",
            "abort:line=1",
            "storm:line=1",
        ]);
        let v = p.on_request(RequestInfo {
            addr: None,
            line: Some(1),
        });
        assert_eq!(v.delay, Duration::from_micros(5010));
        assert_eq!(v.outcome, Outcome::Abort);
        assert_eq!(v.fired, ["delay", "delay", "err", "abort"]);
        let v = p.on_request(RequestInfo {
            addr: None,
            line: Some(2),
        });
        assert_eq!(v.outcome, Outcome::Err);
    }
}
