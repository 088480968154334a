//! Report: what a run did, for people and CI systems.
//!
//! A [`RunLog`] folds journal entries (live, from the proxy; or read back, by `verify`) into
//! one [`Call`] per distinct request (cassette, action and key). At the end, recordings that
//! were never played are added, and the [`Report`] is rendered as JUnit XML (one test case per
//! call: misses and `error` deviations fail it, warnings go to system-out), Markdown (a GitHub
//! job summary) and JSON (documented in `docs/REPORTS.md`).

use crate::check::{Deviation, Severity};
use crate::outcome::Outcome;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

pub mod needs;
mod runlog;
mod verdict;

pub use runlog::{CallLog, Event, Kept, Recordings, RunLog};
pub use verdict::{Cause, Verdict};

/// Reports to write, and what makes a run fail.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReportOptions {
    /// Write a JUnit XML report (GitHub Actions, Azure Pipelines, GitLab display it).
    #[arg(long, env = "GRAPH_VCR_REPORT_JUNIT", value_name = "FILE")]
    pub report_junit: Option<PathBuf>,
    /// Write a Markdown report (e.g. `>> $GITHUB_STEP_SUMMARY`).
    #[arg(long, env = "GRAPH_VCR_REPORT_MARKDOWN", value_name = "FILE")]
    pub report_markdown: Option<PathBuf>,
    /// Write a JSON report (see docs/REPORTS.md).
    #[arg(long, env = "GRAPH_VCR_REPORT_JSON", value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Do not fail (exit 1) because a request missed.
    #[arg(long, env = "GRAPH_VCR_ALLOW_MISSES")]
    pub allow_misses: bool,
    /// Do not fail (exit 1) because of `error` contract deviations (requests or responses).
    #[arg(long, env = "GRAPH_VCR_ALLOW_DEVIATIONS")]
    pub allow_deviations: bool,
    /// Do not fail because graph-vcr turned requests away (rejected by contract, too large or
    /// deep, unreadable, a bad cassette name).
    #[arg(long, env = "GRAPH_VCR_ALLOW_REJECTED")]
    pub allow_rejected: bool,
    /// Do not fail because the upstream could not be reached or timed out.
    #[arg(long, env = "GRAPH_VCR_ALLOW_UPSTREAM_ERRORS")]
    pub allow_upstream_errors: bool,
    /// Do not fail because forward mode refused a host that is not intercepted.
    #[arg(long, env = "GRAPH_VCR_ALLOW_REFUSED")]
    pub allow_refused: bool,
    /// Do not fail because a request named a cassette that does not exist.
    #[arg(long, env = "GRAPH_VCR_ALLOW_UNKNOWN_CASSETTES")]
    pub allow_unknown_cassettes: bool,
    /// Fail (exit 1) when a recording was never played: a test stopped making a call.
    #[arg(long, env = "GRAPH_VCR_FAIL_ON_UNPLAYED")]
    pub fail_on_unplayed: bool,
}

/// One distinct request of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub cassette: String,
    pub action: String,
    pub method: String,
    pub path: String,
    pub key: Option<String>,
    pub requests: u64,
    /// How many requests had each outcome (`replayed`, `miss`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Distinct deviations (by code and place), errors first.
    pub deviations: Vec<Deviation>,
    /// The most deviations one request had past the per-request cap (counted, not listed).
    #[serde(skip_serializing_if = "is_zero")]
    pub deviations_omitted: usize,
    /// The first message graph-vcr answered with itself (a miss's diff, a rejection).
    pub message: Option<String>,
    /// How long graph-vcr took over this call's requests, added up.
    pub seconds: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Call {
    pub fn missed(&self) -> bool {
        self.outcomes.contains_key("miss")
    }

    pub fn errors(&self) -> impl Iterator<Item = &Deviation> {
        self.deviations
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// Whether a request of the call was not answered (a miss, a refusal, a failure) or the
    /// call broke the contract.
    pub fn failed(&self) -> bool {
        let unanswered = self
            .outcomes
            .keys()
            .any(|o| Outcome::parse(o).is_some_and(|o| !o.answered()));
        unanswered || self.errors().next().is_some()
    }

    /// `replayed`, `miss`, ... : the worst outcome, for one-word displays.
    pub fn verdict(&self) -> &str {
        let known = self.outcomes.keys().filter_map(|o| Outcome::parse(o));
        match known.min_by_key(|o| o.rank()) {
            Some(worst) => worst.as_str(),
            None => self.outcomes.keys().next().map_or("none", String::as_str),
        }
    }
}

/// A recording no request played.
#[derive(Debug, Clone, Serialize)]
pub struct Unplayed {
    pub cassette: String,
    pub action: String,
    pub method: String,
    pub path: String,
    pub key: String,
    pub position: u32,
    pub recorded_at: String,
}

/// Why `verify` could not judge a journal.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The journal or the cassettes could not be read (a usage error).
    #[error("{0}")]
    Unreadable(String),
    /// `--cassette` names a cassette the journal never mentions: that run never used it, so
    /// the run fails.
    #[error(
        "the journal never mentions cassette {cassette}; cassettes it mentions (closest first): {listed}"
    )]
    NotInJournal { cassette: String, listed: String },
}

/// `verify`: the report of a past run from its journal, covering every cassette the journal
/// names (or only `only`), with the recordings of those cassettes that run never played.
pub fn verify(
    cassettes: &std::path::Path,
    only: Option<&crate::cassette::CassetteName>,
    journal: &std::path::Path,
) -> Result<Report, VerifyError> {
    use crate::cassette::CassetteName;
    let entries = crate::journal::read_entries(journal).map_err(|e| {
        VerifyError::Unreadable(format!(
            "cannot read journal {}: {e} (replay writes one only with --journal FILE)",
            journal.display()
        ))
    })?;
    let mut entries = entries
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VerifyError::Unreadable(format!("journal is damaged: {e}")))?;
    let mut named: Vec<CassetteName> = entries
        .iter()
        .filter_map(|e| CassetteName::new(&e.cassette).ok())
        .collect();
    named.sort();
    named.dedup();
    if let Some(only) = only {
        if !named.contains(only) {
            return Err(VerifyError::NotInJournal {
                cassette: only.to_string(),
                listed: crate::cassette::listing(only.as_str(), &named),
            });
        }
        entries.retain(|e| e.cassette == only.as_str());
        named = vec![only.clone()];
    }
    let mode = entries.first().map_or("verify", |e| e.mode.as_str());
    // An audit run records nothing: there is no store to hold its calls against.
    let store = match mode {
        "audit" => None,
        _ => Some(
            crate::export::open(cassettes, crate::cassette::Access::ReadOnly)
                .map_err(|e| VerifyError::Unreadable(e.to_string()))?,
        ),
    };
    let recorded = match &store {
        None => Vec::new(),
        Some(store) => {
            let stored = store.cassette_names();
            named
                .iter()
                .filter(|n| stored.contains(n))
                .map(|n| store.cassette(n))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| VerifyError::Unreadable(e.to_string()))?
        }
    };
    let run = RunLog::default();
    let started = entries.first().map_or("", |e| e.time.as_str());
    for e in &entries {
        run.add(&Event::of(e));
    }
    let expected = store
        .as_ref()
        .map(|s| s.expected().clone())
        .unwrap_or_default();
    let mut report = run
        .report(
            &format!("{mode} (verified)"),
            started,
            &recorded,
            &expected,
            &[],
        )
        .map_err(|e| VerifyError::Unreadable(e.to_string()))?;
    if let Some(store) = &store {
        report.add_damaged(store.missing_of(|name| named.iter().any(|n| n.as_str() == name)));
    }
    Ok(report)
}

/// Run totals. Deviations count distinct (code, place) per call.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub calls: usize,
    /// Requests per outcome (`outcome::Outcome`), every outcome named, zeros included.
    pub outcomes: BTreeMap<String, u64>,
    pub replayed: u64,
    pub recorded: u64,
    pub forwarded: u64,
    pub misses: u64,
    pub rejected: u64,
    pub upstream_errors: u64,
    pub deviation_errors: usize,
    pub deviation_warnings: usize,
    pub unplayed: usize,
    /// Recordings in the run's cassettes that do not decode.
    pub damaged: usize,
}

/// Everything a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub version: u32,
    pub mode: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    pub totals: Totals,
    pub calls: Vec<Call>,
    pub unplayed: Vec<Unplayed>,
    /// Why each damaged recording of the run's cassettes cannot be read.
    pub damaged: Vec<String>,
    /// The least-privileged permissions that cover the run's calls, per action (`needs`).
    pub needs: Vec<needs::Need>,
}

impl Report {
    /// Adds damage found outside the run's cassettes' records (cassettes the manifest promises
    /// that are gone).
    pub fn add_damaged(&mut self, damage: impl IntoIterator<Item = String>) {
        self.damaged.extend(damage);
        self.totals.damaged = self.damaged.len();
    }

    /// Writes every report `opts` asks for, each rendered only if asked for and one at a
    /// time (a run of 100,000 calls makes reports of about 100 MB each).
    pub fn write(&self, opts: &ReportOptions) -> std::io::Result<()> {
        type Render = fn(&Report, &ReportOptions) -> String;
        let outputs: [(&Option<PathBuf>, Render); 3] = [
            (&opts.report_junit, Report::junit),
            (&opts.report_markdown, Report::markdown),
            (&opts.report_json, Report::json),
        ];
        for (path, render) in outputs {
            if let Some(path) = path {
                let text = render(self, opts);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(path, crate::redact::text(&text).as_bytes()).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?;
            }
        }
        Ok(())
    }

    /// The JSON report: everything above and the verdict under `opts`.
    pub fn json(&self, opts: &ReportOptions) -> String {
        #[derive(Serialize)]
        struct Judged<'a> {
            #[serde(flatten)]
            report: &'a Report,
            verdict: Verdict,
        }
        let judged = Judged {
            report: self,
            verdict: self.verdict(opts),
        };
        let mut s = serde_json::to_string_pretty(&judged).unwrap_or_default();
        s.push('\n');
        s
    }

    /// JUnit XML: a test suite per cassette, a test case per call (and per unplayed recording).
    pub fn junit(&self, opts: &ReportOptions) -> String {
        let mut suites: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        // tests, failures, skipped, seconds
        let mut counts: BTreeMap<&str, (usize, usize, usize, f64)> = BTreeMap::new();
        for call in &self.calls {
            let c = counts.entry(&call.cassette).or_default();
            c.0 += 1;
            c.3 += call.seconds;
            let mut body = String::new();
            let unanswered = call.verdict();
            if !Outcome::parse(unanswered).is_none_or(Outcome::answered) {
                let message = call.message.as_deref().unwrap_or(unanswered);
                let _ = write!(
                    body,
                    "<failure type=\"{}\" message=\"{}\">{}</failure>",
                    xml(unanswered),
                    xml(message.lines().next().unwrap_or("")),
                    xml(message)
                );
            }
            let errors: Vec<String> = call
                .errors()
                .map(|d| format!("{} at {}: {}", d.code, d.at, d.message))
                .collect();
            if !errors.is_empty() {
                let _ = write!(
                    body,
                    "<failure type=\"contract\" message=\"{} contract error(s)\">{}</failure>",
                    errors.len(),
                    xml(&errors.join("\n"))
                );
            }
            if call.failed() {
                c.1 += 1;
            }
            let mut out: Vec<String> = call
                .outcomes
                .iter()
                .map(|(o, n)| format!("{o}: {n}"))
                .collect();
            out.extend(
                call.deviations
                    .iter()
                    .filter(|d| d.severity == Severity::Warning)
                    .map(|d| format!("warning {} at {}: {}", d.code, d.at, d.message)),
            );
            let _ = write!(body, "<system-out>{}</system-out>", xml(&out.join("\n")));
            suites.entry(&call.cassette).or_default().push(format!(
                "<testcase name=\"{}\" classname=\"{}\" time=\"{:.6}\">{body}</testcase>",
                xml(&case_name(&call.method, &call.path, call.key.as_deref())),
                xml(&format!("graph-vcr.{}.{}", call.cassette, call.action)),
                call.seconds,
            ));
        }
        for u in &self.unplayed {
            let c = counts.entry(&u.cassette).or_default();
            c.0 += 1;
            let message = format!(
                "recorded {} but never played: the tests no longer make this call",
                u.recorded_at
            );
            let body = if opts.fail_on_unplayed {
                c.1 += 1;
                format!(
                    "<failure type=\"unplayed\" message=\"{0}\">{0}</failure>",
                    xml(&message)
                )
            } else {
                c.2 += 1;
                format!("<skipped message=\"{}\"/>", xml(&message))
            };
            suites.entry(&u.cassette).or_default().push(format!(
                "<testcase name=\"{} #{}\" classname=\"{}\" time=\"0\">{body}</testcase>",
                xml(&case_name(&u.method, &u.path, Some(&u.key))),
                u.position,
                xml(&format!("graph-vcr.{}.{}", u.cassette, u.action)),
            ));
        }
        let (tests, failures, seconds) = counts
            .values()
            .fold((0, 0, 0.0), |(t, f, s), c| (t + c.0, f + c.1, s + c.3));
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"graph-vcr {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{seconds:.6}\">",
            xml(&self.mode)
        );
        // JUnit's timestamp is a local date-time without zone or fraction; ours is UTC.
        let timestamp: String = self.started.chars().take(19).collect();
        let timestamp = if timestamp.len() == 19 {
            format!(" timestamp=\"{}\"", xml(&timestamp))
        } else {
            String::new()
        };
        for (cassette, cases) in &suites {
            let (t, f, s, secs) = counts.get(cassette).copied().unwrap_or_default();
            let _ = writeln!(
                x,
                "  <testsuite name=\"graph-vcr {}: {}\" tests=\"{t}\" failures=\"{f}\" errors=\"0\" skipped=\"{s}\" time=\"{secs:.6}\"{timestamp}>",
                xml(&self.mode),
                xml(cassette),
            );
            for case in cases {
                let _ = writeln!(x, "    {case}");
            }
            x.push_str("  </testsuite>\n");
        }
        x.push_str("</testsuites>\n");
        x
    }

    /// Markdown for a CI job summary: the verdict, totals, a table of calls, then details.
    pub fn markdown(&self, opts: &ReportOptions) -> String {
        let t = &self.totals;
        let judged = self.verdict(opts);
        let mut m = String::new();
        let verdict = if judged.passed {
            "✅ passed"
        } else {
            "❌ failed"
        };
        let _ = writeln!(m, "## graph-vcr {}: {verdict}\n", self.mode);
        for c in &judged.causes {
            let mark = if c.fails { "❌" } else { "allowed:" };
            let _ = writeln!(m, "- {mark} {}", c.line());
        }
        if !judged.causes.is_empty() {
            m.push('\n');
        }
        m.push_str("| requests | replayed | recorded | forwarded | missed | rejected | contract errors | warnings | never played |\n");
        m.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            t.requests,
            t.replayed,
            t.recorded,
            t.forwarded,
            t.misses,
            t.rejected,
            t.deviation_errors,
            t.deviation_warnings,
            t.unplayed
        );
        if !self.calls.is_empty() {
            m.push_str("| | outcome | cassette | call | key | deviations |\n| --- | --- | --- | --- | --- | --- |\n");
            for c in &self.calls {
                let mark = if c.failed() {
                    "❌"
                } else if c.deviations.is_empty() {
                    "✅"
                } else {
                    "⚠️"
                };
                let codes: Vec<String> = c
                    .deviations
                    .iter()
                    .map(|d| format!("`{}`", d.code))
                    .collect();
                let _ = writeln!(
                    m,
                    "| {mark} | {} | {} | `{} {}` | `{}` | {} |",
                    c.verdict(),
                    cell(&c.cassette),
                    c.method,
                    cell(&c.path),
                    short(c.key.as_deref()),
                    codes.join(" ")
                );
            }
            m.push('\n');
        }
        let detailed: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.failed() || !c.deviations.is_empty())
            .collect();
        if !detailed.is_empty() {
            m.push_str("### Details\n\n");
            for c in detailed {
                let _ = writeln!(
                    m,
                    "#### {} `{} {}` ({})\n",
                    if c.failed() { "❌" } else { "⚠️" },
                    c.method,
                    c.path,
                    c.verdict()
                );
                if let Some(msg) = c.message.as_deref().filter(|_| c.missed()) {
                    let _ = writeln!(m, "```text\n{}\n```\n", msg.replace("```", "'''"));
                }
                for d in &c.deviations {
                    let _ = writeln!(
                        m,
                        "- **{}** `{}` at `{}`: {}",
                        d.severity.as_str(),
                        d.code,
                        d.at,
                        d.message
                    );
                }
                m.push('\n');
            }
        }
        if !self.needs.is_empty() {
            m.push_str("### Permissions this run needs\n\nThe least privileged permission that covers every call of each action (documented, per permission type).\n\n| action | delegated | application |\n| --- | --- | --- |\n");
            for n in &self.needs {
                let _ = writeln!(
                    m,
                    "| `{}` | {} | {} |",
                    n.action,
                    n.delegated.as_deref().unwrap_or("—"),
                    n.application.as_deref().unwrap_or("—")
                );
            }
            m.push('\n');
        }
        if !self.unplayed.is_empty() {
            m.push_str("### Never played\n\nRecorded, but no request asked for them: a test stopped making these calls.\n\n");
            for u in &self.unplayed {
                let _ = writeln!(
                    m,
                    "- {} `{} {}` #{} (key `{}`, recorded {})",
                    cell(&u.cassette),
                    u.method,
                    u.path,
                    u.position,
                    short(Some(&u.key)),
                    u.recorded_at
                );
            }
        }
        m
    }

    /// One line: every outcome that happened, and the deviations, as the reports count them.
    pub fn totals_line(&self) -> String {
        let t = &self.totals;
        let mut parts: Vec<String> = Outcome::ALL
            .iter()
            .filter_map(|o| {
                let n = t.outcomes.get(o.as_str()).copied().unwrap_or(0);
                (n > 0 || matches!(o, Outcome::Replayed | Outcome::Recorded | Outcome::Miss))
                    .then(|| format!("{n} {o}"))
            })
            .collect();
        if parts.is_empty() {
            parts.push("nothing".into());
        }
        format!(
            "{} requests in {} calls: {}; deviations: {} errors, {} warnings (distinct per call)",
            t.requests,
            t.calls,
            parts.join(", "),
            t.deviation_errors,
            t.deviation_warnings
        )
    }

    /// Record and auto: the calls forwarded without being stored, and why (the journal has
    /// every one).
    fn not_stored_lines(&self) -> Vec<String> {
        const LISTED: usize = 5;
        let recording = self.mode.starts_with("record") || self.mode.starts_with("auto");
        let forwarded = self.totals.forwarded;
        if !recording || forwarded == 0 {
            return Vec::new();
        }
        let mut lines = vec![format!(
            "not stored: {forwarded} forwarded request(s) were passed on and not recorded:"
        )];
        let calls = self
            .calls
            .iter()
            .filter(|c| c.outcomes.contains_key(Outcome::Forwarded.as_str()));
        for c in calls.clone().take(LISTED) {
            let why = c.message.as_deref().unwrap_or("not recorded");
            lines.push(format!("  {} {} {}: {why}", c.cassette, c.method, c.path));
        }
        let more = calls.count().saturating_sub(LISTED);
        if more > 0 {
            lines.push(format!("  … and {more} more call(s) (see the journal)"));
        }
        lines
    }

    /// A few lines for stderr at the end of a run.
    pub fn summary_lines(&self, opts: &ReportOptions) -> Vec<String> {
        let mut lines = vec![self.totals_line()];
        lines.extend(self.not_stored_lines());
        for c in self.calls.iter().filter(|c| c.failed()) {
            lines.push(format!(
                "FAIL {} {} {} [{}]: {}",
                c.cassette,
                c.method,
                c.path,
                short(c.key.as_deref()),
                match c.verdict() {
                    v if Outcome::parse(v).is_some_and(Outcome::answered) => "contract error",
                    v => v,
                }
            ));
        }
        lines.extend(needs::line(&self.needs));
        if self.totals.unplayed > 0 {
            lines.push(format!(
                "{} recording(s) never played",
                self.totals.unplayed
            ));
        }
        for d in &self.damaged {
            lines.push(format!("damaged: {d}"));
        }
        let judged = self.verdict(opts);
        let allowed: Vec<String> = judged
            .causes
            .iter()
            .filter(|c| !c.fails)
            .map(Cause::line)
            .collect();
        if !allowed.is_empty() {
            lines.push(format!("allowed: {}", allowed.join("; ")));
        }
        match judged.failures() {
            f if f.is_empty() => lines.push("result: passed".into()),
            f => lines.push(format!("result: failed: {}", f.join("; "))),
        }
        lines
    }
}

fn case_name(method: &str, path: &str, key: Option<&str>) -> String {
    format!("{method} {path} [{}]", short(key))
}

fn short(key: Option<&str>) -> &str {
    key.map_or("-", |k| &k[..12.min(k.len())])
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Escapes text for XML content and attributes; drops characters XML 1.0 cannot carry.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}
