//! `graywatch replay`: the window store and detectors run on the event time of a recording.
//!
//! [`Replayer`] is the engine room, shared with the scenario suite: it records events, and
//! every time event time crosses a second it evaluates the detectors at that second, exactly
//! as the daemon does once a second on the wall clock.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::actions::breaker::{BreakerBoard, BreakerChange, BreakerSettings};
use crate::detect::{AlertStatus, DetectionSettings, Engine, Specs, Transition};
use crate::domain::Event;
use crate::ingest::{Element, Validation, fast};
use crate::window::{Limits, RecordError, Window, WindowStore};

/// Idle event time evaluated second by second before jumping ahead (windows and pending
/// alerts have all settled by then).
const MAX_IDLE_EVAL_MS: i64 = 2 * 3_600_000;
/// Breaker changes kept for a caller that does not take them (the scenario suite).
const MAX_UNREAD_BREAKER_CHANGES: usize = 100_000;

pub struct Replayer {
    store: WindowStore,
    engine: Engine,
    /// Breakers driven by every evaluation, as the daemon's are.
    board: BreakerBoard,
    /// Breaker changes not yet taken, with the evaluation time that made them (see
    /// [`Replayer::take_breaker_changes`]).
    breaker_changes: Vec<(i64, BreakerChange)>,
    step_ms: i64,
    now_ms: i64,
    next_eval_ms: Option<i64>,
    last_housekeeping_ms: i64,
    /// What each evaluation cost, in the thread's CPU time.
    ticks: TickTimes,
}

/// How much CPU the evaluations of a replay took: their distribution and the slowest ones
/// with their event time, to find which seconds cost most (a minute's end, a 5-minute one)
/// on a recording, without a live daemon. Bounded whatever the recording's length.
#[derive(Debug, Clone)]
pub struct TickTimes {
    /// Per-tick CPU time in microseconds.
    cpu_us: hdrhistogram::Histogram<u64>,
    total: Duration,
    /// The slowest ticks, slowest first: (CPU time, event time).
    slowest: Vec<(Duration, i64)>,
}

/// Slowest ticks a [`TickTimes`] names.
const SLOWEST_KEPT: usize = 5;

impl Default for TickTimes {
    fn default() -> Self {
        Self {
            cpu_us: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("static bounds"),
            total: Duration::ZERO,
            slowest: Vec::with_capacity(SLOWEST_KEPT + 1),
        }
    }
}

impl TickTimes {
    fn add(&mut self, cpu: Duration, at_ms: i64) {
        self.cpu_us
            .saturating_record((cpu.as_micros() as u64).max(1));
        self.total += cpu;
        let at = self.slowest.partition_point(|&(d, _)| d >= cpu);
        if at < SLOWEST_KEPT {
            self.slowest.insert(at, (cpu, at_ms));
            self.slowest.truncate(SLOWEST_KEPT);
        }
    }

    /// Ticks timed.
    pub fn count(&self) -> u64 {
        self.cpu_us.len()
    }

    /// CPU time of all ticks.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// The CPU time at quantile `q` of the ticks (within 1%).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_micros(self.cpu_us.value_at_quantile(q))
    }

    /// The slowest ticks, slowest first, with their event time.
    pub fn slowest(&self) -> &[(Duration, i64)] {
        &self.slowest
    }

    /// One line for the replay's summary.
    pub fn describe(&self) -> String {
        if self.count() == 0 {
            return "no evaluation".into();
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let slowest: Vec<String> = self
            .slowest
            .iter()
            .map(|&(d, at)| format!("{:.1} ms at {}", ms(d), crate::time::to_rfc3339(at)))
            .collect();
        format!(
            "{} evaluations took {:.2} s of CPU: per evaluation mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; slowest {}",
            self.count(),
            self.total.as_secs_f64(),
            ms(self.total) / self.count() as f64,
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
            slowest.join(", ")
        )
    }
}

impl Replayer {
    pub fn new(settings: DetectionSettings, specs: Specs, limits: Limits) -> Self {
        let step_ms = settings.evaluate_every.as_millis().max(1) as i64;
        Self {
            store: WindowStore::new(limits),
            engine: Engine::new(settings, specs),
            board: BreakerBoard::new(BreakerSettings::default()),
            breaker_changes: Vec::new(),
            step_ms,
            now_ms: i64::MIN,
            next_eval_ms: None,
            last_housekeeping_ms: i64::MIN,
            ticks: TickTimes::default(),
        }
    }

    pub fn store(&self) -> &WindowStore {
        &self.store
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Uses these breaker settings (the `[breakers]` section) instead of the defaults.
    pub fn with_breakers(mut self, settings: BreakerSettings) -> Self {
        self.board = BreakerBoard::new(settings);
        self
    }

    /// Breaker changes since the last call with their evaluation time, in order.
    pub fn take_breaker_changes(&mut self) -> Vec<(i64, BreakerChange)> {
        std::mem::take(&mut self.breaker_changes)
    }

    /// Evaluates every step boundary up to and including `t_ms`.
    pub fn advance_to(&mut self, t_ms: i64, out: &mut Vec<Transition>) {
        let Some(mut next) = self.next_eval_ms else {
            self.next_eval_ms = Some(t_ms - t_ms.rem_euclid(self.step_ms) + self.step_ms);
            return;
        };
        if t_ms - next > MAX_IDLE_EVAL_MS {
            let jump_to = t_ms - MAX_IDLE_EVAL_MS;
            next = jump_to - jump_to.rem_euclid(self.step_ms);
        }
        while next <= t_ms {
            self.now_ms = self.now_ms.max(next);
            let cpu_before = crate::metrics::thread_cpu_time();
            let tick =
                crate::tick::evaluate(&self.store, &mut self.engine, || &mut self.board, next);
            if let Some(cpu) = crate::metrics::thread_cpu_since(cpu_before) {
                self.ticks.add(cpu, next);
            }
            out.extend(tick.transitions);
            // Bounded by what a caller that never takes them can hold: a day of changes of
            // a busy recording is small, but keep only the latest when nobody reads them.
            if self.breaker_changes.len() < MAX_UNREAD_BREAKER_CHANGES {
                self.breaker_changes
                    .extend(tick.breakers.into_iter().map(|c| (next, c)));
            }
            if next.saturating_sub(self.last_housekeeping_ms) >= 60_000 {
                // What the daemon's background task does: bound memory and drop idle series.
                self.last_housekeeping_ms = next;
                self.store.discard_rollups(next);
                self.store.advance_all(next);
                self.engine.forget_missing(&self.store);
            }
            next += self.step_ms;
        }
        self.next_eval_ms = Some(next);
    }

    /// Records one event after evaluating every step boundary before its time.
    pub fn push(
        &mut self,
        event: &Event<'_>,
        out: &mut Vec<Transition>,
    ) -> Result<(), RecordError> {
        self.admit(event.ts_ms, out);
        self.store.record(event, self.now_ms)
    }

    /// Evaluates every step boundary before `ts_ms` and moves the clock to it: what
    /// [`Replayer::push`] does before it records an event at that time.
    fn admit(&mut self, ts_ms: i64, out: &mut Vec<Transition>) {
        self.advance_to(ts_ms - 1, out);
        self.now_ms = self.now_ms.max(ts_ms);
    }

    /// Whether an event at `ts_ms` may join `batch` (see [`Batch`]): its admission evaluates
    /// nothing, and leaves the clock in the batch's second.
    fn joins(&self, batch: &Batch<'_>, ts_ms: i64) -> bool {
        // `advance_to(ts_ms - 1)` evaluates every boundary at or before `ts_ms - 1`.
        let evaluates = self.next_eval_ms.is_some_and(|next| ts_ms > next);
        !evaluates && self.now_ms.max(ts_ms).div_euclid(1000) == batch.second
    }

    /// Whether an event at `ts_ms` is recorded on its own, at the clock its admission leaves:
    /// one within a second of being too old to record, which a later clock in its second
    /// (the batch's) could refuse.
    fn alone(&self, ts_ms: i64) -> bool {
        ts_ms < self.now_ms.max(ts_ms) - Window::LONGEST_MS + 1000
    }

    /// Records the events admitted into `batch` and empties it; the refused ones are returned
    /// with their line numbers, in line order.
    fn record_batch(&mut self, batch: &mut Batch<'_>) -> Vec<(u64, RecordError)> {
        let refused = self.store.record_batch(&batch.events, self.now_ms);
        let refused = refused
            .into_iter()
            .map(|(i, e)| (batch.lines[i], e))
            .collect();
        batch.events.clear();
        batch.lines.clear();
        refused
    }
}

/// Events admitted but not yet recorded: a run of events that evaluates nothing in between
/// and keeps the clock in one second, recorded together as the daemon records a request's
/// batch (see [`WindowStore::record_batch`]): each shard of the store is locked once per
/// batch instead of once per event, and a dependency's events are recorded one after the
/// other. Each dependency's events keep their order, the node's limits refuse the same
/// events, and a series depends on the clock only through its second (an event at the edge
/// of being too old is recorded alone, see [`Replayer::alone`]), so the windows and every
/// evaluation are those of recording one event at a time.
struct Batch<'a> {
    events: Vec<Event<'a>>,
    /// The input line of each event.
    lines: Vec<u64>,
    /// The second of the clock every event of the batch was admitted at.
    second: i64,
}

impl Batch<'_> {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            lines: Vec::new(),
            second: i64::MIN,
        }
    }
}

/// What a replay run did, for the summary on stderr.
#[derive(Debug, Default, Clone)]
pub struct ReplaySummary {
    pub lines: u64,
    pub events: u64,
    pub malformed: u64,
    pub refused: u64,
    pub fired: u64,
    pub updated: u64,
    pub resolved: u64,
    pub breaker_changes: u64,
    pub first_ts_ms: Option<i64>,
    pub last_ts_ms: Option<i64>,
    pub elapsed_s: f64,
    /// What the evaluations cost (see [`TickTimes`]).
    pub ticks: TickTimes,
}

/// One transition as the replay contract prints it.
pub fn transition_json(t: &Transition) -> serde_json::Value {
    let mut v = json!({
        "at": crate::time::to_rfc3339(t.at_ms),
        "status": t.status.as_str(),
        "dependency": t.dependency,
        "detector": t.detector.as_str(),
        "detectors": t.detectors.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        "severity": t.severity.as_str(),
        "summary": t.summary,
        "evidence": t.evidence,
        "started_at": crate::time::to_rfc3339(t.started_ms),
    });
    if let Some(i) = &t.instance {
        v["instance"] = json!(i);
    }
    if let Some(z) = &t.zone {
        v["zone"] = json!(z);
    }
    if let Some(c) = &t.source {
        v["source"] = json!(c);
    }
    if let Some(r) = t.resolved_ms {
        v["resolved_at"] = json!(crate::time::to_rfc3339(r));
    }
    v
}

/// Replays NDJSON events from `input`, writing one JSON line per alert transition to `out`
/// and one line per malformed or refused input line to `diag`. Malformed lines are skipped
/// (reported with their line number); the run goes on.
pub fn replay(
    input: impl BufRead,
    out: &mut impl Write,
    diag: &mut impl Write,
    settings: DetectionSettings,
    specs: Specs,
    limits: Limits,
) -> anyhow::Result<ReplaySummary> {
    replay_with(input, out, diag, settings, specs, limits, None)
}

/// [`replay`], also printing a JSON line per breaker change when `breakers` gives the
/// breaker settings (`graywatch replay --breakers`).
pub fn replay_with(
    mut input: impl BufRead,
    out: &mut impl Write,
    diag: &mut impl Write,
    settings: DetectionSettings,
    specs: Specs,
    limits: Limits,
    breakers: Option<BreakerSettings>,
) -> anyhow::Result<ReplaySummary> {
    let started = Instant::now();
    let print_breakers = breakers.is_some();
    let mut run = Run {
        r: Replayer::new(settings, specs, limits).with_breakers(breakers.unwrap_or_default()),
        summary: ReplaySummary::default(),
        transitions: Vec::new(),
        validation: Validation::replay(),
        print_breakers,
        out,
        diag,
    };
    // Whole lines are read where they lie in the reader's buffer, and their events recorded
    // before the buffer moves on; only a line that runs past its end (or the last one,
    // without a newline) is gathered into `partial` first.
    let mut partial = Vec::with_capacity(512);
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if available.is_empty() {
            break;
        }
        let mut batch = Batch::new();
        let mut used = 0;
        for end in memchr::memchr_iter(b'\n', available) {
            run.line(&available[used..=end], &mut batch)?;
            used = end + 1;
        }
        run.flush(&mut batch)?;
        if used > 0 {
            input.consume(used);
            continue;
        }
        partial.clear();
        input.read_until(b'\n', &mut partial)?;
        let mut batch = Batch::new();
        run.line(&partial, &mut batch)?;
        run.flush(&mut batch)?;
    }
    let Run {
        mut r,
        mut summary,
        mut transitions,
        out,
        ..
    } = run;
    if let Some(last) = summary.last_ts_ms {
        r.advance_to(last - last.rem_euclid(1000) + 1000, &mut transitions);
        emit(&mut transitions, out, &mut summary)?;
        emit_breakers(&mut r, print_breakers, out, &mut summary)?;
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    summary.ticks = std::mem::take(&mut r.ticks);
    Ok(summary)
}

/// A replay in progress: the replayer and what the run has printed and counted.
struct Run<'w, O, D> {
    r: Replayer,
    summary: ReplaySummary,
    transitions: Vec<Transition>,
    validation: Validation,
    print_breakers: bool,
    out: &'w mut O,
    diag: &'w mut D,
}

impl<O: Write, D: Write> Run<'_, O, D> {
    /// Parses one line and admits its event into `batch`, recording the batch first when the
    /// event cannot join it (see [`Batch`]).
    fn line<'a>(&mut self, buf: &'a [u8], batch: &mut Batch<'a>) -> anyhow::Result<()> {
        self.summary.lines += 1;
        let line_no = self.summary.lines;
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        // Flat lines take the fast scanner; anything it declines gets serde and its errors.
        let event = match fast::json_line(buf, &self.validation) {
            Some(event) => event,
            None => match serde_json::from_slice::<Element>(buf) {
                Ok(Element::Event(raw)) => self.validation.validate(raw),
                Ok(Element::NotAnObject(kind)) => {
                    Err(format!("event must be a JSON object, got {kind}"))
                }
                Err(e) => Err(format!("invalid JSON: {e}")),
            },
        };
        let event = match event {
            Ok(e) => e,
            Err(error) => {
                // Reported in line order, after the refusals of the events before it.
                self.flush(batch)?;
                self.summary.malformed += 1;
                writeln!(self.diag, "line {line_no}: skipped: {error}")?;
                return Ok(());
            }
        };
        let summary = &mut self.summary;
        summary.first_ts_ms.get_or_insert(event.ts_ms);
        summary.last_ts_ms = Some(
            summary
                .last_ts_ms
                .map_or(event.ts_ms, |t| t.max(event.ts_ms)),
        );
        let alone = self.r.alone(event.ts_ms);
        if alone || !self.r.joins(batch, event.ts_ms) {
            self.flush(batch)?;
        }
        // Evaluates only when the event cannot join the batch (recorded just above).
        self.r.admit(event.ts_ms, &mut self.transitions);
        batch.second = self.r.now_ms.div_euclid(1000);
        emit(&mut self.transitions, self.out, &mut self.summary)?;
        emit_breakers(
            &mut self.r,
            self.print_breakers,
            self.out,
            &mut self.summary,
        )?;
        batch.events.push(event);
        batch.lines.push(line_no);
        if alone {
            self.flush(batch)?;
        }
        Ok(())
    }

    /// Records `batch` and reports its refused events.
    fn flush(&mut self, batch: &mut Batch<'_>) -> std::io::Result<()> {
        let admitted = batch.events.len() as u64;
        let refused = self.r.record_batch(batch);
        self.summary.events += admitted - refused.len() as u64;
        self.summary.refused += refused.len() as u64;
        for (line_no, error) in refused {
            writeln!(self.diag, "line {line_no}: refused: {error}")?;
        }
        Ok(())
    }
}

/// Counts the breaker changes since the last call and, when asked to, prints each as
/// `{"at": ..., "breaker": <view after>, "before": <view before or null>}`.
fn emit_breakers(
    r: &mut Replayer,
    print: bool,
    out: &mut impl Write,
    summary: &mut ReplaySummary,
) -> std::io::Result<()> {
    for (at_ms, c) in r.take_breaker_changes() {
        summary.breaker_changes += 1;
        if !print {
            continue;
        }
        let line = json!({
            "at": crate::time::to_rfc3339(at_ms),
            "breaker": c.after.to_json(),
            "before": c.before.as_ref().map(|b| b.to_json()),
        });
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn emit(
    ts: &mut Vec<Transition>,
    out: &mut impl Write,
    summary: &mut ReplaySummary,
) -> std::io::Result<()> {
    for t in ts.drain(..) {
        match t.status {
            AlertStatus::Firing => summary.fired += 1,
            AlertStatus::Updated => summary.updated += 1,
            AlertStatus::Resolved => summary.resolved += 1,
        }
        serde_json::to_writer(&mut *out, &transition_json(&t))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// Runs `input` through `replay` with a reader buffer of `capacity` bytes.
    fn run(input: &[u8], capacity: usize) -> (String, String, u64, u64, u64) {
        let (out, diag, s) = run_with(input, capacity, Limits::default());
        (out, diag, s.lines, s.events, s.malformed)
    }

    /// [`run`] under `limits`, with the whole summary.
    fn run_with(input: &[u8], capacity: usize, limits: Limits) -> (String, String, ReplaySummary) {
        let (mut out, mut diag) = (Vec::new(), Vec::new());
        let s = replay(
            BufReader::with_capacity(capacity, input),
            &mut out,
            &mut diag,
            DetectionSettings::default(),
            Specs::default(),
            limits,
        )
        .expect("replay");
        let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
        (text(out), text(diag), s)
    }

    /// A buffer of a few bytes holds at most one line, so each event is recorded on its own;
    /// a large one records each second's events as batches. Both print the same alerts and
    /// refuse the same lines, on many dependencies with late calls, calls at the edge of
    /// being too old, malformed lines and the node's limits reached.
    #[test]
    fn events_recorded_in_batches_replay_as_one_at_a_time() {
        const T0: i64 = 1_800_000_000_000;
        let line = |dep: usize, instance: usize, ms: f64, outcome: &str, ts: i64| {
            format!(
                r#"{{"dependency":"dep-{dep}","instance":"i-{instance}","zone":"z-{}","duration_ms":{ms},"outcome":"{outcome}","ts":{ts}}}"#,
                instance % 3
            ) + "\n"
        };
        let mut input = String::new();
        for k in 0..40_000i64 {
            let ts = T0 + k * 5;
            let (dep, instance) = ((k * 7 % 30) as usize, (k / 3 % 8) as usize);
            // Instance 5 of dep-3 fails most calls after the first minute and a half.
            let bad = dep == 3 && instance == 5 && ts > T0 + 90_000;
            let outcome = if bad && k % 4 != 0 { "error" } else { "ok" };
            let ms = 10.0 + (k * 31 % 17) as f64;
            // Every 50th call arrives 4 seconds late.
            let ts = if k % 50 == 0 { ts - 4_000 } else { ts };
            input.push_str(&line(dep, instance, ms, outcome, ts));
            if k % 9_999 == 0 {
                input.push_str("{\"dependency\": 3}\n");
            }
        }
        // Late in a second: a call within that second of being too old, then one that moves
        // the clock on within the same second.
        let end = T0 + 200_000;
        input.push_str(&line(1, 1, 5.0, "ok", end + 900));
        input.push_str(&line(1, 2, 5.0, "ok", end + 920 - Window::LONGEST_MS));
        input.push_str(&line(1, 3, 5.0, "ok", end + 950));
        let limits = Limits {
            max_dependencies: 25,
            max_series: 200,
            ..Limits::default()
        };
        let whole = run_with(input.as_bytes(), 1 << 20, limits);
        let single = run_with(input.as_bytes(), 7, limits);
        assert!(whole.0.contains(r#""status":"firing""#), "{}", whole.0);
        assert!(whole.1.contains("refused"), "the limits refuse calls");
        assert_eq!(whole.2.malformed, 5);
        // The first line that differs, not two whole outputs.
        let same = |a: &str, b: &str, what: &str| {
            let differs = a.lines().zip(b.lines()).find(|(x, y)| x != y);
            assert!(differs.is_none(), "{what}: {differs:?}");
            assert_eq!(a.lines().count(), b.lines().count(), "{what}");
        };
        same(&whole.0, &single.0, "alerts");
        same(&whole.1, &single.1, "skipped and refused lines");
        assert_eq!(
            (whole.2.events, whole.2.refused),
            (single.2.events, single.2.refused)
        );
    }

    #[test]
    fn the_slowest_ticks_are_kept_slowest_first_with_their_time() {
        let mut t = TickTimes::default();
        for (i, ms) in [3u64, 9, 1, 7, 5, 8, 2, 6].into_iter().enumerate() {
            t.add(Duration::from_millis(ms), i as i64 * 1000);
        }
        assert_eq!(t.count(), 8);
        assert_eq!(t.total(), Duration::from_millis(41));
        let slowest: Vec<(u64, i64)> = t
            .slowest()
            .iter()
            .map(|&(d, at)| (d.as_millis() as u64, at))
            .collect();
        assert_eq!(
            slowest,
            [(9, 1000), (8, 5000), (7, 3000), (6, 7000), (5, 4000)]
        );
        let max = t.quantile(1.0).as_micros() as f64;
        assert!((max - 9_000.0).abs() <= 90.0, "{max}");
        assert!(t.describe().contains("8 evaluations"), "{}", t.describe());
    }

    #[test]
    fn a_replay_times_each_second_it_evaluates() {
        // Calls over five seconds: the seconds from the first call's to one past the last
        // are evaluated, each timed once.
        let input: String = (0..5i64)
            .map(|s| {
                format!(
                    "{{\"dependency\":\"db\",\"duration_ms\":3,\"ts\":{}}}\n",
                    1_800_000_000_000 + s * 1000 + 500
                )
            })
            .collect();
        let s = replay(
            BufReader::new(input.as_bytes()),
            &mut Vec::new(),
            &mut Vec::new(),
            DetectionSettings::default(),
            Specs::default(),
            Limits::default(),
        )
        .expect("replay");
        if crate::metrics::thread_cpu_time().is_some() {
            assert_eq!(s.ticks.count(), 5, "{}", s.ticks.describe());
            assert_eq!(s.ticks.slowest().len(), 5);
        }
    }

    #[test]
    fn a_time_near_the_end_of_the_clock_is_skipped_not_replayed() {
        // Evaluating every second up to such a time would overflow (or never finish).
        let input = format!(
            "{}\n{}\n{}\n",
            r#"{"dependency":"db","duration_ms":1,"ts":1800000000000}"#,
            r#"{"dependency":"db","duration_ms":1,"ts":9223372036854775807}"#,
            r#"{"dependency":"db","duration_ms":1,"ts":-5}"#,
        );
        let (_, diag, lines, events, malformed) = run(input.as_bytes(), 1 << 20);
        assert_eq!((lines, events, malformed), (3, 1, 2));
        assert!(
            diag.starts_with("line 2: skipped: ts: out of range (must be from 1970 to 9999)"),
            "{diag}"
        );
    }

    #[test]
    fn lines_split_across_reader_buffers_read_like_whole_ones() {
        let mut input = String::new();
        for i in 0..3_000i64 {
            let outcome = if i % 3 == 0 { "ok" } else { "error" };
            input.push_str(&format!(
                r#"{{"dependency":"db","duration_ms":{}.5,"outcome":"{outcome}","ts":{}}}"#,
                i % 40,
                1_800_000_000_000 + i * 50
            ));
            input.push_str(match i {
                7 => "\nnot json\n",
                11 => "\n\n   \n",
                _ => "\n",
            });
        }
        // The last line has no newline.
        input.push_str(r#"{"dependency":"db","duration_ms":1,"ts":1800000150000}"#);
        let whole = run(input.as_bytes(), 1 << 20);
        assert_eq!(whole.2, 3_004, "lines");
        assert_eq!(whole.3, 3_001, "events");
        assert_eq!(whole.4, 1, "malformed");
        assert!(
            whole.1.starts_with("line 9: skipped: invalid JSON"),
            "{}",
            whole.1
        );
        assert!(
            whole.0.contains("\"status\":\"firing\""),
            "two thirds of calls fail"
        );
        for capacity in [7, 64, 333] {
            assert_eq!(
                run(input.as_bytes(), capacity),
                whole,
                "buffer of {capacity}"
            );
        }
    }
}
