//! Synthetic event streams with known ground truth, and the scorer that checks detection
//! against it. Used by the test suite, by `graywatch scenarios` (the table in the README) and
//! to produce NDJSON recordings for `graywatch replay`.
//!
//! Every stream is deterministic for its seed. Parameters (fault size, onset time, traffic)
//! vary with the seed within a stated range, so the suite does not pass by tuning to one
//! stream.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Pareto, Poisson};
use serde::Serialize;

use crate::detect::{AlertStatus, DetectionSettings, Scope, Specs, Transition};
use crate::domain::{DependencyName, Event, Label, Outcome};
use crate::replay::Replayer;
use crate::window::Limits;

/// Start of every synthetic stream (epoch ms; minute-aligned, arbitrary).
pub const EPOCH_MS: i64 = 1_800_000_000_000;
/// Duration recorded for a timed-out call.
const TIMEOUT_MS: f64 = 2_000.0;

#[derive(Debug, Clone, Copy)]
pub enum Traffic {
    Constant(f64),
    /// Sinusoidal between `low` and `high` calls/s over `period_s`.
    Diurnal {
        low: f64,
        high: f64,
        period_s: f64,
    },
    /// `high` calls/s for `on_s`, then `low` for `off_s`, repeating.
    Bursty {
        high: f64,
        low: f64,
        on_s: i64,
        off_s: i64,
    },
}

impl Traffic {
    fn rate(&self, t_s: i64) -> f64 {
        match *self {
            Traffic::Constant(r) => r,
            Traffic::Diurnal {
                low,
                high,
                period_s,
            } => {
                let phase = (t_s as f64 / period_s) * std::f64::consts::TAU;
                low + (high - low) * 0.5 * (1.0 - phase.cos())
            }
            Traffic::Bursty {
                high,
                low,
                on_s,
                off_s,
            } => {
                if t_s.rem_euclid(on_s + off_s) < on_s {
                    high
                } else {
                    low
                }
            }
        }
    }
}

/// The fault injected between onset and recovery.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `share` of calls take `factor` times longer.
    SlowTail { share: f64, factor: f64 },
    /// Errors rise to `rate`.
    Errors { rate: f64 },
    /// `rate` of calls time out.
    Timeouts { rate: f64 },
    /// Both at once ("30% of requests time out, 5% return errors").
    TimeoutsAndErrors { timeouts: f64, errors: f64 },
    /// One instance: `slow_share` of its calls `factor` times slower, plus `errors`.
    BadInstance {
        index: usize,
        slow_share: f64,
        factor: f64,
        errors: f64,
    },
    /// One zone: every call `factor` times slower.
    SlowZone { index: usize, factor: f64 },
    /// The latency distribution widens (log-normal sigma) while its median stays.
    WidenTail { sigma: f64 },
    /// Every call gets slower by `per_minute` (compounded) for each minute since onset: a
    /// slow creep that a baseline learning every healthy-looking minute would follow.
    Creep { per_minute: f64 },
    /// `share` of the calls vanish (1.0: they stop altogether).
    TrafficDrop { share: f64 },
    /// Calls multiply by `factor` (clients retrying).
    Surge { factor: f64 },
    /// One replica: each of its calls `extra_ms` slower. The body of the distribution
    /// moves, its p99 barely.
    SlowReplica { index: usize, extra_ms: f64 },
    /// One caller (a batch job with a bad key): `errors` of its calls fail, on every
    /// instance alike.
    BadSource { index: usize, errors: f64 },
    /// Fast failure: `errors` of the calls fail in `error_ms`, and the calls that succeed
    /// take `factor` times longer. Timed together, the fast errors would pull the quantiles
    /// down over the slow successes.
    FastErrors {
        errors: f64,
        error_ms: f64,
        factor: f64,
    },
}

/// Failed requests retried by their clients (see [`Scenario::retry_bursts`]).
#[derive(Debug, Clone, Copy)]
pub struct RetryBursts {
    pub every_s: i64,
    /// Retries after the first failure, inclusive range.
    pub retries: (u32, u32),
}

impl RetryBursts {
    /// Every error call of the bursts over `duration_s`, in time order: (ms from the start,
    /// instance index). Drawn from their own generator, so that the rest of the stream is
    /// the one it would be without them.
    fn calls(&self, seed: u64, duration_s: i64, instances: usize) -> Vec<(f64, usize)> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7e72_b125);
        let mut out = Vec::new();
        let mut t_ms = rng.random_range(self.every_s / 2..self.every_s * 3 / 2) as f64 * 1000.0;
        while t_ms < duration_s as f64 * 1000.0 {
            let retries = rng.random_range(self.retries.0..=self.retries.1);
            let mut at = t_ms;
            for i in 0..=retries {
                out.push((at, rng.random_range(0..instances.max(1))));
                // 100 ms, 200 ms, 400 ms, ... each with up to 50% jitter.
                at += 100.0 * f64::from(1u32 << i) * rng.random_range(1.0..1.5);
            }
            t_ms += rng.random_range(self.every_s / 2..self.every_s * 3 / 2) as f64 * 1000.0;
        }
        out.retain(|(at, _)| *at < duration_s as f64 * 1000.0);
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// A stream description.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub dependency: &'static str,
    pub duration_s: i64,
    pub traffic: Traffic,
    pub median_ms: f64,
    pub sigma: f64,
    /// Share of calls drawn from a Pareto tail instead (heavy tails), with its shape.
    pub pareto: Option<(f64, f64)>,
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub instances: usize,
    pub zones: usize,
    /// Callers: each call comes from one of them, drawn uniformly (one: every call is
    /// `checkout`'s).
    pub sources: usize,
    /// Periodic stop-the-world pauses: every `every_s` (jittered), for `pause_ms`.
    pub gc: Option<(i64, f64)>,
    /// A second dependency that appears at this second (cold start).
    pub newcomer_at_s: Option<i64>,
    /// Retried failures: about every `every_s` seconds (jittered) one request fails and is
    /// retried, each retry failing too, with exponential backoff from 100 ms.
    pub retry_bursts: Option<RetryBursts>,
    pub fault: Option<Fault>,
    pub onset_s: i64,
    pub recovery_s: i64,
    /// Detection deadline after onset.
    pub detect_within_s: i64,
}

impl Scenario {
    fn base(name: &str, description: String, rng: &mut StdRng) -> Self {
        Self {
            name: name.into(),
            description,
            dependency: "payments-api",
            duration_s: 3_600,
            traffic: Traffic::Constant(rng.random_range(60.0..150.0)),
            median_ms: rng.random_range(15.0..60.0),
            sigma: rng.random_range(0.35..0.6),
            pareto: None,
            error_rate: rng.random_range(0.0005..0.003),
            timeout_rate: rng.random_range(0.0..0.0005),
            instances: 6,
            zones: 3,
            sources: 1,
            gc: None,
            newcomer_at_s: None,
            retry_bursts: None,
            fault: None,
            onset_s: 0,
            recovery_s: 0,
            detect_within_s: 20,
        }
    }

    fn gray(name: &str, description: String, fault: Fault, rng: &mut StdRng) -> Self {
        let mut s = Self::base(name, description, rng);
        s.fault = Some(fault);
        s.onset_s = rng.random_range(720..900);
        s.recovery_s = s.onset_s + rng.random_range(240..360);
        s.duration_s = s.recovery_s + 420;
        s
    }

    pub fn is_gray(&self) -> bool {
        self.fault.is_some()
    }

    /// Where a correct detector should localize the fault.
    pub fn expected_location(&self) -> Option<Scope> {
        match self.fault? {
            Fault::BadInstance { index, .. } => Some(Scope::Instance(instance_name(index))),
            Fault::SlowZone { index, .. } => Some(Scope::Zone(zone_name(index))),
            Fault::SlowReplica { index, .. } => Some(Scope::Instance(instance_name(index))),
            Fault::BadSource { index, .. } => Some(Scope::Source(source_name(index))),
            _ => None,
        }
    }

    /// Generates the stream, calling `sink` for each event in time order.
    pub fn generate(&self, seed: u64, mut sink: impl FnMut(&Event<'_>)) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0005_eed0_f9a7);
        let dep = DependencyName::parse(self.dependency).expect("valid name");
        let newcomer = DependencyName::parse("analytics-ingest").expect("valid name");
        let instances: Vec<String> = (0..self.instances).map(instance_name).collect();
        let zones: Vec<String> = (0..self.zones).map(zone_name).collect();
        let instance_labels: Vec<Label> = instances
            .iter()
            .map(|i| Label::parse(i.as_str()).unwrap())
            .collect();
        let zone_labels: Vec<Label> = zones
            .iter()
            .map(|z| Label::parse(z.as_str()).unwrap())
            .collect();
        let sources: Vec<String> = (0..self.sources.max(1)).map(source_name).collect();
        let source_labels: Vec<Label> = sources
            .iter()
            .map(|c| Label::parse(c.as_str()).unwrap())
            .collect();
        // Callers are drawn from a generator of their own, so that a stream with several
        // callers is otherwise the one it would be with one.
        let mut source_rng = StdRng::seed_from_u64(seed ^ 0x5041_cafe);
        let source_of = |rng: &mut StdRng| match self.sources {
            0 | 1 => 0,
            n => rng.random_range(0..n),
        };
        let base = LogNormal::new(self.median_ms.ln(), self.sigma).expect("valid log-normal");
        let widened = match self.fault {
            Some(Fault::WidenTail { sigma }) => {
                Some(LogNormal::new(self.median_ms.ln(), sigma).unwrap())
            }
            _ => None,
        };
        let pareto = self
            .pareto
            .map(|(_, shape)| Pareto::new(self.median_ms * 2.0, shape).unwrap());
        let mut next_gc = self
            .gc
            .map(|(every, _)| rng.random_range(every / 2..every * 3 / 2));
        let mut gc_until_ms: f64 = -1.0;
        // (ms from the start, duration ms, outcome, instance, source, newcomer)
        let mut events: Vec<(i64, f64, Outcome, usize, usize, bool)> = Vec::new();
        let bursts = self
            .retry_bursts
            .map(|b| b.calls(seed, self.duration_s, self.instances))
            .unwrap_or_default();
        let mut bursts = bursts.into_iter().peekable();
        let mut burst_rng = StdRng::seed_from_u64(seed ^ 0x0b05_7ca1);
        for t in 0..self.duration_s {
            let in_fault = self.fault.is_some() && t >= self.onset_s && t < self.recovery_s;
            if let (Some((every, pause)), Some(at)) = (self.gc, next_gc)
                && t >= at
            {
                gc_until_ms = t as f64 * 1000.0 + pause;
                next_gc = Some(t + rng.random_range(every / 2..every * 3 / 2));
            }
            events.clear();
            let mut push_calls = |rate: f64, newcomer: bool, rng: &mut StdRng| {
                if rate <= 0.0 {
                    return;
                }
                let n = Poisson::new(rate).unwrap().sample(rng) as usize;
                for _ in 0..n {
                    let offset_ms = rng.random_range(0.0..1000.0);
                    let at_ms = t as f64 * 1000.0 + offset_ms;
                    let instance = rng.random_range(0..self.instances.max(1));
                    let source = source_of(&mut source_rng);
                    let mut ms = match (&pareto, self.pareto) {
                        (Some(p), Some((share, _))) if rng.random_bool(share) => p.sample(rng),
                        _ => match (&widened, in_fault) {
                            (Some(w), true) => w.sample(rng),
                            _ => base.sample(rng),
                        },
                    };
                    let mut outcome = if rng.random_bool(self.error_rate) {
                        Outcome::Error
                    } else if rng.random_bool(self.timeout_rate) {
                        Outcome::Timeout
                    } else {
                        Outcome::Ok
                    };
                    // A call arriving during a pause waits for its end.
                    if at_ms < gc_until_ms {
                        ms += gc_until_ms - at_ms;
                    }
                    if let (true, false, Some(Fault::Creep { per_minute })) =
                        (in_fault, newcomer, self.fault)
                    {
                        let minutes = (at_ms / 1000.0 - self.onset_s as f64) / 60.0;
                        ms *= (1.0 + per_minute).powf(minutes);
                    }
                    if in_fault && !newcomer {
                        apply_fault(
                            self.fault.unwrap(),
                            rng,
                            (instance, source),
                            self.zones,
                            &mut ms,
                            &mut outcome,
                        );
                    }
                    if outcome == Outcome::Timeout {
                        ms = TIMEOUT_MS;
                    }
                    events.push((at_ms as i64, ms, outcome, instance, source, newcomer));
                }
            };
            let scale = match (in_fault, self.fault) {
                (true, Some(Fault::TrafficDrop { share })) => 1.0 - share,
                (true, Some(Fault::Surge { factor })) => factor,
                _ => 1.0,
            };
            push_calls(self.traffic.rate(t) * scale, false, &mut rng);
            if self.newcomer_at_s.is_some_and(|s| t >= s) {
                push_calls(rng.random_range(8.0..12.0), true, &mut rng);
            }
            while let Some(&(at_ms, instance)) = bursts.peek() {
                if at_ms >= (t + 1) as f64 * 1000.0 {
                    break;
                }
                bursts.next();
                let ms = base.sample(&mut burst_rng);
                let source = source_of(&mut source_rng);
                events.push((at_ms as i64, ms, Outcome::Error, instance, source, false));
            }
            events.sort_by_key(|e| e.0);
            for &(at_ms, ms, outcome, instance, source, is_newcomer) in &events {
                let zone = instance % self.zones.max(1);
                let e = Event {
                    dependency: if is_newcomer {
                        newcomer.clone()
                    } else {
                        dep.clone()
                    },
                    duration_us: (ms * 1000.0).round() as u64,
                    outcome,
                    ts_ms: EPOCH_MS + at_ms,
                    instance: (self.instances > 0).then(|| instance_labels[instance].clone()),
                    zone: (self.zones > 0).then(|| zone_labels[zone].clone()),
                    source: Some(source_labels[source].clone()),
                };
                sink(&e);
            }
        }
    }
}

/// Applies the fault to one call of `instance` from `source`.
fn apply_fault(
    f: Fault,
    rng: &mut StdRng,
    (instance, source): (usize, usize),
    zones: usize,
    ms: &mut f64,
    outcome: &mut Outcome,
) {
    match f {
        Fault::SlowTail { share, factor } => {
            if rng.random_bool(share) {
                *ms *= factor;
            }
        }
        Fault::Errors { rate } => {
            if rng.random_bool(rate) {
                *outcome = Outcome::Error;
            }
        }
        Fault::Timeouts { rate } => {
            if rng.random_bool(rate) {
                *outcome = Outcome::Timeout;
            }
        }
        Fault::TimeoutsAndErrors { timeouts, errors } => {
            let x: f64 = rng.random();
            if x < timeouts {
                *outcome = Outcome::Timeout;
            } else if x < timeouts + errors {
                *outcome = Outcome::Error;
            }
        }
        Fault::BadInstance {
            index,
            slow_share,
            factor,
            errors,
        } => {
            if instance == index {
                if rng.random_bool(slow_share) {
                    *ms *= factor;
                }
                if rng.random_bool(errors) {
                    *outcome = Outcome::Error;
                }
            }
        }
        Fault::SlowZone { index, factor } => {
            if instance % zones.max(1) == index {
                *ms *= factor;
            }
        }
        Fault::SlowReplica { index, extra_ms } => {
            if instance == index {
                *ms += extra_ms;
            }
        }
        Fault::BadSource { index, errors } => {
            if source == index && rng.random_bool(errors) {
                *outcome = Outcome::Error;
            }
        }
        Fault::FastErrors {
            errors,
            error_ms,
            factor,
        } => {
            if rng.random_bool(errors) {
                *outcome = Outcome::Error;
                *ms = error_ms;
            } else {
                *ms *= factor;
            }
        }
        Fault::WidenTail { .. }
        | Fault::Creep { .. }
        | Fault::TrafficDrop { .. }
        | Fault::Surge { .. } => {}
    }
}

pub fn instance_name(i: usize) -> String {
    format!("10.0.1.{}", 10 + i)
}

pub fn zone_name(i: usize) -> String {
    format!("eu-west-1{}", (b'a' + i as u8) as char)
}

/// The caller `i`: `checkout` first (the one caller of most scenarios), then other services
/// and jobs.
pub fn source_name(i: usize) -> String {
    const NAMES: [&str; 6] = [
        "checkout",
        "search",
        "billing-batch",
        "mobile-bff",
        "nightly-export",
        "fraud-scoring",
    ];
    NAMES
        .get(i)
        .map_or_else(|| format!("caller-{i}"), |n| n.to_string())
}

/// The suite: every gray and healthy scenario, parameterised by `seed`.
pub fn suite(seed: u64) -> Vec<Scenario> {
    let mut rng = StdRng::seed_from_u64(seed);
    let r = &mut rng;
    let mut out = Vec::new();

    let share = r.random_range(0.03..0.08);
    let factor = r.random_range(6.0..15.0);
    out.push(Scenario::gray(
        "slow-tail",
        format!("{:.0}% of calls {factor:.0}x slower", share * 100.0),
        Fault::SlowTail { share, factor },
        r,
    ));

    let rate = r.random_range(0.012..0.03);
    let mut s = Scenario::gray(
        "error-rise",
        format!("errors rise to {:.1}% (below a 5% threshold)", rate * 100.0),
        Fault::Errors { rate },
        r,
    );
    s.error_rate = r.random_range(0.0005..0.002);
    out.push(s);

    let mut s = Scenario::gray(
        "bad-instance",
        String::new(),
        Fault::BadInstance {
            index: 0,
            slow_share: 0.0,
            factor: 1.0,
            errors: 0.0,
        },
        r,
    );
    s.instances = r.random_range(8..13);
    let index = r.random_range(0..s.instances);
    let slow_share = r.random_range(0.2..0.4);
    s.fault = Some(Fault::BadInstance {
        index,
        slow_share,
        factor: r.random_range(5.0..10.0),
        errors: 0.02,
    });
    s.description = format!(
        "1 of {} instances: {:.0}% of its calls slow, 2% errors",
        s.instances,
        slow_share * 100.0
    );
    s.zones = 3;
    out.push(s);

    let factor = r.random_range(2.5..4.0);
    let mut s = Scenario::gray(
        "slow-zone",
        format!("one of 3 zones {factor:.1}x slower"),
        Fault::SlowZone { index: 0, factor },
        r,
    );
    let index = r.random_range(0..3);
    s.fault = Some(Fault::SlowZone { index, factor });
    s.instances = 9;
    out.push(s);

    let rate = r.random_range(0.02..0.05);
    out.push(Scenario::gray(
        "timeouts",
        format!("{:.1}% of calls time out", rate * 100.0),
        Fault::Timeouts { rate },
        r,
    ));

    out.push(Scenario::gray(
        "timeouts-and-errors",
        "30% of requests time out, 5% return errors".into(),
        Fault::TimeoutsAndErrors {
            timeouts: 0.30,
            errors: 0.05,
        },
        r,
    ));

    let share = r.random_range(0.08..0.15);
    let mut s = Scenario::gray(
        "low-traffic",
        format!("~2 calls/s; {:.0}% of calls 10x slower", share * 100.0),
        Fault::SlowTail {
            share,
            factor: 10.0,
        },
        r,
    );
    s.traffic = Traffic::Constant(r.random_range(1.8..2.4));
    s.detect_within_s = 180;
    s.instances = 2;
    out.push(s);

    let sigma = r.random_range(0.95..1.2);
    let mut s = Scenario::gray(
        "widening-tail",
        format!("tail widens (sigma 0.4 -> {sigma:.2}), median unchanged"),
        Fault::WidenTail { sigma },
        r,
    );
    s.sigma = 0.4;
    out.push(s);

    // Healthy streams: an hour each, nothing may fire.
    let mut s = Scenario::base("heavy-tail", "log-normal body with a Pareto tail".into(), r);
    s.sigma = 0.9;
    s.pareto = Some((0.03, r.random_range(1.2..1.8)));
    out.push(s);

    let mut s = Scenario::base(
        "diurnal",
        "traffic swings 10x in a compressed day".into(),
        r,
    );
    s.traffic = Traffic::Diurnal {
        low: 20.0,
        high: 200.0,
        period_s: 1_800.0,
    };
    out.push(s);

    let mut s = Scenario::base(
        "bursty",
        "bursts of 300 calls/s between lulls of 20".into(),
        r,
    );
    s.traffic = Traffic::Bursty {
        high: 300.0,
        low: 20.0,
        on_s: 10,
        off_s: 20,
    };
    out.push(s);

    let mut s = Scenario::base("gc-pauses", "1-2 s pauses every minute or so".into(), r);
    s.gc = Some((r.random_range(45..90), r.random_range(1_000.0..2_000.0)));
    out.push(s);

    let mut s = Scenario::base("sparse", "under 1 call/s with occasional errors".into(), r);
    s.traffic = Traffic::Constant(r.random_range(0.3..0.9));
    s.error_rate = 0.02;
    s.instances = 2;
    out.push(s);

    let mut s = Scenario::base(
        "cold-start",
        "a new dependency appears mid-stream".into(),
        r,
    );
    s.newcomer_at_s = Some(r.random_range(1_200..2_400));
    out.push(s);

    let mut s = Scenario::base(
        "many-instances",
        "40 identical instances, 3 callers".into(),
        r,
    );
    s.instances = 40;
    s.sources = 3;
    s.traffic = Traffic::Constant(r.random_range(200.0..300.0));
    out.push(s);

    // Added after the others, so that their streams stay as they were for every seed.
    let per_minute = r.random_range(0.02..0.035);
    let mut s = Scenario::gray(
        "slow-creep",
        format!(
            "every call {:.1}% slower each minute for 20 minutes",
            per_minute * 100.0
        ),
        Fault::Creep { per_minute },
        r,
    );
    s.recovery_s = s.onset_s + 1_200;
    s.duration_s = s.recovery_s + 420;
    // The tail must grow to 1.5x the baseline p99 first: ln 1.5 / ln 1.035 is 12 minutes.
    s.detect_within_s = 1_200;
    out.push(s);

    // A dependency going down: a client's breaker would trip within seconds, so must ours.
    let rate = r.random_range(0.6..1.0);
    let mut s = Scenario::gray(
        "hard-down",
        format!("{:.0}% of calls fail at once", rate * 100.0),
        Fault::Errors { rate },
        r,
    );
    s.traffic = Traffic::Constant(r.random_range(20.0..200.0));
    s.detect_within_s = 3;
    out.push(s);

    // About 1 call/s without errors, but now and then one request fails and is retried 5-6
    // times within seconds: 6-7 errors that are one failure, not a rising error rate.
    let mut s = Scenario::base(
        "retry-burst",
        "~1 call/s, error-free but for a request retried 5-6 times every few minutes".into(),
        r,
    );
    s.traffic = Traffic::Constant(r.random_range(0.8..1.5));
    s.error_rate = 0.0;
    s.timeout_rate = 0.0;
    s.instances = 2;
    s.retry_bursts = Some(RetryBursts {
        every_s: r.random_range(150..400),
        retries: (5, 6),
    });
    out.push(s);

    // Calls drop by 80-95%, or stop altogether: a broken service discovery, calls failing
    // before they are made. Judged on the last minute: about a minute to detect.
    let share = if r.random_bool(0.3) {
        1.0
    } else {
        r.random_range(0.8..0.95)
    };
    let mut s = Scenario::gray(
        "traffic-drop",
        if share >= 1.0 {
            "calls stop".to_string()
        } else {
            format!("calls drop by {:.0}%", share * 100.0)
        },
        Fault::TrafficDrop { share },
        r,
    );
    s.detect_within_s = 90;
    out.push(s);

    // A retry storm: calls multiply while nothing else changes.
    let factor = r.random_range(3.0..5.0);
    let mut s = Scenario::gray(
        "retry-storm",
        format!("calls surge {factor:.1}x (clients retrying)"),
        Fault::Surge { factor },
        r,
    );
    s.detect_within_s = 90;
    out.push(s);

    // One slow replica of two: half the calls 30-40 ms slower. The median moves a lot, the
    // p99 barely: only the body's shares show it.
    let extra_ms = r.random_range(30.0..40.0);
    let mut s = Scenario::gray(
        "slow-replica",
        format!("1 of 2 replicas {extra_ms:.0} ms slower (about half the calls)"),
        Fault::SlowReplica { index: 0, extra_ms },
        r,
    );
    s.instances = 2;
    s.zones = 1;
    s.median_ms = r.random_range(15.0..40.0);
    s.fault = Some(Fault::SlowReplica {
        index: r.random_range(0..2),
        extra_ms,
    });
    out.push(s);

    // The night trough of a fleet: a call every 3-5 s over four instances in two zones, a few
    // independent errors, and a request failing and retried 5-6 times every few minutes (each
    // retry on a random instance). A zone or instance then sees a handful of calls a minute,
    // most of them one request's retries: that is not a hard failure of the zone, and two
    // such requests in one minute are not a rising error rate.
    let mut s = Scenario::base(
        "quiet-trough",
        "~0.25 calls/s over 4 instances, a request retried 5-6 times every few minutes".into(),
        r,
    );
    s.traffic = Traffic::Constant(r.random_range(0.2..0.3));
    s.error_rate = 0.003;
    s.instances = 4;
    s.zones = 2;
    s.retry_bursts = Some(RetryBursts {
        every_s: r.random_range(120..240),
        retries: (5, 6),
    });
    out.push(s);

    // A bad caller: one of 3-5 callers (a batch job with a bad key) gets 8-16% errors on
    // every instance. The alert must name the caller, not an instance or the dependency.
    let sources = r.random_range(3..=5);
    let errors = r.random_range(0.08..0.16);
    let mut s = Scenario::gray(
        "bad-caller",
        format!(
            "1 of {sources} callers: {:.0}% of its calls fail",
            errors * 100.0
        ),
        Fault::BadSource { index: 0, errors },
        r,
    );
    s.sources = sources;
    s.fault = Some(Fault::BadSource {
        index: r.random_range(0..sources),
        errors,
    });
    out.push(s);

    // Fast failure: 30-35% of calls fail in 2 ms while the calls that succeed get 1.25-1.3x
    // slower, a shift of half a standard deviation of their log-latency (the spread is
    // drawn to make it so). Timed together with the successes, the errors dilute every
    // latency share below its floor and only `error_rate` fires; errors and timeouts are
    // not timed, so the successes' slowdown shows too. (A 3x slowdown shows either way.)
    let errors = r.random_range(0.30..0.35);
    let factor: f64 = r.random_range(1.25..1.3);
    let shift = r.random_range(0.5..0.56);
    let mut s = Scenario::gray(
        "fast-failure",
        format!(
            "{:.0}% of calls fail in 2 ms, the rest {factor:.2}x slower",
            errors * 100.0
        ),
        Fault::FastErrors {
            errors,
            error_ms: 2.0,
            factor,
        },
        r,
    );
    s.sigma = factor.ln() / shift;
    out.push(s);

    out
}

/// How detection did on one stream.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome_ {
    pub scenario: String,
    pub seed: u64,
    pub gray: bool,
    pub description: String,
    pub events: u64,
    /// Seconds from onset to the first alert of the fault (gray streams).
    pub time_to_detect_s: Option<f64>,
    pub detected_in_time: bool,
    /// Whether an alert named the expected instance, zone or source (`None` when not
    /// applicable).
    pub localized: Option<bool>,
    /// Every alert resolved by the end of the stream.
    pub resolved: bool,
    /// Alerts that fired outside the fault (before onset, after recovery + settle time, on a
    /// healthy stream, or naming the wrong instance, zone or source).
    pub false_alerts: usize,
    /// Alerts that fired for the fault itself: one incident should page once.
    pub fault_alerts: usize,
    pub alerts: Vec<String>,
}

pub type ScenarioResult = Outcome_;

/// Runs one scenario through the replayer and scores it.
pub fn run(s: &Scenario, seed: u64, settings: &DetectionSettings, specs: &Specs) -> ScenarioResult {
    run_with_transitions(s, seed, settings, specs).0
}

/// [`run`], also returning the alert transitions it scored (to check which detectors fired).
pub fn run_with_transitions(
    s: &Scenario,
    seed: u64,
    settings: &DetectionSettings,
    specs: &Specs,
) -> (ScenarioResult, Vec<Transition>) {
    let mut r = Replayer::new(settings.clone(), specs.clone(), Limits::default());
    let mut transitions: Vec<Transition> = Vec::new();
    let mut events = 0u64;
    s.generate(seed, |e| {
        events += 1;
        let _ = r.push(e, &mut transitions);
    });
    r.advance_to(EPOCH_MS + s.duration_s * 1000, &mut transitions);
    (score(s, seed, events, &transitions), transitions)
}

fn score(s: &Scenario, seed: u64, events: u64, transitions: &[Transition]) -> ScenarioResult {
    let onset = EPOCH_MS + s.onset_s * 1000;
    // Alerts may legitimately start until the effect has left the longest window tested.
    let settle = EPOCH_MS + s.recovery_s * 1000 + 5 * 60_000;
    let expected = s.expected_location();
    let mut first_detect: Option<i64> = None;
    let mut localized = expected.as_ref().map(|_| false);
    let mut false_alerts = 0;
    let mut fault_alerts = 0;
    let mut open = std::collections::HashSet::new();
    let mut alerts = Vec::new();
    for t in transitions {
        let fp = t.fingerprint();
        match t.status {
            AlertStatus::Firing => {
                open.insert(fp.clone());
                alerts.push(format!("{} {}", (t.at_ms - EPOCH_MS) / 1000, fp));
            }
            AlertStatus::Updated => continue,
            AlertStatus::Resolved => {
                open.remove(&fp);
                continue;
            }
        }
        let in_fault =
            s.is_gray() && t.at_ms >= onset && t.at_ms <= settle && t.dependency == s.dependency;
        let scope = t.scope();
        let location_ok =
            scope == Scope::Dependency || expected.as_ref().is_none_or(|e| *e == scope);
        if in_fault && location_ok {
            fault_alerts += 1;
            first_detect.get_or_insert(t.at_ms);
            if expected.is_some() && scope != Scope::Dependency {
                localized = Some(true);
            }
        } else {
            false_alerts += 1;
        }
    }
    let ttd = first_detect.map(|t| (t - onset) as f64 / 1000.0);
    ScenarioResult {
        scenario: s.name.clone(),
        seed,
        gray: s.is_gray(),
        description: s.description.clone(),
        events,
        time_to_detect_s: ttd,
        detected_in_time: ttd.is_some_and(|t| t <= s.detect_within_s as f64),
        localized,
        resolved: open.is_empty(),
        false_alerts,
        fault_alerts,
        alerts,
    }
}

/// A fault is one incident: it may page once.
pub const MAX_ALERTS_PER_FAULT: usize = 1;

/// Whether a result meets the suite's targets.
pub fn passes(r: &ScenarioResult) -> bool {
    let detection = !r.gray || r.detected_in_time;
    detection
        && r.localized != Some(false)
        && r.resolved
        && r.false_alerts == 0
        && r.fault_alerts <= MAX_ALERTS_PER_FAULT
}

/// Runs the whole suite for each seed, on up to `threads` threads.
pub fn run_suite(
    seeds: &[u64],
    settings: &DetectionSettings,
    specs: &Specs,
    threads: usize,
) -> Vec<ScenarioResult> {
    let jobs: Vec<(Scenario, u64)> = seeds
        .iter()
        .flat_map(|&seed| suite(seed).into_iter().map(move |s| (s, seed)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((s, seed)) = jobs.get(i) else { break };
                    let r = run(s, *seed, settings, specs);
                    results
                        .lock()
                        .expect("no panics while holding")
                        .push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("threads joined");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The README table: one row per scenario, aggregated over seeds.
pub fn markdown_table(results: &[ScenarioResult]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for r in results {
        if !names.contains(&r.scenario.as_str()) {
            names.push(&r.scenario);
        }
    }
    let mut out = String::from(
        "| scenario | kind | detected in time | time to detect (s) | localized | resolved | alerts per fault (max) | false alerts |\n|---|---|---|---|---|---|---|---|\n",
    );
    for name in names {
        let rs: Vec<&ScenarioResult> = results.iter().filter(|r| r.scenario == name).collect();
        let n = rs.len();
        let gray = rs[0].gray;
        let detected = rs.iter().filter(|r| r.detected_in_time).count();
        let ttd: Vec<f64> = rs.iter().filter_map(|r| r.time_to_detect_s).collect();
        let ttd = if ttd.is_empty() {
            "-".to_string()
        } else {
            let min = ttd.iter().cloned().fold(f64::MAX, f64::min);
            let max = ttd.iter().cloned().fold(f64::MIN, f64::max);
            format!("{min:.0}-{max:.0}")
        };
        let localized = match rs.iter().filter_map(|r| r.localized).collect::<Vec<_>>() {
            v if v.is_empty() => "n/a".to_string(),
            v => format!("{}/{}", v.iter().filter(|l| **l).count(), v.len()),
        };
        let resolved = rs.iter().filter(|r| r.resolved).count();
        let false_alerts: usize = rs.iter().map(|r| r.false_alerts).sum();
        let per_fault = rs.iter().map(|r| r.fault_alerts).max().unwrap_or(0);
        out.push_str(&format!(
            "| {name} | {} | {} | {ttd} | {localized} | {resolved}/{n} | {per_fault} | {false_alerts} |\n",
            if gray { "gray" } else { "healthy (1 h)" },
            if gray {
                format!("{detected}/{n}")
            } else {
                "n/a".into()
            },
        ));
    }
    out
}
