//! `recond recon run --follow`: polls the run's summary until it shows an end, drawing a live
//! progress bar on a terminal (entries, rate, and percentage and ETA once
//! `progress.source.existing.total` is a number) or printing a plain line at most once a
//! second otherwise (pipes, logs, CI).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::conn::{enc, Conn};
use super::render;
use super::ClientError;

const POLL: Duration = Duration::from_millis(200);
const PLAIN_EVERY: Duration = Duration::from_secs(1);

fn style(template: &str) -> ProgressStyle {
    // The templates are constants; a mistake in one falls back to indicatif's default look.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Where progress goes: a bar on a terminal, lines elsewhere.
enum Display {
    Bar { bar: ProgressBar, total_known: bool },
    Plain { last: Option<Instant> },
}

impl Display {
    fn new() -> Display {
        if std::io::stdout().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(style(
                "{spinner} {msg} {pos} entries ({per_sec}) {elapsed_precise}",
            ));
            bar.enable_steady_tick(Duration::from_millis(120));
            Display::Bar {
                bar,
                total_known: false,
            }
        } else {
            Display::Plain { last: None }
        }
    }

    fn update(&mut self, summary: &Value) {
        match self {
            Display::Bar { bar, total_known } => {
                let source = &summary["progress"]["source"]["existing"];
                let total = source["total"].as_str().and_then(|t| t.parse::<u64>().ok());
                if let (Some(t), false) = (total, *total_known) {
                    bar.set_length(t);
                    bar.set_style(style(
                        "{msg} [{bar:30}] {pos}/{len} entries {percent}% ({per_sec}) ETA {eta}",
                    ));
                    *total_known = true;
                }
                bar.set_position(source["processed"].as_u64().unwrap_or(0));
                bar.set_message(summary["stage"].as_str().unwrap_or("").to_string());
            }
            Display::Plain { last } => {
                if last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    *last = Some(Instant::now());
                    println_flush(&render::progress_line(summary));
                }
            }
        }
    }

    fn finish(self, summary: &Value) {
        match self {
            Display::Bar { bar, .. } => bar.finish_and_clear(),
            Display::Plain { .. } => println_flush(&render::progress_line(summary)),
        }
    }
}

fn println_flush(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) must not turn into a panic; the run goes on regardless.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Follows run `id` to its end and returns the final summary.
pub fn follow(conn: &Conn, id: &str) -> Result<Value, ClientError> {
    let mut display = Display::new();
    loop {
        let r = conn.get(&format!("/openidm/recon/{}", enc(id)))?;
        if r.status != 200 {
            return Err(ClientError::from_reply("reading the run", &r));
        }
        let summary = r.body;
        let ended = summary["ended"].as_str().is_some_and(|e| !e.is_empty());
        if ended {
            display.finish(&summary);
            return Ok(summary);
        }
        display.update(&summary);
        std::thread::sleep(POLL);
    }
}
