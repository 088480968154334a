//! Check: hold every assign call to its documented Graph contract.
//!
//! Runs after `classify`, in every mode, on every request shaped like an Intune assign action,
//! and (in record, auto and audit) on the response the service gave. Each finding is a
//! [`Deviation`] with a stable [`Code`] (documented in `docs/DEVIATIONS.md`), a severity, the
//! JSON pointer or header it is about, and a one-line message. With `--on-deviation reject` a
//! request with an `error` deviation is answered 400 and never reaches the tenant.

mod across;
mod body;
mod duplicates;
pub mod permissions;
mod response;
mod verdict;

pub use response::{check_response, check_response_counted};

use crate::classify::Classified;
use crate::contract::ApiVersion;
use http::{HeaderMap, Method};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// What to do with a request that has an `error` deviation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnDeviation {
    /// Pass it on as usual; flag it in the `x-graph-vcr-deviations` header, journal and log.
    #[default]
    Flag,
    /// Answer 400 with the deviations; never forward or replay it.
    Reject,
}

/// Contract-check options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CheckOptions {
    /// What to do with a request that breaks the contract (an `error` deviation).
    ///
    /// `reject` answers 400 with a Graph-format error listing the deviations, and the request
    /// never reaches the tenant. Example: `--on-deviation reject` in CI.
    #[arg(long, env = "GRAPH_VCR_ON_DEVIATION", value_enum, default_value_t = OnDeviation::Flag)]
    pub on_deviation: OnDeviation,
}

/// How bad a deviation is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

macro_rules! codes {
    ($($variant:ident = $text:literal, $sev:ident;)*) => {
        /// A stable deviation code. Never renamed: users filter and count on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant),* }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text),* }
            }

            /// The usual severity (some codes are milder in beta, whose registry is partial).
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev),* }
            }
        }
    };
}

codes! {
    MethodNotPost = "method-not-post", Error;
    UnknownApiVersion = "unknown-api-version", Error;
    AuthMissing = "auth-missing", Error;
    AuthNotBearer = "auth-not-bearer", Error;
    ContentTypeNotJson = "content-type-not-json", Error;
    AcceptExcludesJson = "accept-excludes-json", Warning;
    BodyNotJson = "body-not-json", Error;
    BodyNotObject = "body-not-object", Error;
    ParameterMissing = "parameter-missing", Error;
    ParameterNull = "parameter-null", Error;
    ParameterNotArray = "parameter-not-array", Error;
    UnknownParameter = "unknown-parameter", Error;
    DuplicateMember = "duplicate-member", Error;
    EmptyAssignments = "empty-assignments", Warning;
    ElementNotObject = "element-not-object", Error;
    ElementTypeUnknown = "element-type-unknown", Error;
    TargetMissing = "target-missing", Error;
    TargetTypeMissing = "target-type-missing", Error;
    TargetTypeUnknown = "target-type-unknown", Error;
    TargetTypeNotAllowed = "target-type-not-allowed", Error;
    TargetPropertyMissing = "target-property-missing", Error;
    RequiredPropertyMissing = "required-property-missing", Error;
    OdataTypeUnknown = "odata-type-unknown", Error;
    PropertyWrongType = "property-wrong-type", Error;
    UnknownEnumValue = "unknown-enum-value", Error;
    UnknownProperty = "unknown-property", Error;
    OdataTypeWithoutHash = "odata-type-without-hash", Warning;
    GroupIdNotGuid = "group-id-not-guid", Warning;
    DuplicateTarget = "duplicate-target", Warning;
    GroupIncludedAndExcluded = "group-included-and-excluded", Error;
    UnexpectedSuccessStatus = "unexpected-success-status", Warning;
    SuccessBodyNotValue = "success-body-not-value", Warning;
    BodyOn204 = "body-on-204", Warning;
    ErrorBodyNotGraphFormat = "error-body-not-graph-format", Warning;
    ResponseMissingRequestId = "response-missing-request-id", Warning;
    ThrottleMissingRetryAfter = "throttle-missing-retry-after", Warning;
    InsufficientPermission = "insufficient-permission", Error;
    RetryTooEarly = "retry-too-early", Error;
    AbandonedAfterThrottle = "abandoned-after-throttle", Error;
    BatchMalformed = "batch-malformed", Error;
    BatchTooManyRequests = "batch-too-many-requests", Error;
    BatchDuplicateId = "batch-duplicate-id", Error;
    BatchDependsOnUnknown = "batch-depends-on-unknown", Error;
    BatchItemMissingContentType = "batch-item-missing-content-type", Error;
    BatchUnknownMember = "batch-unknown-member", Warning;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown deviation code {text:?}")))
    }
}

/// A request's deviations: shared with its findings while nothing was added to them, copied
/// when something is ([`Deviations::to_mut`]).
#[derive(Debug, Clone, Default)]
pub struct Deviations {
    /// Set while the list is the findings' own; `owned` is empty then.
    shared: Option<Arc<Listed>>,
    owned: Vec<Deviation>,
}

/// A list of deviations shared by every request of one shape, with its
/// `x-graph-vcr-deviations` value made once rather than per answer.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct Listed {
    list: Box<[Deviation]>,
    header: Option<http::HeaderValue>,
}

impl Listed {
    fn new(list: Vec<Deviation>) -> Self {
        Self {
            header: header(&list),
            list: list.into(),
        }
    }
}

impl From<Vec<Deviation>> for Deviations {
    fn from(owned: Vec<Deviation>) -> Self {
        Self {
            shared: None,
            owned,
        }
    }
}

impl std::ops::Deref for Deviations {
    type Target = [Deviation];
    fn deref(&self) -> &[Deviation] {
        match &self.shared {
            Some(s) => &s.list,
            None => &self.owned,
        }
    }
}

impl Deviations {
    fn shared(list: &Arc<Listed>) -> Self {
        Self {
            shared: Some(Arc::clone(list)),
            owned: Vec::new(),
        }
    }

    /// The list to change, copied out of the findings first if it was shared.
    pub fn to_mut(&mut self) -> &mut Vec<Deviation> {
        if let Some(s) = self.shared.take() {
            self.owned = s.list.to_vec();
        }
        &mut self.owned
    }

    /// The `x-graph-vcr-deviations` value of the list ([`header`]; none when it is empty).
    pub fn header(&self) -> Option<http::HeaderValue> {
        match &self.shared {
            Some(s) => s.header.clone(),
            None => header(&self.owned),
        }
    }
}

/// One departure from the documented contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Deviation {
    pub code: Code,
    pub severity: Severity,
    /// A JSON pointer into the body (`/assignments/0/target`), or a header name.
    /// Shared text: a replayed call's deviations are copied onto every one of its requests.
    pub at: Arc<str>,
    pub message: Arc<str>,
}

impl Deviation {
    pub fn new(code: Code, at: impl AsRef<str>, message: impl AsRef<str>) -> Self {
        Self {
            code,
            severity: code.severity(),
            at: Arc::from(at.as_ref()),
            message: Arc::from(message.as_ref()),
        }
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.at.is_empty() {
            "(body)"
        } else {
            &self.at
        };
        write!(
            f,
            "{:<7} {} at {}: {}",
            self.severity.as_str(),
            self.code,
            at,
            self.message
        )
    }
}

/// Most deviations kept per request; the rest are counted, not listed. One body of 100,000
/// bad targets must not write 100,000 log lines, journal entries or report rows (nor make
/// their de-duplication quadratic): the first hundred say what is wrong.
pub const MAX_DEVIATIONS: usize = 100;

/// Deviations as the body walk finds them, bounded however many the body has: up to
/// [`MAX_DEVIATIONS`] errors and as many warnings are kept (so the final cut can keep errors
/// first), the rest only counted. A body of 500,000 bad targets must not hold 500,000
/// messages in memory.
#[derive(Debug, Default)]
pub struct Found {
    kept: Vec<Deviation>,
    errors: usize,
    dropped: usize,
}

impl Found {
    pub fn push(&mut self, d: Deviation) {
        let is_error = d.severity == Severity::Error;
        let of_kind = if is_error {
            self.errors
        } else {
            self.kept.len() - self.errors
        };
        if of_kind >= MAX_DEVIATIONS {
            self.dropped += 1;
            return;
        }
        self.errors += usize::from(is_error);
        self.kept.push(d);
    }

    /// What was kept, and how many were dropped.
    pub fn into_parts(self) -> (Vec<Deviation>, usize) {
        (self.kept, self.dropped)
    }
}

/// Deviation texts through the redaction gate, once, where they are made: a message may
/// quote a header value or a JSON member's name, and it is logged, journaled and reported.
/// (Values under secret members never reach a check: `analyze` redacts the body first.)
pub(crate) fn gate(deviations: &mut [Deviation]) {
    use std::borrow::Cow;
    for d in deviations {
        if let Cow::Owned(clean) = crate::redact::text(&d.message) {
            d.message = clean.into();
        }
        if let Cow::Owned(clean) = crate::redact::text(&d.at) {
            d.at = clean.into();
        }
    }
}

/// Whether any deviation is an error.
pub fn has_error(deviations: &[Deviation]) -> bool {
    deviations.iter().any(|d| d.severity == Severity::Error)
}

/// `code1,code2`: the distinct codes, for the `x-graph-vcr-deviations` header.
pub fn header_value(deviations: &[Deviation]) -> String {
    distinct_codes(deviations).join(",")
}

/// The codes of `deviations`, each once, in order (at most a hundred deviations: a linear
/// search beats hashing them).
fn distinct_codes(deviations: &[Deviation]) -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = Vec::with_capacity(deviations.len().min(8));
    for d in deviations {
        let code = d.code.as_str();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// [`header_value`] as a header; a single code (the usual case) without an allocation.
pub fn header(deviations: &[Deviation]) -> Option<http::HeaderValue> {
    match deviations {
        [] => None,
        [first, rest @ ..] if rest.iter().all(|d| d.code == first.code) => {
            Some(http::HeaderValue::from_static(first.code.as_str()))
        }
        _ => http::HeaderValue::from_str(&header_value(deviations)).ok(),
    }
}

/// Checks a request to an assign-shaped path: method, headers, and body.
pub fn check_request(
    method: &Method,
    classified: &Classified,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<Deviation> {
    check_without_headers(
        method,
        classified,
        body,
        crate::json::Json::parse(body).as_ref(),
    )
    .with_headers(&crate::headers::Asked::of(headers))
    .to_vec()
}

/// A request's deviations that follow from its method, path and body alone. Replay remembers
/// these per distinct request (`memo`) and adds the header deviations per request:
/// `check_without_headers(..).with_headers(h)` is exactly [`check_request`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Findings {
    /// Whether the path is an assign action at all (nothing is checked otherwise).
    assign_shaped: bool,
    /// The method's deviations, then the path's and body's; header deviations go between.
    /// At most [`MAX_DEVIATIONS`] (errors kept before warnings).
    deviations: Vec<Deviation>,
    /// The same, errors first: a request's whole list when its headers add nothing (the
    /// usual case), shared by every such request instead of copied onto each.
    sorted: Arc<Listed>,
    headers_at: usize,
    /// How many more there were.
    omitted: usize,
    /// The action's documented permissions, held against each request's token.
    permissions: Option<&'static crate::contract::Permissions>,
}

/// `raw` is the body as sent (duplicate member names are visible only there), `body` the same
/// parsed (and redacted).
pub fn check_without_headers(
    method: &Method,
    classified: &Classified,
    raw: &[u8],
    body: Result<&crate::json::Json<'_>, &serde_json::Error>,
) -> Findings {
    let mut out = Vec::new();
    if !classified.assign_shaped {
        return Findings::default();
    }
    let mut omitted_early = 0;
    if method != Method::POST {
        out.push(Deviation::new(
            Code::MethodNotPost,
            "method",
            format!("assign actions are invoked with POST, not {method}"),
        ));
    }
    let headers_at = out.len();
    match classified.version {
        None => out.push(Deviation::new(
            Code::UnknownApiVersion,
            "path",
            "the first path segment is not a Graph API version (v1.0 or beta)",
        )),
        Some(version) => {
            duplicates::check(raw, &mut out);
            let mut found = Found::default();
            body::check(version, classified.action, body, &mut found);
            let (kept, dropped) = found.into_parts();
            out.extend(kept);
            omitted_early = dropped;
        }
    }
    let omitted = out.len().saturating_sub(MAX_DEVIATIONS) + omitted_early;
    if out.len() > MAX_DEVIATIONS {
        // Keep the errors: they are what fails the call.
        out[headers_at..].sort_by_key(|d| std::cmp::Reverse(d.severity));
        out.truncate(MAX_DEVIATIONS);
    }
    gate(&mut out);
    let mut sorted = out.clone();
    errors_first(&mut sorted);
    Findings {
        assign_shaped: true,
        sorted: Arc::new(Listed::new(sorted)),
        deviations: out,
        headers_at,
        omitted,
        permissions: classified.action.and_then(|a| a.permissions.as_ref()),
    }
}

impl Findings {
    /// How many deviations there are before the header checks add theirs.
    pub fn base_len(&self) -> usize {
        self.deviations.len()
    }

    /// How many deviations past [`MAX_DEVIATIONS`] were dropped.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// Every deviation of the request with these headers, errors first.
    pub fn with_headers(&self, headers: &crate::headers::Asked<'_>) -> Deviations {
        if !self.assign_shaped {
            return Deviations::default();
        }
        verdict::with(headers, |found, granted| {
            let permission = match (self.permissions, granted) {
                (Some(p), Some(granted)) => permissions::check(p, granted),
                _ => None,
            };
            if found.is_empty() && permission.is_none() {
                return Deviations::shared(&self.sorted);
            }
            let mut out = Vec::with_capacity(self.deviations.len() + found.len() + 1);
            out.extend_from_slice(&self.deviations[..self.headers_at]);
            out.extend_from_slice(found);
            if let Some(mut d) = permission {
                gate(std::slice::from_mut(&mut d));
                out.push(d);
            }
            out.extend_from_slice(&self.deviations[self.headers_at..]);
            errors_first(&mut out);
            out.into()
        })
    }
}

/// Errors before warnings, each in the order found (body order), so the first thing a reader
/// sees is what breaks the call.
fn errors_first(deviations: &mut [Deviation]) {
    deviations.sort_by_key(|d| std::cmp::Reverse(d.severity));
}

/// Checks only the body, as `graph-vcr check` does offline.
pub fn check_body(
    version: ApiVersion,
    classified: &Classified,
    body: &[u8],
    out: &mut Vec<Deviation>,
) {
    duplicates::check(body, out);
    let mut found = Found::default();
    body::check(
        version,
        classified.action,
        crate::json::Json::parse(body).as_ref(),
        &mut found,
    );
    out.extend(found.into_parts().0);
}

fn check_headers(headers: &HeaderMap, out: &mut Vec<Deviation>) {
    match headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => out.push(Deviation::new(
            Code::AuthMissing,
            "Authorization",
            "no Authorization header: Graph requires `Authorization: Bearer <token>`",
        )),
        Some(v) => {
            let scheme = v.split_whitespace().next().unwrap_or("");
            let has_token = v.split_whitespace().nth(1).is_some();
            if !scheme.eq_ignore_ascii_case("bearer") || !has_token {
                // Never the value itself: without a scheme, the whole value is the credential.
                let what = if has_token
                    && scheme.len() <= 16
                    && scheme.chars().all(|c| c.is_ascii_alphabetic())
                {
                    format!("the scheme is {scheme:?}")
                } else if scheme.eq_ignore_ascii_case("bearer") {
                    "`Bearer` has no token after it".to_string()
                } else {
                    "the value has no scheme".to_string()
                };
                out.push(Deviation::new(
                    Code::AuthNotBearer,
                    "Authorization",
                    format!("{what}; Graph requires `Authorization: Bearer <token>`"),
                ));
            }
        }
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_json = content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        out.push(Deviation::new(
            Code::ContentTypeNotJson,
            "Content-Type",
            match content_type {
                Some(ct) => {
                    format!("Content-Type is {ct:?}; the body must be sent as application/json")
                }
                None => "no Content-Type; the body must be sent as application/json".to_string(),
            },
        ));
    }
    if let Some(accept) = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    {
        let accepts_json = accept.split(',').any(|r| {
            let range = r
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let refused = r.split(';').skip(1).any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            !refused && matches!(range.as_str(), "application/json" | "application/*" | "*/*")
        });
        if !accepts_json {
            out.push(Deviation::new(Code::AcceptExcludesJson, "Accept",
                format!("Accept is {accept:?}; Graph answers errors (and some assigns) in application/json")));
        }
    }
}

/// The seed action, the default of `graph-vcr check --action`.
pub const SEED_ACTION: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/{id}/assign";

/// Checks a body offline against the action at `action_path` (a template with `{id}`, or a
/// real path; `/v1.0` is assumed when no version is given). Returns the action's label and the
/// deviations, or a message naming the known actions.
pub fn check_offline(
    action_path: &str,
    body: &[u8],
    granted: Option<&permissions::Granted>,
) -> Result<(String, Vec<Deviation>), String> {
    let mut path: String = action_path
        .split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "id"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let first = path.split('/').nth(1).unwrap_or("");
    if ApiVersion::from_segment(first).is_none() {
        path.insert_str(0, "/v1.0");
    }
    let classified = crate::classify::classify(&path, None);
    match (classified.version, classified.action) {
        (Some(version), Some(action)) => {
            let mut out = Vec::new();
            check_body(version, &classified, body, &mut out);
            if let (Some(p), Some(g)) = (&action.permissions, granted) {
                out.extend(permissions::check(p, g));
            }
            errors_first(&mut out);
            Ok((classified.action_label(), out))
        }
        _ => {
            let known: Vec<String> = crate::contract::registry()
                .actions()
                .map(|a| format!("  /{}{}", a.version, a.path))
                .collect();
            Err(format!(
                "no contract for {action_path:?}; known actions:\n{}",
                known.join("\n")
            ))
        }
    }
}

/// One line per deviation, for people.
pub fn format_text(deviations: &[Deviation]) -> String {
    if deviations.is_empty() {
        return "no deviations\n".to_string();
    }
    let mut s = String::new();
    for d in deviations {
        s.push_str(&d.to_string());
        s.push('\n');
    }
    let errors = deviations
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    s.push_str(&format!(
        "{errors} error(s), {} warning(s)\n",
        deviations.len() - errors
    ));
    s
}

#[cfg(test)]
mod tests;
