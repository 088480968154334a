//! The body half of the contract check: parameters, assignment elements, targets, settings.
//!
//! Walks the body against the declared types of the action's parameters (from
//! `contract::types`), resolving each `@odata.type` to a subtype of the declared type.

use super::across::{self, Aimed};
use super::{Code, Deviation, Found, Severity};
use crate::classify::is_guid;
use crate::contract::types::{Property, TypeInfo, Types, types};
use crate::contract::{Action, ApiVersion};
use crate::json::{Json, Object};

/// What an object is, which decides the codes used for its findings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Element,
    Target,
    Nested,
}

struct Walker<'a> {
    version: ApiVersion,
    types: &'static Types,
    out: &'a mut Found,
}

pub(super) fn check(
    version: ApiVersion,
    action: Option<&Action>,
    body: Result<&Json<'_>, &serde_json::Error>,
    out: &mut Found,
) {
    let value = match body {
        Ok(v) => v,
        Err(e) => {
            out.push(Deviation::new(
                Code::BodyNotJson,
                "",
                format!("the body is not JSON: {e}"),
            ));
            return;
        }
    };
    let Json::Object(top) = value else {
        out.push(Deviation::new(
            Code::BodyNotObject,
            "",
            "the body must be a JSON object of action parameters",
        ));
        return;
    };
    let Some(action) = action else {
        // An assign action graph-vcr has no contract for: nothing more can be said.
        return;
    };
    let mut w = Walker {
        version,
        types: types(version),
        out,
    };
    for name in top.keys() {
        if action.parameter(name).is_none() && !name.starts_with('@') {
            let expected: Vec<&str> = action.parameters.iter().map(|p| p.name.as_str()).collect();
            w.out.push(Deviation::new(
                Code::UnknownParameter,
                pointer("", name),
                format!(
                    "{name:?} is not a parameter of this action (expected {})",
                    expected.join(", ")
                ),
            ));
        }
    }
    // An action that takes two lists (beta deviceConfigurations, the script actions, …) is
    // called with either or both: the SDKs leave out a list that is not set, and OData takes
    // a missing action parameter as null. Missing is a deviation only when nothing is sent.
    let any_present = action.parameters.iter().any(|p| top.contains_key(&p.name));
    for param in &action.parameters {
        let at = pointer("", &param.name);
        match top.get(&param.name) {
            None if any_present => {}
            None if action.parameters.len() == 1 => w.out.push(Deviation::new(
                Code::ParameterMissing,
                &at,
                format!(
                    "parameter {:?} is missing: the service takes it as null and rejects the call",
                    param.name
                ),
            )),
            None => w.out.push(Deviation::new(
                Code::ParameterMissing,
                &at,
                format!(
                    "none of this action's parameters ({}) is present; send at least one",
                    action
                        .parameters
                        .iter()
                        .map(|p| format!("{:?}", p.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Some(Json::Null) => w.out.push(Deviation::new(
                Code::ParameterNull,
                &at,
                format!(
                    "parameter {:?} is null; send [] only to remove every assignment",
                    param.name
                ),
            )),
            Some(Json::Array(items)) => {
                if items.is_empty() {
                    w.out.push(Deviation::new(Code::EmptyAssignments, &at, format!(
                        "{:?} is empty: assign replaces every assignment, so this REMOVES ALL existing \
                         assignments of the object",
                        param.name
                    )));
                }
                w.collection(items, &param.element_type, &at);
            }
            Some(other) => w.out.push(Deviation::new(
                Code::ParameterNotArray,
                &at,
                format!(
                    "parameter {:?} must be an array, not {}",
                    param.name,
                    other.kind()
                ),
            )),
        }
    }
}

/// Checks the elements of a collection of `element_type` (a response's `value`), at `at`.
pub(super) fn check_collection(
    version: ApiVersion,
    element_type: &str,
    items: &[Json<'_>],
    at: &str,
    out: &mut Found,
) {
    let mut w = Walker {
        version,
        types: types(version),
        out,
    };
    w.collection(items, element_type, at);
}

impl Walker<'_> {
    fn collection(&mut self, items: &[Json<'_>], element_type: &str, at: &str) {
        if element_type == "Edm.String" {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    self.out.push(Deviation::new(
                        Code::PropertyWrongType,
                        format!("{at}/{i}"),
                        format!("expected a string, found {}", item.kind()),
                    ));
                }
            }
            return;
        }
        let declared = self.types.get(element_type);
        let mut targets: Vec<Aimed<'_>> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}/{i}");
            let Json::Object(obj) = item else {
                self.out.push(Deviation::new(
                    Code::ElementNotObject,
                    &here,
                    format!("each assignment must be an object, found {}", item.kind()),
                ));
                continue;
            };
            let Some(declared) = declared else {
                continue; // a beta element type graph-vcr does not model
            };
            self.object(obj, declared, &here, Role::Element);
            if let Some(Json::Object(target)) = obj.get("target") {
                let ty = target
                    .get("@odata.type")
                    .and_then(Json::as_str)
                    .unwrap_or("");
                let ty = ty.trim_start_matches('#');
                // As the registry spells it, whatever case the body used.
                let ty = self.types.get(ty).map_or(ty, |t| t.name.as_str());
                let id = ["groupId", "collectionId"]
                    .iter()
                    .find_map(|k| target.get(k).and_then(Json::as_str))
                    .unwrap_or("");
                targets.push(Aimed {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    ty,
                    id,
                    element: item,
                });
            }
        }
        across::check(&mut targets, at, self.out);
    }

    /// Checks an object against `declared`, resolving its `@odata.type`.
    fn object(&mut self, obj: &Object<'_>, declared: &'static TypeInfo, at: &str, role: Role) {
        let Some(actual) = self.resolve(obj, declared, at, role) else {
            return;
        };
        if !actual.properties_known {
            return;
        }
        for (name, value) in obj.iter() {
            if name.starts_with('@') {
                continue; // OData annotations (@odata.type, @odata.id, ...)
            }
            let here = pointer(at, name);
            match actual.properties.get(name) {
                Some(prop) => self.value(value, prop, &here, name),
                None => self.unknown_property(actual, name, &here),
            }
        }
        for name in &actual.required {
            let missing = matches!(obj.get(name), None | Some(Json::Null));
            if missing {
                let code = if role == Role::Target {
                    Code::TargetPropertyMissing
                } else {
                    Code::RequiredPropertyMissing
                };
                self.out.push(Deviation::new(
                    code,
                    pointer(at, name),
                    format!("{} needs {name:?}", actual.name),
                ));
            }
        }
        if role == Role::Element && actual.properties.contains_key("target") {
            match obj.get("target") {
                None | Some(Json::Null) => self.out.push(Deviation::new(
                    Code::TargetMissing,
                    pointer(at, "target"),
                    "the assignment has no target: it would assign to nobody",
                )),
                _ => {}
            }
        }
        if role == Role::Target
            && let Some(Json::String(id)) = obj.get("groupId")
            && !is_guid(id)
        {
            self.out.push(Deviation::new(
                Code::GroupIdNotGuid,
                pointer(at, "groupId"),
                format!("groupId {id:?} is not a GUID; Entra group ids are"),
            ));
        }
    }

    /// A property the type does not declare: the service rejects it (these types are closed),
    /// so an error; in beta, whose registry is partial, a warning.
    fn unknown_property(&mut self, actual: &TypeInfo, name: &str, at: &str) {
        let mut message = format!(
            "{name:?} is not a property of {} in {}",
            actual.name, self.version
        );
        if let Some(near) = did_you_mean(name, actual.properties.keys()) {
            message.push_str(&format!("; did you mean {near:?}?"));
        } else if self.version == ApiVersion::V1
            && types(ApiVersion::Beta)
                .get(&actual.name)
                .is_some_and(|b| b.properties.contains_key(name))
        {
            message.push_str(" (it exists in beta only: send the call to /beta)");
        }
        let mut d = Deviation::new(Code::UnknownProperty, at, message);
        if self.version == ApiVersion::Beta {
            d = d.with_severity(Severity::Warning);
        }
        self.out.push(d);
    }

    /// The type an object really has: its `@odata.type` if that is `declared` or a subtype.
    fn resolve(
        &mut self,
        obj: &Object<'_>,
        declared: &'static TypeInfo,
        at: &str,
        role: Role,
    ) -> Option<&'static TypeInfo> {
        let here = pointer(at, "@odata.type");
        let name = match obj.get("@odata.type") {
            None if declared.is_abstract => {
                let (code, what) = match role {
                    Role::Target => (Code::TargetTypeMissing, "target"),
                    _ => (Code::OdataTypeUnknown, "object"),
                };
                self.out.push(Deviation::new(code, &here, format!(
                    "the {what} has no @odata.type, but {} is abstract: name the kind, e.g. \"#{}\"",
                    declared.name,
                    declared.derived.first().map_or("microsoft.graph.…", String::as_str)
                )));
                return None;
            }
            None => return Some(declared),
            Some(Json::String(name)) => name,
            Some(other) => {
                self.wrong(&here, "@odata.type", "a string", other);
                return None;
            }
        };
        if !name.starts_with('#') {
            self.out.push(Deviation::new(Code::OdataTypeWithoutHash, &here, format!(
                "{name:?} has no leading '#': OData JSON requires \"#{name}\" and the Graph SDKs only \
                 recognise the subtype with it (Graph's own examples omit it)"
            )));
        }
        let actual = self.types.get(name);
        if let Some(a) = actual.filter(|a| a.is_abstract) {
            // The SDKs build the base class from it and the service cannot make one.
            let (code, what) = match role {
                Role::Target => (Code::TargetTypeMissing, "target"),
                Role::Element => (Code::ElementTypeUnknown, "element"),
                Role::Nested => (Code::OdataTypeUnknown, "object"),
            };
            self.out.push(Deviation::new(
                code,
                &here,
                format!(
                    "the {what} names {}, which is abstract: name the kind ({})",
                    a.name,
                    self.concrete(declared)
                ),
            ));
            return None;
        }
        let allowed = actual.filter(|a| self.types.is_assignable(a, declared));
        if allowed.is_none() {
            let (code, why) = match (role, actual) {
                (Role::Element, _) => (
                    Code::ElementTypeUnknown,
                    "is not the element type of this collection",
                ),
                (Role::Target, None) => (
                    Code::TargetTypeUnknown,
                    "is not a known assignment target type",
                ),
                (Role::Target, Some(_)) => (
                    Code::TargetTypeNotAllowed,
                    "is a target type this action does not take",
                ),
                (Role::Nested, _) => (Code::OdataTypeUnknown, "is not a known subtype"),
            };
            let mut d = Deviation::new(
                code,
                &here,
                format!(
                    "{name:?} {why} (expected one of: {})",
                    self.concrete(declared)
                ),
            );
            if self.version == ApiVersion::Beta && actual.is_none() {
                // graph-vcr's beta registry is partial: an unknown name may be a new beta type.
                d = d.with_severity(Severity::Warning);
            }
            self.out.push(d);
        }
        allowed
    }

    /// The concrete types that may stand where `declared` is, as a client writes them.
    fn concrete(&self, declared: &TypeInfo) -> String {
        let mut names: Vec<String> = std::iter::once(&declared.name)
            .chain(declared.derived.iter())
            .filter(|n| self.types.get(n).is_some_and(|t| !t.is_abstract))
            .map(|n| format!("#{n}"))
            .collect();
        names.sort();
        names.join(", ")
    }

    fn value(&mut self, value: &Json<'_>, prop: &Property, at: &str, name: &str) {
        if value.is_null() {
            if !prop.nullable {
                self.out.push(Deviation::new(
                    Code::PropertyWrongType,
                    at,
                    format!("{name:?} must not be null"),
                ));
            }
            return;
        }
        if prop.collection {
            match value {
                Json::Array(items) => {
                    let single = Property {
                        collection: false,
                        ..prop.clone()
                    };
                    for (i, item) in items.iter().enumerate() {
                        self.value(item, &single, &format!("{at}/{i}"), name);
                    }
                }
                other => self.wrong(at, name, "an array", other),
            }
            return;
        }
        match prop.ty.as_str() {
            "Edm.String" => {
                if !value.is_string() {
                    self.wrong(at, name, "a string", value);
                }
            }
            ty @ ("Edm.DateTimeOffset" | "Edm.Duration" | "Edm.Guid" | "Edm.Date") => {
                let (valid, example): (fn(&str) -> bool, &str) = match ty {
                    "Edm.DateTimeOffset" => (is_date_time_offset, "\"2026-12-01T09:30:00Z\""),
                    "Edm.Date" => (is_date, "\"2026-12-01\""),
                    "Edm.Duration" => (is_duration, "\"PT1H30M\""),
                    _ => (is_guid, "a GUID"),
                };
                match value.as_str() {
                    None => self.wrong(at, name, "a string", value),
                    Some(s) if !valid(s) => self.out.push(Deviation::new(
                        Code::PropertyWrongType,
                        at,
                        format!("{name:?} is {s:?}, which is not an {ty}: the service rejects it (e.g. {example})"),
                    )),
                    Some(_) => {}
                }
            }
            "Edm.Boolean" => {
                if !value.is_boolean() {
                    self.wrong(at, name, "true or false", value);
                }
            }
            ty @ ("Edm.Int32" | "Edm.Int64" | "Edm.Int16" | "Edm.Byte") => {
                let (min, max): (i128, i128) = match ty {
                    "Edm.Int32" => (i32::MIN.into(), i32::MAX.into()),
                    "Edm.Int16" => (i16::MIN.into(), i16::MAX.into()),
                    "Edm.Byte" => (0, 255),
                    _ => (i64::MIN.into(), i64::MAX.into()),
                };
                let n = value
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| value.as_u64().map(i128::from));
                match n {
                    None => self.wrong(at, name, "an integer", value),
                    Some(n) if n < min || n > max => self.out.push(Deviation::new(
                        Code::PropertyWrongType,
                        at,
                        format!(
                            "{name:?} is {n}, outside {ty} ({min} to {max}): the service rejects it"
                        ),
                    )),
                    Some(_) => {}
                }
            }
            "object" => {
                if !value.is_object() {
                    self.wrong(at, name, "an object", value);
                }
            }
            ty => {
                if let Some(members) = self.types.enum_members(ty) {
                    match value.as_str() {
                        None => self.wrong(at, name, "an enum member (a string)", value),
                        // No enum of these contracts is a flags enum (the CSDL says
                        // IsFlags=false): one member, never a comma-joined list.
                        Some(s) if !members.iter().any(|k| k.eq_ignore_ascii_case(s.trim())) => {
                            let why = if s.contains(',') {
                                " and is not a flags enum, so it takes one member, not a list"
                            } else {
                                ""
                            };
                            let mut d = Deviation::new(
                                Code::UnknownEnumValue,
                                at,
                                format!(
                                    "{s:?} is not a member of {ty}{why} ({}); the service rejects it",
                                    members.join(", ")
                                ),
                            );
                            if self.version == ApiVersion::Beta {
                                d = d.with_severity(Severity::Warning);
                            }
                            self.out.push(d);
                        }
                        Some(_) => {}
                    }
                } else if let Some(complex) = self.types.get(ty) {
                    match value {
                        Json::Object(obj) => {
                            let role = if name == "target" {
                                Role::Target
                            } else {
                                Role::Nested
                            };
                            self.object(obj, complex, at, role);
                        }
                        other => self.wrong(at, name, "an object", other),
                    }
                }
            }
        }
    }

    fn wrong(&mut self, at: &str, name: &str, expected: &str, found: &Json<'_>) {
        self.out.push(Deviation::new(
            Code::PropertyWrongType,
            at,
            format!("{name:?} must be {expected}, found {}", found.kind()),
        ));
    }
}

fn pointer(base: &str, token: &str) -> String {
    let mut out = String::with_capacity(base.len() + token.len() + 1);
    out.push_str(base);
    out.push('/');
    if token.contains(['~', '/']) {
        out.push_str(&token.replace('~', "~0").replace('/', "~1"));
    } else {
        out.push_str(token);
    }
    out
}

/// The declared name `name` was probably meant as: the same but for case, or within two edits
/// (`groupIds` for `groupId`).
fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance over bytes (property names are ASCII), bounded to short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 2 || a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// `2026-12-01T09:30:00Z`, with optional seconds, fraction and a `Z` or `±hh:mm` offset.
fn is_date_time_offset(s: &str) -> bool {
    let Some((date, rest)) = s.split_once(['T', 't']) else {
        return false;
    };
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    let (time, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => return false,
    };
    let offset_ok = offset.eq_ignore_ascii_case("z")
        || (offset.len() == 6
            && offset.as_bytes()[3] == b':'
            && digits(&offset[1..3], 2)
            && digits(&offset[4..], 2));
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let parts: Vec<&str> = hms.split(':').collect();
    let time_ok = matches!(parts.len(), 2 | 3)
        && parts.iter().all(|p| digits(p, 2))
        && parts[0] < "24"
        && parts[1] < "60"
        && parts.get(2).is_none_or(|sec| *sec < "61")
        && !fraction.is_empty()
        && fraction.bytes().all(|b| b.is_ascii_digit());
    is_date(date) && time_ok && offset_ok
}

/// `2026-12-01`, with a real month and day of month.
fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    let num = |t: &str, n: usize| {
        (t.len() == n && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
    };
    match (num(y, 4), num(m, 2), num(d, 2)) {
        (Some(_), Some(m), Some(d)) => (1..=12).contains(&m) && (1..=31).contains(&d),
        _ => false,
    }
}

/// An ISO 8601 duration as OData writes one: `P1D`, `PT1H30M`, `-P2DT0.5S`.
fn is_duration(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let Some(rest) = s.strip_prefix('P') else {
        return false;
    };
    let (days, time) = rest
        .split_once('T')
        .map_or((rest, None), |(d, t)| (d, Some(t)));
    let unit_list = |text: &str, units: &[u8]| {
        let mut number = false;
        let mut next_unit = 0;
        for b in text.bytes() {
            if b.is_ascii_digit() || (b == b'.' && number) {
                number = true;
            } else if let Some(at) = units[next_unit..].iter().position(|u| *u == b) {
                if !number {
                    return None;
                }
                next_unit += at + 1;
                number = false;
            } else {
                return None;
            }
        }
        (!number).then_some(next_unit > 0)
    };
    let days_ok = days.is_empty() || unit_list(days, b"D") == Some(true);
    let time_ok = time.is_none_or(|t| unit_list(t, b"HMS") == Some(true));
    days_ok && time_ok && (!days.is_empty() || time.is_some())
}
