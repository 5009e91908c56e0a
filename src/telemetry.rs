//! Logging with `tracing`: human-readable by default, JSON lines when asked; to stderr.
//! `RUST_LOG` sets the level (default `info`).
//!
//! Every line passes through a filter before it is written (the binary hands in
//! [`crate::domain::redact_addresses`]), so no log line holds a full e-mail address,
//! whichever crate wrote it and at whatever level: only the domain is kept. Libraries
//! that log the texts they handle stay at `info` (see [`CONTENT_LOGGERS`]).

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// A filter applied to each formatted log line.
pub type Redact = fn(&str) -> String;

/// Libraries that log the texts they work on at debug level (template values such as a
/// subscriber's name, the HTML of a newsletter): kept at `info` unless `RUST_LOG` names
/// them itself.
const CONTENT_LOGGERS: [&str; 6] = ["handlebars", "html5ever", "markup5ever", "css_inline", "ammonia", "selectors"];

pub fn init(json: bool, redact: Redact) {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in CONTENT_LOGGERS.iter().filter(|t| !spec.contains(*t)) {
        if let Ok(d) = format!("{target}=info").parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Redacting { redact });
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Makes a [`LineWriter`] per event.
struct Redacting {
    redact: Redact,
}

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buf: Vec::new(), redact: self.redact }
    }
}

/// Collects one event's text and writes it, filtered, to stderr in one call when done.
struct LineWriter {
    buf: Vec<u8>,
    redact: Redact,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = (self.redact)(&String::from_utf8_lossy(&self.buf));
        self.buf.clear();
        std::io::stderr().lock().write_all(text.as_bytes())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
