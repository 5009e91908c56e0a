//! Time as an input: one [`Clock`] read by every rule, and the one text form of a time.
//!
//! The daemon and the CLI read the system clock. A test sets the time instead of waiting
//! for it or editing rows: with `OUTREACH_CLOCK_FILE=PATH` the clock is the system clock
//! moved by the offset written in that file (`+86400`, `-3600`, in seconds) or, when the
//! file holds a time (`2027-01-01T09:00:00Z`), the system clock moved so that it read that
//! time when the file was written. The file is read again when it changes, so a test moves
//! a running daemon's time by rewriting it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// Where "now" comes from.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    shift: Option<Arc<ShiftFile>>,
}

#[derive(Debug)]
struct ShiftFile {
    path: PathBuf,
    /// The file's modification time when last read, and the offset it gave.
    seen: Mutex<(Option<SystemTime>, TimeDelta)>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { shift: None }
    }

    /// The system clock, or the test clock when `OUTREACH_CLOCK_FILE` is set.
    pub fn from_env() -> Self {
        match std::env::var_os("OUTREACH_CLOCK_FILE") {
            Some(p) if !p.is_empty() => Self::shifted_by_file(PathBuf::from(p)),
            _ => Self::system(),
        }
    }

    /// A clock moved by the offset in `path` (see the module doc).
    pub fn shifted_by_file(path: PathBuf) -> Self {
        tracing::warn!(path = %path.display(), "the clock is moved by a test clock file");
        Self { shift: Some(Arc::new(ShiftFile { path, seen: Mutex::new((None, TimeDelta::zero())) })) }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match &self.shift {
            None => now,
            Some(f) => now + f.offset(),
        }
    }

    /// Whether this is the system clock (nothing moves it).
    pub fn is_system(&self) -> bool {
        self.shift.is_none()
    }
}

impl ShiftFile {
    fn offset(&self) -> TimeDelta {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified != seen.0 {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let offset = parse_shift(text.trim(), modified.map_or_else(Utc::now, DateTime::<Utc>::from));
            *seen = (modified, offset.unwrap_or_else(TimeDelta::zero));
        }
        seen.1
    }
}

/// `+N` / `-N` seconds, or a time that "now" was when the file was written.
fn parse_shift(text: &str, written: DateTime<Utc>) -> Option<TimeDelta> {
    if text.is_empty() {
        return Some(TimeDelta::zero());
    }
    if let Ok(secs) = text.trim_start_matches('+').parse::<i64>() {
        return TimeDelta::try_seconds(secs);
    }
    parse_ts(text).map(|t| t - written)
}

/// The text form of a time in the store and in JSON: RFC 3339, UTC, milliseconds
/// (sortable as text).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a time written by [`ts`] (or any RFC 3339 time).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// `#[serde(with = "crate::domain::time::rfc3339")]` for a `DateTime<Utc>` written as [`ts`].
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::ts(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_ts(&s).ok_or_else(|| serde::de::Error::custom(format!("expected an RFC 3339 time, found {s:?}")))
    }
}

/// As [`rfc3339`], for an `Option<DateTime<Utc>>`.
pub mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::ts(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| {
            super::parse_ts(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("expected an RFC 3339 time, found {s:?}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text() {
        let a = ts(DateTime::from_timestamp(1_000, 5_000_000).unwrap());
        let b = ts(DateTime::from_timestamp(1_000, 50_000_000).unwrap());
        assert!(a < b);
        assert_eq!(parse_ts(&a).unwrap().timestamp_millis(), 1_000_005);
    }

    #[test]
    fn a_clock_file_moves_time_by_an_offset_or_to_a_moment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock");
        let clock = Clock::shifted_by_file(p.clone());
        let drift = (clock.now() - Utc::now()).num_seconds().abs();
        assert!(drift <= 1, "no file: no shift ({drift})");
        std::fs::write(&p, "+86400").unwrap();
        let ahead = (clock.now() - Utc::now()).num_seconds();
        assert!((86_399..=86_401).contains(&ahead), "{ahead}");
        // A new modification time makes the clock read the file again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, "2030-01-01T00:00:00Z").unwrap();
        let t = clock.now();
        assert_eq!(t.format("%Y-%m-%d").to_string(), "2030-01-01", "{t}");
    }

    #[test]
    fn the_system_clock_is_not_moved() {
        assert!(Clock::system().is_system());
        assert!((Clock::system().now() - Utc::now()).num_seconds().abs() <= 1);
    }
}
