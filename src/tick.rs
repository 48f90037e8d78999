//! One evaluation tick, the same for the daemon and for `replay`: the detectors judge every
//! dependency at one instant, then the breaker board takes the fresh verdicts.
//!
//! ```text
//! window store -> Engine::evaluate -> alert transitions
//!                      |
//!                      +-> conditions -> BreakerBoard::observe_conditions -> breaker changes
//! ```
//!
//! What happens to the outcome differs at the edge: the daemon records transitions and queues
//! notifications, publishes breaker changes to streams and receivers; `replay` prints them.

use std::ops::DerefMut;

use crate::actions::breaker::{BreakerBoard, BreakerChange};
use crate::detect::{Engine, Transition};
use crate::window::WindowStore;

/// What one tick produced.
#[derive(Debug, Default)]
pub struct TickOutcome {
    pub transitions: Vec<Transition>,
    pub breakers: Vec<BreakerChange>,
}

/// Evaluates every dependency at `now_ms` (event time) and steps the breakers with the result.
/// `board` is asked for the breaker board only once the verdicts are in, so that the daemon
/// locks the board for the breakers' step alone, not for the whole evaluation (clients polling
/// their breakers would wait for it).
pub fn evaluate<B: DerefMut<Target = BreakerBoard>>(
    store: &WindowStore,
    engine: &mut Engine,
    board: impl FnOnce() -> B,
    now_ms: i64,
) -> TickOutcome {
    let transitions = engine.evaluate(store, now_ms);
    let conditions = engine.conditions();
    let breakers = board().observe_conditions(&conditions, engine.specs(), now_ms);
    TickOutcome {
        transitions,
        breakers,
    }
}

/// Forgets the dependencies gone from the store (idle past its eviction) that nothing still
/// speaks of: no open or pending alert, every breaker closed and unforced. Without this the
/// engine's baselines and the breaker board keep every dependency ever seen. Returns the
/// names forgotten.
pub fn forget_gone(
    store: &WindowStore,
    engine: &mut Engine,
    board: &mut BreakerBoard,
) -> Vec<String> {
    let mut gone = engine.missing(store);
    // Breakers of a dependency the engine no longer knows (e.g. restored overrides).
    gone.extend(
        board
            .dependencies()
            .filter(|d| !engine.knows(d) && !store.contains(d))
            .map(str::to_owned),
    );
    gone.sort_unstable();
    gone.dedup();
    gone.retain(|d| board.is_idle(d));
    for d in &gone {
        engine.forget(d);
        board.forget(d);
    }
    gone
}
