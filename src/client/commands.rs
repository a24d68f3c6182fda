//! The client's subcommands: one request (or a short series) each, their output, and the exit
//! code contract §8 fixes for `recon run`.

use std::io::Write;

use serde_json::Value;

use super::args::{AssocArgs, Format, ReconCommand, RunArgs};
use super::conn::{enc, Conn};
use super::{follow, render, ClientError, Exit};

fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    // A closed pipe is the reader's choice, not an error of the command.
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

pub fn dispatch(conn: &Conn, cmd: ReconCommand) -> Result<Exit, ClientError> {
    match cmd {
        ReconCommand::Run(a) => run(conn, &a),
        ReconCommand::List => list(conn),
        ReconCommand::Show { run_id } => show(conn, &run_id),
        ReconCommand::Assoc(a) => assoc(conn, &a),
        ReconCommand::Cancel { run_id } => cancel(conn, &run_id),
    }
}

/// The exit code of a run that ended: 0 success without failed entries (or with them under
/// `--allow-failures`), 3 success with failed entries, 1 failed or cancelled.
pub fn run_exit(summary: &Value, allow_failures: bool) -> Exit {
    let failures = summary["statusSummary"]["FAILURE"].as_u64().unwrap_or(0);
    match summary["state"].as_str() {
        Some("SUCCESS") if failures == 0 || allow_failures => Exit::Ok,
        Some("SUCCESS") => Exit::FailedEntries,
        _ => Exit::RunFailed,
    }
}

fn run(conn: &Conn, a: &RunArgs) -> Result<Exit, ClientError> {
    let mut q = format!("/openidm/recon?_action=recon&mapping={}", enc(&a.mapping));
    for (on, param) in [
        (a.analyze, "analyze"),
        (a.persist_associations, "persistAssociations"),
        (a.record_changes, "recordChanges"),
        (a.ignore_guard, "ignoreGuard"),
    ] {
        if on {
            q.push_str(&format!("&{param}=true"));
        }
    }
    let r = conn.post(&q)?;
    if r.status != 200 {
        return Err(ClientError::from_reply("starting the run", &r));
    }
    let id = r.body["_id"]
        .as_str()
        .ok_or_else(|| ClientError::Server("the server's answer has no run _id".into()))?
        .to_string();
    out(&format!("started run {id} of {}\n", a.mapping));
    if !a.follow {
        return Ok(Exit::Ok);
    }
    let summary = follow::follow(conn, &id)?;
    out(&render::run_report(&summary));
    Ok(run_exit(&summary, a.allow_failures))
}

fn list(conn: &Conn) -> Result<Exit, ClientError> {
    let r = conn.get("/openidm/recon")?;
    if r.status != 200 {
        return Err(ClientError::from_reply("listing runs", &r));
    }
    let runs = r.body["reconciliations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    out(&render::run_list(&runs));
    Ok(Exit::Ok)
}

fn show(conn: &Conn, id: &str) -> Result<Exit, ClientError> {
    let r = conn.get(&format!("/openidm/recon/{}", enc(id)))?;
    if r.status != 200 {
        return Err(ClientError::from_reply("reading the run", &r));
    }
    out(&render::run_report(&r.body));
    Ok(Exit::Ok)
}

fn assoc(conn: &Conn, a: &AssocArgs) -> Result<Exit, ClientError> {
    let filter = match &a.situation {
        Some(s) => format!(
            "situation eq \"{}\"",
            s.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => "true".to_string(),
    };
    let mut entries: Vec<Value> = Vec::new();
    let mut cookie: Option<String> = None;
    loop {
        let mut q = format!(
            "/openidm/recon/assoc/{}/entry?_queryFilter={}&_pageSize=500",
            enc(&a.run_id),
            enc(&filter)
        );
        if let Some(c) = &cookie {
            q.push_str(&format!("&_pagedResultsCookie={}", enc(c)));
        }
        let r = conn.get(&q)?;
        if r.status != 200 {
            return Err(ClientError::from_reply("reading association entries", &r));
        }
        if let Some(page) = r.body["result"].as_array() {
            entries.extend(page.iter().cloned());
        }
        match r.body["pagedResultsCookie"].as_str() {
            Some(c) if !c.is_empty() => cookie = Some(c.to_string()),
            _ => break,
        }
    }
    let text = match a.format {
        Format::Table => render::entries_table(&entries, a.diff),
        Format::Csv => render::entries_csv(&entries, a.diff),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&entries)
                .map_err(|e| ClientError::Server(e.to_string()))?;
            s.push('\n');
            s
        }
    };
    out(&text);
    Ok(Exit::Ok)
}

fn cancel(conn: &Conn, id: &str) -> Result<Exit, ClientError> {
    let before = conn.get(&format!("/openidm/recon/{}", enc(id)))?;
    let r = conn.post(&format!("/openidm/recon/{}?_action=cancel", enc(id)))?;
    if r.status != 200 {
        return Err(ClientError::from_reply("cancelling the run", &r));
    }
    let ended = before.body["ended"].as_str().is_some_and(|e| !e.is_empty());
    if ended {
        // IDM accepts a cancel of a finished run and changes nothing; say so.
        out(&format!(
            "run {id} had already ended ({}); the cancel changed nothing\n",
            before.body["state"].as_str().unwrap_or("?")
        ));
    } else {
        out(&format!(
            "cancel of run {id}: {}\n",
            r.body["status"].as_str().unwrap_or("?")
        ));
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exit_codes_of_a_followed_run() {
        let s = |state: &str, failures: u64| json!({"state": state, "statusSummary": {"SUCCESS": 1, "FAILURE": failures}});
        assert_eq!(run_exit(&s("SUCCESS", 0), false), Exit::Ok);
        assert_eq!(run_exit(&s("SUCCESS", 2), false), Exit::FailedEntries);
        assert_eq!(run_exit(&s("SUCCESS", 2), true), Exit::Ok);
        assert_eq!(run_exit(&s("FAILED", 0), false), Exit::RunFailed);
        assert_eq!(run_exit(&s("CANCELED", 0), true), Exit::RunFailed);
    }
}
