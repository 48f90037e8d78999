//! What operators ask of the actions through the API: silences (create, list, expire) and
//! reads of the breaker board and its history. Overrides are in [`super::hub`].
//!
//! The API parses a request into the types here (times as epoch ms, durations already
//! bounded) and calls one method; each method checks the limits, owns any locking and the
//! order of database and memory writes, and answers a [`RequestError`] whose message names the
//! field at fault.

use std::time::Duration;

use super::breaker::BreakerView;
use super::history::{HistoryEntry, MAX_CHANGES_PER_DEPENDENCY};
use super::hub::Actions;
use crate::storage::{Silence, Storage};

/// Longest matcher of a silence, in characters (names are at most 128).
pub const MAX_MATCHER_CHARS: usize = 256;
const DAY_MS: i64 = 86_400_000;

/// What operator requests may ask for: `[limits]` of the configuration, which names and
/// checks them (`max_silences`, `max_silence_duration`, `max_comment_chars`,
/// `max_override_ttl`). Each bounds what every delivery and evaluation matches against, or
/// how long a forced breaker outlives the operator who forgot it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorLimits {
    /// Active and scheduled silences at most; past it, creating one is refused.
    pub max_silences: usize,
    /// Longest silence (from `starts_at` to `ends_at`), in ms.
    pub max_silence_ms: i64,
    /// Longest comment of a silence, reason of an override, in characters.
    pub max_text_chars: usize,
    /// Longest breaker override (from now to its expiry), in ms.
    pub max_override_ms: i64,
}

impl Default for OperatorLimits {
    fn default() -> Self {
        Self {
            max_silences: 1_000,
            max_silence_ms: 30 * DAY_MS,
            max_text_chars: 1_000,
            max_override_ms: 7 * DAY_MS,
        }
    }
}

/// Why an operator request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request is wrong; `field` names what to change.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The database failed; nothing was changed in memory.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

fn invalid(field: &'static str, message: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field,
        message: message.into(),
    }
}

/// A duration as operators write it (`30d`), for messages.
pub fn human(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// Refuses a text longer than `max` characters, naming the field.
pub fn check_len(text: &str, field: &'static str, max: usize) -> Result<(), RequestError> {
    let n = text.chars().count();
    if n > max {
        return Err(invalid(field, format!("at most {max} characters, got {n}")));
    }
    // Hidden characters would make a silence or a reason read as something it is not.
    crate::domain::format_char(text).map_err(|e| invalid(field, e.to_string()))
}

/// When a new silence ends.
#[derive(Debug, Clone, Copy)]
pub enum SilenceEnd {
    /// At this time, epoch ms.
    At(i64),
    /// This long after it starts, in ms (at most `max_silence_ms`).
    After(i64),
}

/// A silence to create, as parsed from the request.
#[derive(Debug, Clone)]
pub struct SilenceRequest {
    pub dependency: Option<String>,
    pub instance: Option<String>,
    pub zone: Option<String>,
    pub source: Option<String>,
    pub detector: Option<String>,
    /// Epoch ms; `None` is now.
    pub starts_ms: Option<i64>,
    pub ends: SilenceEnd,
    pub comment: String,
}

impl Actions {
    /// Creates a silence after checking its limits; returns it with its id.
    pub async fn create_silence(
        &self,
        storage: &Storage,
        req: SilenceRequest,
        created_by: &str,
        now_ms: i64,
    ) -> Result<Silence, RequestError> {
        let starts = req.starts_ms.unwrap_or(now_ms);
        let ends = match req.ends {
            SilenceEnd::At(t) => t,
            SilenceEnd::After(d) => starts.saturating_add(d),
        };
        if ends <= starts || ends <= now_ms {
            return Err(invalid(
                "ends_at",
                "must be after starts_at and in the future",
            ));
        }
        let limits = self.limits();
        if ends - starts > limits.max_silence_ms {
            return Err(invalid(
                "ends_at",
                format!(
                    "a silence lasts at most {} from starts_at (limits.max_silence_duration)",
                    human(limits.max_silence_ms)
                ),
            ));
        }
        if req.comment.trim().is_empty() {
            return Err(invalid("comment", "must not be empty"));
        }
        check_len(&req.comment, "comment", limits.max_text_chars)?;
        for (field, m) in [
            ("dependency", &req.dependency),
            ("instance", &req.instance),
            ("zone", &req.zone),
            ("source", &req.source),
            ("detector", &req.detector),
        ] {
            if let Some(m) = m {
                check_len(m, field, MAX_MATCHER_CHARS)?;
            }
        }
        if [
            &req.dependency,
            &req.instance,
            &req.zone,
            &req.source,
            &req.detector,
        ]
        .iter()
        .all(|m| m.is_none())
        {
            return Err(invalid(
                "dependency",
                "at least one matcher (dependency, instance, zone, source, detector) is required",
            ));
        }
        if let Some(d) = &req.detector
            && crate::detect::DetectorKind::parse(d).is_none()
        {
            return Err(invalid("detector", format!("{d:?} is not a detector")));
        }
        // Checked before the insert, so two requests at once may pass it together: the bound
        // is on memory and on what each evaluation matches against, not an exact quota.
        if storage.silences(now_ms).await?.len() >= limits.max_silences {
            return Err(invalid(
                "silences",
                format!(
                    "at most {} active or scheduled silences (limits.max_silences); expire some first",
                    limits.max_silences
                ),
            ));
        }
        let mut s = Silence {
            id: 0,
            dependency: req.dependency,
            instance: req.instance,
            zone: req.zone,
            source: req.source,
            detector: req.detector,
            starts_ms: starts,
            ends_ms: ends,
            comment: req.comment,
            created_by: created_by.to_string(),
            created_ms: now_ms,
        };
        s.id = storage.create_silence(&s).await?;
        tracing::info!(silence = s.id, created_by = %s.created_by, "Silence created.");
        Ok(s)
    }

    /// Active and scheduled silences.
    pub async fn silences(&self, storage: &Storage, now_ms: i64) -> sqlx::Result<Vec<Silence>> {
        storage.silences(now_ms).await
    }

    /// Ends a silence now; what it held back is due at once, not at its original end.
    pub async fn expire_silence(
        &self,
        storage: &Storage,
        id: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<(), RequestError> {
        if !storage.delete_silence(id, now_ms).await? {
            return Err(RequestError::NotFound(format!(
                "no active silence with id {id}"
            )));
        }
        storage.release_silenced(id, now_ms).await?;
        self.wake_all();
        tracing::info!(silence = id, by, "Silence expired.");
        Ok(())
    }

    /// Every breaker on the board.
    pub fn breakers(&self) -> Vec<BreakerView> {
        self.board.lock().snapshot()
    }

    /// A dependency's breakers (its own, then its instances'); `NotFound` if it has none.
    pub fn breakers_of(&self, dependency: &str) -> Result<Vec<BreakerView>, RequestError> {
        let views = self.board.lock().get(dependency);
        if views.is_empty() {
            return Err(no_breaker(dependency));
        }
        Ok(views)
    }

    /// A dependency's last `limit` breaker changes (at most
    /// [`MAX_CHANGES_PER_DEPENDENCY`]), newest first. A breaker that has not changed since the
    /// daemon started has an empty history; a dependency with no breaker is `NotFound`.
    pub fn breaker_history(
        &self,
        dependency: &str,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, RequestError> {
        let limit = limit.min(MAX_CHANGES_PER_DEPENDENCY);
        let changes = {
            let history = self.history.lock();
            history
                .knows(dependency)
                .then(|| history.recent(dependency, limit))
        };
        match changes {
            Some(c) => Ok(c),
            None if !self.board.lock().get(dependency).is_empty() => Ok(Vec::new()),
            None => Err(no_breaker(dependency)),
        }
    }
}

fn no_breaker(dependency: &str) -> RequestError {
    RequestError::NotFound(format!("no breaker for dependency {dependency:?}"))
}
