//! The body half of the contract check: parameters, assignment elements, targets, settings.
//!
//! Walks the body against the declared types of the action's parameters (from
//! `contract::types`), resolving each `@odata.type` to a subtype of the declared type.

use super::{Code, Deviation, Found, Severity};
use crate::classify::is_guid;
use crate::contract::types::{Property, TypeInfo, Types, types};
use crate::contract::{Action, ApiVersion};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

const GROUP: &str = "microsoft.graph.groupassignmenttarget";
const EXCLUSION: &str = "microsoft.graph.exclusiongroupassignmenttarget";

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
    body: Result<&Value, &serde_json::Error>,
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
    let Value::Object(top) = value else {
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
            Some(Value::Null) => w.out.push(Deviation::new(
                Code::ParameterNull,
                &at,
                format!(
                    "parameter {:?} is null; send [] only to remove every assignment",
                    param.name
                ),
            )),
            Some(Value::Array(items)) => {
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
                    json_kind(other)
                ),
            )),
        }
    }
}

impl Walker<'_> {
    fn collection(&mut self, items: &[Value], element_type: &str, at: &str) {
        if element_type == "Edm.String" {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    self.out.push(Deviation::new(
                        Code::PropertyWrongType,
                        format!("{at}/{i}"),
                        format!("expected a string, found {}", json_kind(item)),
                    ));
                }
            }
            return;
        }
        let declared = self.types.get(element_type);
        let mut targets: Vec<(String, String, String)> = Vec::new(); // (pointer, type, id)
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}/{i}");
            let Value::Object(obj) = item else {
                self.out.push(Deviation::new(
                    Code::ElementNotObject,
                    &here,
                    format!(
                        "each assignment must be an object, found {}",
                        json_kind(item)
                    ),
                ));
                continue;
            };
            let Some(declared) = declared else {
                continue; // a beta element type graph-vcr does not model
            };
            self.object(obj, declared, &here, Role::Element);
            if let Some(Value::Object(target)) = obj.get("target") {
                let ty = target
                    .get("@odata.type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let ty = ty.trim_start_matches('#').to_ascii_lowercase();
                let id = ["groupId", "collectionId"]
                    .iter()
                    .find_map(|k| target.get(*k).and_then(Value::as_str))
                    .unwrap_or("")
                    .to_ascii_lowercase();
                targets.push((format!("{here}/target"), ty, id));
            }
        }
        self.cross_element(&targets);
    }

    fn cross_element(&mut self, targets: &[(String, String, String)]) {
        let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
        for (at, ty, id) in targets {
            if let Some(first) = seen.insert((ty.as_str(), id.as_str()), at.as_str()) {
                self.out.push(Deviation::new(
                    Code::DuplicateTarget,
                    at,
                    format!("the same target as {first} ({ty} {id}); one of them is redundant"),
                ));
            }
        }
        let included: HashSet<&str> = targets
            .iter()
            .filter(|(_, t, _)| t == GROUP)
            .map(|(_, _, id)| id.as_str())
            .collect();
        for (at, ty, id) in targets {
            if ty == EXCLUSION && !id.is_empty() && included.contains(id.as_str()) {
                self.out.push(Deviation::new(Code::GroupIncludedAndExcluded, at,
                    format!("group {id} is both included and excluded; Intune's result is not what either intends")));
            }
        }
    }

    /// Checks an object against `declared`, resolving its `@odata.type`.
    fn object(
        &mut self,
        obj: &Map<String, Value>,
        declared: &'static TypeInfo,
        at: &str,
        role: Role,
    ) {
        let Some(actual) = self.resolve(obj, declared, at, role) else {
            return;
        };
        if !actual.properties_known {
            return;
        }
        for (name, value) in obj {
            if name.starts_with('@') {
                continue; // OData annotations (@odata.type, @odata.id, ...)
            }
            let here = pointer(at, name);
            match actual.properties.get(name) {
                Some(prop) => self.value(value, prop, &here, name),
                None => self.out.push(Deviation::new(
                    Code::UnknownProperty,
                    &here,
                    format!(
                        "{name:?} is not a property of {} in {}{}",
                        actual.name,
                        self.version,
                        if self.version == ApiVersion::V1 {
                            " (assignment filters and source exist in beta only)"
                        } else {
                            ""
                        }
                    ),
                )),
            }
        }
        for name in &actual.required {
            let missing = matches!(obj.get(name), None | Some(Value::Null));
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
                None | Some(Value::Null) => self.out.push(Deviation::new(
                    Code::TargetMissing,
                    pointer(at, "target"),
                    "the assignment has no target: it would assign to nobody",
                )),
                _ => {}
            }
        }
        if role == Role::Target
            && let Some(Value::String(id)) = obj.get("groupId")
            && !is_guid(id)
        {
            self.out.push(Deviation::new(
                Code::GroupIdNotGuid,
                pointer(at, "groupId"),
                format!("groupId {id:?} is not a GUID; Entra group ids are"),
            ));
        }
    }

    /// The type an object really has: its `@odata.type` if that is `declared` or a subtype.
    fn resolve(
        &mut self,
        obj: &Map<String, Value>,
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
            Some(Value::String(name)) => name,
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
                format!("{name:?} {why} (expected {} or a subtype)", declared.name),
            );
            if self.version == ApiVersion::Beta && actual.is_none() {
                // graph-vcr's beta registry is partial: an unknown name may be a new beta type.
                d = d.with_severity(Severity::Warning);
            }
            self.out.push(d);
        }
        allowed
    }

    fn value(&mut self, value: &Value, prop: &Property, at: &str, name: &str) {
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
                Value::Array(items) => {
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
            "Edm.String" | "Edm.DateTimeOffset" | "Edm.Duration" | "Edm.Guid" | "Edm.Date" => {
                if !value.is_string() {
                    self.wrong(at, name, "a string", value);
                }
            }
            "Edm.Boolean" => {
                if !value.is_boolean() {
                    self.wrong(at, name, "true or false", value);
                }
            }
            "Edm.Int32" | "Edm.Int64" | "Edm.Int16" | "Edm.Byte" => {
                if !(value.is_i64() || value.is_u64()) {
                    self.wrong(at, name, "an integer", value);
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
                        Some(s) => {
                            let known = s
                                .split(',')
                                .all(|m| members.iter().any(|k| k.eq_ignore_ascii_case(m.trim())));
                            if !known {
                                self.out.push(Deviation::new(
                                    Code::UnknownEnumValue,
                                    at,
                                    format!(
                                        "{s:?} is not a member of {ty} ({})",
                                        members.join(", ")
                                    ),
                                ));
                            }
                        }
                    }
                } else if let Some(complex) = self.types.get(ty) {
                    match value {
                        Value::Object(obj) => {
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

    fn wrong(&mut self, at: &str, name: &str, expected: &str, found: &Value) {
        self.out.push(Deviation::new(
            Code::PropertyWrongType,
            at,
            format!("{name:?} must be {expected}, found {}", json_kind(found)),
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

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
