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
pub fn evaluate(
    store: &WindowStore,
    engine: &mut Engine,
    board: &mut BreakerBoard,
    now_ms: i64,
) -> TickOutcome {
    let transitions = engine.evaluate(store, now_ms);
    let breakers = board.observe_conditions(&engine.conditions(), engine.specs(), now_ms);
    TickOutcome {
        transitions,
        breakers,
    }
}
