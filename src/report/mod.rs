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

mod runlog;

pub use runlog::{Event, RunLog};

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
    /// Do not fail (exit 1) because of `error` contract deviations.
    #[arg(long, env = "GRAPH_VCR_ALLOW_DEVIATIONS")]
    pub allow_deviations: bool,
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

    pub fn failed(&self) -> bool {
        self.missed() || self.errors().next().is_some()
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

/// `verify`: the report of a past run of `cassette`, from its journal, with the recordings of
/// the cassette that run never played. Errors are messages for the command line.
pub fn verify(
    cassettes: &std::path::Path,
    cassette: &crate::cassette::CassetteName,
    journal: &std::path::Path,
) -> Result<Report, String> {
    let entries = crate::journal::read_entries(journal).map_err(|e| {
        format!(
            "cannot read journal {}: {e} (replay writes one only with --journal FILE)",
            journal.display()
        )
    })?;
    let store = crate::export::open(cassettes, crate::cassette::Access::ReadOnly)
        .map_err(|e| e.to_string())?;
    let recorded = store.cassette(cassette).map_err(|e| e.to_string())?;
    let run = RunLog::default();
    let mut mode = String::from("verify");
    for entry in entries {
        match entry {
            Ok(e) if e.cassette == cassette.as_str() => {
                mode.clone_from(&e.mode);
                run.add(&Event::of(&e));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("journal is damaged: {e}")),
        }
    }
    run.report(&format!("{mode} (verified)"), &[recorded])
        .map_err(|e| e.to_string())
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
    pub totals: Totals,
    pub calls: Vec<Call>,
    pub unplayed: Vec<Unplayed>,
    /// Why each damaged recording of the run's cassettes cannot be read.
    pub damaged: Vec<String>,
}

impl Report {
    /// Why the run fails under `opts`; empty when it passes.
    pub fn failures(&self, opts: &ReportOptions) -> Vec<String> {
        let t = &self.totals;
        let mut why = Vec::new();
        if t.misses > 0 && !opts.allow_misses {
            why.push(format!(
                "{} request(s) missed (--allow-misses to accept)",
                t.misses
            ));
        }
        if t.deviation_errors > 0 && !opts.allow_deviations {
            why.push(format!(
                "{} contract error(s) (--allow-deviations to accept)",
                t.deviation_errors
            ));
        }
        if t.damaged > 0 {
            why.push(format!(
                "{} damaged recording(s) in the cassettes (re-record or re-import them)",
                t.damaged
            ));
        }
        if t.unplayed > 0 && opts.fail_on_unplayed {
            why.push(format!(
                "{} recording(s) never played (--fail-on-unplayed)",
                t.unplayed
            ));
        }
        why
    }

    /// Writes every report `opts` asks for.
    pub fn write(&self, opts: &ReportOptions) -> std::io::Result<()> {
        let outputs = [
            (&opts.report_junit, self.junit(opts)),
            (&opts.report_markdown, self.markdown(opts)),
            (&opts.report_json, self.json()),
        ];
        for (path, text) in outputs {
            if let Some(path) = path {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(path, crate::redact::redact_text(&text).as_bytes()).map_err(
                    |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
                )?;
            }
        }
        Ok(())
    }

    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// JUnit XML: a test suite per cassette, a test case per call (and per unplayed recording).
    pub fn junit(&self, opts: &ReportOptions) -> String {
        let mut suites: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new(); // tests, failures, skipped
        for call in &self.calls {
            let c = counts.entry(&call.cassette).or_default();
            c.0 += 1;
            let mut body = String::new();
            if call.missed() {
                let message = call.message.as_deref().unwrap_or("no recording");
                let _ = write!(
                    body,
                    "<failure type=\"miss\" message=\"{}\">{}</failure>",
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
                "<testcase name=\"{}\" classname=\"{}\" time=\"0\">{body}</testcase>",
                xml(&case_name(&call.method, &call.path, call.key.as_deref())),
                xml(&format!("graph-vcr.{}.{}", call.cassette, call.action)),
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
        let (tests, failures) = counts.values().fold((0, 0), |(t, f), c| (t + c.0, f + c.1));
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"graph-vcr {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"0\">",
            xml(&self.mode)
        );
        for (cassette, cases) in &suites {
            let (t, f, s) = counts.get(cassette).copied().unwrap_or_default();
            let _ = writeln!(
                x,
                "  <testsuite name=\"graph-vcr {}: {}\" tests=\"{t}\" failures=\"{f}\" errors=\"0\" skipped=\"{s}\" time=\"0\">",
                xml(&self.mode),
                xml(cassette)
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
        let failures = self.failures(opts);
        let mut m = String::new();
        let verdict = if failures.is_empty() {
            "✅ passed"
        } else {
            "❌ failed"
        };
        let _ = writeln!(m, "## graph-vcr {}: {verdict}\n", self.mode);
        for f in &failures {
            let _ = writeln!(m, "- {f}");
        }
        if !failures.is_empty() {
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

    /// A few lines for stderr at the end of a run.
    pub fn summary_lines(&self, opts: &ReportOptions) -> Vec<String> {
        let mut lines = vec![self.totals_line()];
        for c in self.calls.iter().filter(|c| c.failed()) {
            lines.push(format!(
                "FAIL {} {} {} [{}]: {}",
                c.cassette,
                c.method,
                c.path,
                short(c.key.as_deref()),
                if c.missed() { "miss" } else { "contract error" }
            ));
        }
        if self.totals.unplayed > 0 {
            lines.push(format!(
                "{} recording(s) never played",
                self.totals.unplayed
            ));
        }
        for d in &self.damaged {
            lines.push(format!("damaged: {d}"));
        }
        match self.failures(opts) {
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
