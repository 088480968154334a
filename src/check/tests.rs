//! Table-driven: every deviation code has a request (or response) that triggers it and a close
//! one that does not.

use super::*;
use crate::classify::classify;
use crate::contract::registry;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};

const SEED: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/cfg-1/assign";
const G1: &str = "3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d";
const G2: &str = "9b2d4c6e-1a3f-4e5d-8c7b-6a5f4e3d2c1b";

use crate::contract::SEED_EXAMPLE_BODY as SEED_BODY;

/// The same call as msgraph-sdk sends it.
const SDK_BODY: &str = r##"{"enrollmentConfigurationAssignments":[{"id":"705b021c-021c-705b-1c02-5b701c025b70","target":{"@odata.type":"#microsoft.graph.configurationManagerCollectionAssignmentTarget","collectionId":"Collection Id value"}}]}"##;

#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: String,
}

fn req(body: Value) -> Req {
    req_raw(&body.to_string())
}

fn req_raw(body: &str) -> Req {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer eyJ0.token"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    Req {
        method: Method::POST,
        path: SEED.into(),
        headers,
        body: body.into(),
    }
}

impl Req {
    fn at(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn header(mut self, k: &'static str, v: &'static str) -> Self {
        self.headers
            .insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        self
    }
    fn without(mut self, k: &'static str) -> Self {
        self.headers.remove(k);
        self
    }
    fn check(&self) -> Vec<Deviation> {
        check_request(
            &self.method,
            &classify(&self.path, None),
            &self.headers,
            self.body.as_bytes(),
        )
    }
}

/// An enrollment assign body whose single element has `target`.
fn target(t: Value) -> Value {
    json!({"enrollmentConfigurationAssignments": [{"target": t}]})
}

fn group(id: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": id})
}

fn excl(id: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": id})
}

fn targets(ts: Vec<Value>) -> Value {
    let items: Vec<Value> = ts.into_iter().map(|t| json!({"target": t})).collect();
    json!({"enrollmentConfigurationAssignments": items})
}

struct Resp {
    path: &'static str,
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
}

fn resp(status: u16, body: &'static str) -> Resp {
    Resp {
        path: SEED,
        status,
        headers: vec![("request-id", "r-1")],
        body,
    }
}

impl Resp {
    fn check(&self) -> Vec<Deviation> {
        let mut h = HeaderMap::new();
        for (k, v) in &self.headers {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::IM_A_TEAPOT);
        check_response(
            classify(self.path, None).action,
            status,
            &h,
            self.body.as_bytes(),
        )
    }
}

enum Case {
    Q(Req),
    R(Resp),
}

impl Case {
    fn codes(&self) -> Vec<Code> {
        match self {
            Case::Q(r) => r.check(),
            Case::R(r) => r.check(),
        }
        .into_iter()
        .map(|d| d.code)
        .collect()
    }
}

/// `Bearer <a JWT with claims>`, for the permission cases (leaked: tests only).
fn bearer(claims: Value) -> &'static str {
    use base64::Engine;
    let part = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "Bearer {}.{}.sig",
        part(&json!({"typ": "JWT"})),
        part(&claims)
    );
    Box::leak(token.into_boxed_str())
}

fn table() -> Vec<(Code, Case, Case)> {
    use Case::{Q, R};
    let ok = || req(target(group(G1)));
    let mobile = "/v1.0/deviceAppManagement/mobileApps/app-1/assign";
    let config = "/v1.0/deviceManagement/deviceConfigurations/dc-1/assign";
    vec![
        (Code::MethodNotPost, Q(ok().method(Method::PUT)), Q(ok())),
        (Code::UnknownApiVersion, Q(ok().at("/v2/deviceManagement/deviceEnrollmentConfigurations/c/assign")), Q(ok().at("/beta/deviceManagement/deviceEnrollmentConfigurations/c/assign"))),
        (Code::AuthMissing, Q(ok().without("authorization")), Q(ok())),
        (Code::AuthNotBearer, Q(ok().header("authorization", "Basic dXNlcjpwYXNz")), Q(ok().header("authorization", "bearer abc"))),
        (Code::ContentTypeNotJson, Q(ok().header("content-type", "text/plain")), Q(ok().header("content-type", "application/json; charset=utf-8"))),
        (Code::AcceptExcludesJson, Q(ok().header("accept", "application/xml")), Q(ok().header("accept", "application/xml, */*;q=0.1"))),
        (Code::BodyNotJson, Q(req_raw("{\"enrollmentConfigurationAssignments\": [")), Q(req_raw("{\"enrollmentConfigurationAssignments\": [{\"target\": {\"@odata.type\": \"#microsoft.graph.allDevicesAssignmentTarget\"}}]}"))),
        (Code::BodyNotObject, Q(req(json!([group(G1)]))), Q(ok())),
        (Code::ParameterMissing, Q(req(json!({"assignments": []}))), Q(ok())),
        (Code::ParameterNull, Q(req(json!({"enrollmentConfigurationAssignments": null}))), Q(req(json!({"enrollmentConfigurationAssignments": []})))),
        (Code::ParameterNotArray, Q(req(json!({"enrollmentConfigurationAssignments": {"target": group(G1)}}))), Q(ok())),
        (Code::DuplicateMember, Q(req_raw(&target(group(G1)).to_string().replacen('{', r#"{"enrollmentConfigurationAssignments":[],"#, 1))), Q(ok())),
        (Code::UnknownParameter, Q(req(json!({"enrollmentConfigurationAssignments": [], "assignments": []}))), Q(req(json!({"enrollmentConfigurationAssignments": [], "@odata.context": "x"})))),
        (Code::EmptyAssignments, Q(req(json!({"enrollmentConfigurationAssignments": []}))), Q(ok())),
        (Code::ElementNotObject, Q(req(json!({"enrollmentConfigurationAssignments": [G1]}))), Q(ok())),
        (Code::ElementTypeUnknown, Q(req(json!({"enrollmentConfigurationAssignments": [{"@odata.type": "#microsoft.graph.mobileAppAssignment", "target": group(G1)}]}))),
            Q(req(json!({"enrollmentConfigurationAssignments": [{"@odata.type": "microsoft.graph.enrollmentConfigurationAssignment", "target": group(G1)}]})))),
        (Code::TargetMissing, Q(req(json!({"enrollmentConfigurationAssignments": [{"id": "a"}]}))), Q(ok())),
        (Code::TargetTypeMissing, Q(req(target(json!({"groupId": G1})))), Q(ok())),
        (Code::TargetTypeUnknown, Q(req(target(json!({"@odata.type": "#microsoft.graph.everyoneTarget"})))), Q(req(target(json!({"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"}))))),
        (Code::TargetTypeNotAllowed, Q(req(target(json!({"@odata.type": "#microsoft.graph.cloudPcManagementGroupAssignmentTarget", "groupId": G1})))), Q(ok())),
        (Code::TargetPropertyMissing, Q(req(target(json!({"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget"})))), Q(req(target(excl(G1))))),
        (Code::RequiredPropertyMissing, Q(req(json!({"mobileAppAssignments": [{"target": group(G1)}]})).at(mobile)), Q(req(json!({"mobileAppAssignments": [{"intent": "required", "target": group(G1)}]})).at(mobile))),
        (Code::OdataTypeUnknown, Q(req(json!({"mobileAppAssignments": [{"intent": "required", "target": group(G1), "settings": {"@odata.type": "#microsoft.graph.notASettingsType"}}]})).at(mobile)),
            Q(req(json!({"mobileAppAssignments": [{"intent": "required", "target": group(G1), "settings": {"@odata.type": "#microsoft.graph.win32LobAppAssignmentSettings", "notifications": "showAll"}}]})).at(mobile))),
        (Code::PropertyWrongType, Q(req(target(json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": 42})))), Q(ok())),
        (Code::UnknownEnumValue, Q(req(json!({"mobileAppAssignments": [{"intent": "mandatory", "target": group(G1)}]})).at(mobile)), Q(req(json!({"mobileAppAssignments": [{"intent": "availableWithoutEnrollment", "target": group(G1)}]})).at(mobile))),
        (Code::UnknownProperty, Q(req(target(json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": G1, "deviceAndAppManagementAssignmentFilterId": G2})))),
            Q(req(target(json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": G1, "deviceAndAppManagementAssignmentFilterId": G2}))).at("/beta/deviceManagement/deviceEnrollmentConfigurations/c/assign"))),
        (Code::OdataTypeWithoutHash, Q(req(target(json!({"@odata.type": "microsoft.graph.groupAssignmentTarget", "groupId": G1})))), Q(ok())),
        (Code::GroupIdNotGuid, Q(req(target(group("Sales team")))), Q(req(target(group(&G1.to_uppercase()))))),
        (Code::DuplicateTarget, Q(req(targets(vec![group(G1), group(G1)]))), Q(req(targets(vec![group(G1), group(G2)])))),
        (Code::GroupIncludedAndExcluded, Q(req(targets(vec![group(G1), excl(G1)]))), Q(req(targets(vec![group(G1), excl(G2)])))),
        (Code::UnexpectedSuccessStatus, R(resp(200, "")), R(resp(204, ""))),
        (Code::SuccessBodyNotValue, R(Resp { path: config, ..resp(200, "{}") }), R(Resp { path: config, ..resp(200, r#"{"value":[]}"#) })),
        (Code::BodyOn204, R(resp(204, "{}")), R(resp(204, ""))),
        (Code::ErrorBodyNotGraphFormat, R(resp(400, "Bad Request")), R(resp(400, r#"{"error":{"code":"BadRequest","message":"x"}}"#))),
        (Code::ResponseMissingRequestId, R(Resp { headers: vec![], ..resp(204, "") }), R(resp(204, ""))),
        (Code::ThrottleMissingRetryAfter, R(resp(429, r#"{"error":{"code":"TooManyRequests","message":"x"}}"#)),
            R(Resp { headers: vec![("request-id", "r"), ("retry-after", "2")], ..resp(429, r#"{"error":{"code":"TooManyRequests","message":"x"}}"#) })),
        (Code::InsufficientPermission, Q(ok().header("authorization", bearer(json!({"scp": "DeviceManagementServiceConfig.Read.All"})))),
            Q(ok().header("authorization", bearer(json!({"scp": "openid DeviceManagementServiceConfig.ReadWrite.All"}))))),
    ]
}

#[test]
fn every_code_is_triggered_by_its_case_and_not_by_the_close_one() {
    let table = table();
    // The `$batch` codes have theirs in `batch::tests` (batch depends on check, not the
    // other way round); how a client copes with throttling is judged over a run, not per
    // request (its cases are in tests/throttle.rs).
    let elsewhere = |c: &&Code| {
        c.as_str().starts_with("batch-")
            || matches!(c, Code::RetryTooEarly | Code::AbandonedAfterThrottle)
    };
    for code in Code::ALL.iter().filter(|c| !elsewhere(c)) {
        assert!(
            table.iter().any(|(c, _, _)| c == code),
            "no table entry for {code}"
        );
    }
    for (code, trigger, near) in &table {
        let got = trigger.codes();
        assert!(got.contains(code), "{code}: trigger gave {got:?}");
        let got = near.codes();
        assert!(!got.contains(code), "{code}: close case gave {got:?}");
    }
}

#[test]
fn every_code_is_documented() {
    let doc = include_str!("../../docs/DEVIATIONS.md");
    for code in Code::ALL {
        assert!(
            doc.contains(&format!("`{code}`")),
            "docs/DEVIATIONS.md lacks {code}"
        );
    }
}

#[test]
fn the_seed_example_and_the_sdk_body_pass_without_errors() {
    let seed = req_raw(SEED_BODY).check();
    // Graph's own example omits '#' on the target type: exactly one warning, no error.
    assert_eq!(
        seed.iter().map(|d| d.code).collect::<Vec<_>>(),
        vec![Code::OdataTypeWithoutHash],
        "{seed:?}"
    );
    assert!(!has_error(&seed));
    assert_eq!(req_raw(SDK_BODY).check(), vec![]);
}

#[test]
fn beta_unknown_target_types_are_warnings_because_the_beta_registry_is_partial() {
    let body = target(
        json!({"@odata.type": "#microsoft.graph.scopeTagGroupAssignmentTarget", "targetType": "user"}),
    );
    let beta = req(body.clone())
        .at("/beta/deviceManagement/deviceEnrollmentConfigurations/c/assign")
        .check();
    assert!(
        beta.iter()
            .any(|d| d.code == Code::TargetTypeUnknown && d.severity == Severity::Warning),
        "{beta:?}"
    );
    let v1 = req(body).check();
    assert!(
        v1.iter()
            .any(|d| d.code == Code::TargetTypeUnknown && d.severity == Severity::Error),
        "{v1:?}"
    );
}

/// A passing body for each v1.0 action, built from its registry entry.
fn passing_body(parameter: &str, element_type: &str) -> Value {
    let t = if element_type.contains("cloudPc") {
        json!({"@odata.type": "#microsoft.graph.cloudPcManagementGroupAssignmentTarget", "groupId": G1})
    } else {
        group(G1)
    };
    let mut element = json!({"target": t});
    if element_type.ends_with("mobileAppAssignment") {
        element["intent"] = json!("required");
    }
    if element_type.ends_with("managedEBookAssignment") {
        element["installIntent"] = json!("available");
    }
    json!({ parameter: [element] })
}

#[test]
fn every_v1_action_has_a_passing_and_a_failing_case() {
    let mut n = 0;
    for action in registry().actions().filter(|a| a.version == ApiVersion::V1) {
        let path = format!("/v1.0{}", action.path.replace("{id}", "x-1"));
        let p = &action.parameters[0];
        let pass = req(passing_body(&p.name, &p.element_type))
            .at(&path)
            .check();
        assert_eq!(pass, vec![], "{path}");
        // Failing: the same assignments under a parameter name this action does not take.
        let wrong = json!({ "x": passing_body(&p.name, &p.element_type)[&p.name].clone() });
        let fail = req(wrong).at(&path).check();
        assert!(has_error(&fail), "{path}: {fail:?}");
        assert!(
            fail.iter().any(|d| d.code == Code::ParameterMissing),
            "{path}: {fail:?}"
        );
        n += 1;
    }
    assert_eq!(n, 12);
}

#[test]
fn the_empty_list_warning_says_it_is_destructive() {
    let d = req(json!({"enrollmentConfigurationAssignments": []})).check();
    assert!(
        d.iter()
            .any(|d| d.code == Code::EmptyAssignments && d.message.contains("REMOVES ALL")),
        "{d:?}"
    );
}

#[test]
fn pointers_name_the_place() {
    let d = req(targets(vec![
        group(G1),
        json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget"}),
    ]))
    .check();
    let missing = d.iter().find(|d| d.code == Code::TargetPropertyMissing);
    assert_eq!(
        missing.map(|d| &*d.at),
        Some("/enrollmentConfigurationAssignments/1/target/groupId")
    );
}

#[test]
fn non_assign_requests_are_not_checked() {
    let r = Req {
        path: "/v1.0/me".into(),
        ..req_raw("")
    }
    .without("authorization");
    assert_eq!(r.check(), vec![]);
}

#[test]
fn header_value_lists_distinct_codes_in_order() {
    let d = req(targets(vec![group("a"), group("b")])).check();
    assert_eq!(header_value(&d), "group-id-not-guid");
}

/// Beta actions that take two lists accept either alone, and both (issue 16: every beta SDK
/// call with one list was flagged `parameter-missing`); sending neither is still flagged, once.
#[test]
fn two_list_actions_accept_either_list_alone() {
    let mut n = 0;
    for action in registry().actions().filter(|a| a.parameters.len() > 1) {
        let path = format!("/{}{}", action.version, action.path.replace("{id}", "x-1"));
        for p in &action.parameters {
            let one = req(passing_body(&p.name, &p.element_type))
                .at(&path)
                .check();
            assert!(
                !one.iter().any(|d| d.code == Code::ParameterMissing),
                "{path} with only {}: {one:?}",
                p.name
            );
        }
        let neither = req(json!({})).at(&path).check();
        let missing: Vec<_> = neither
            .iter()
            .filter(|d| d.code == Code::ParameterMissing)
            .collect();
        assert_eq!(
            missing.len(),
            action.parameters.len(),
            "{path}: {neither:?}"
        );
        assert!(
            missing[0]
                .message
                .contains("none of this action's parameters")
        );
        n += 1;
    }
    assert_eq!(n, 5, "the beta actions that take two lists");
}

/// Issue 16: what the v1.0 walk missed, each with a failing and a passing case.
#[test]
fn values_the_service_rejects_are_errors() {
    let mobile = "/v1.0/deviceAppManagement/mobileApps/app-1/assign";
    let app = |element: Value| req(json!({"mobileAppAssignments": [element]})).at(mobile);
    let win32 = |extra: Value| {
        let mut settings = json!({"@odata.type": "#microsoft.graph.win32LobAppAssignmentSettings", "notifications": "showAll"});
        if let (Value::Object(s), Value::Object(e)) = (&mut settings, extra) {
            s.extend(e);
        }
        app(json!({"intent": "required", "target": group(G1), "settings": settings}))
    };
    let cases: Vec<(Code, Req, Req)> = vec![
        // A comma-joined value of an enum that is not a flags enum.
        (
            Code::UnknownEnumValue,
            app(json!({"intent": "required,available", "target": group(G1)})),
            app(json!({"intent": "required", "target": group(G1)})),
        ),
        // Int32 overflow.
        (
            Code::PropertyWrongType,
            win32(
                json!({"restartSettings": {"gracePeriodInMinutes": 4_294_967_296_i64, "countdownDisplayBeforeRestartInMinutes": 5}}),
            ),
            win32(
                json!({"restartSettings": {"gracePeriodInMinutes": 2_147_483_647, "countdownDisplayBeforeRestartInMinutes": 5}}),
            ),
        ),
        // A DateTimeOffset that is not one.
        (
            Code::PropertyWrongType,
            win32(json!({"installTimeSettings": {"startDateTime": "next tuesday"}})),
            win32(
                json!({"installTimeSettings": {"startDateTime": "2026-12-01T09:30:00.5+01:00", "deadlineDateTime": "2026-12-08T09:30:00Z"}}),
            ),
        ),
        // Abstract types named explicitly.
        (
            Code::TargetTypeMissing,
            req(target(
                json!({"@odata.type": "#microsoft.graph.deviceAndAppManagementAssignmentTarget"}),
            )),
            req(target(
                json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}),
            )),
        ),
        (
            Code::OdataTypeUnknown,
            app(
                json!({"intent": "required", "target": group(G1), "settings": {"@odata.type": "#microsoft.graph.mobileAppAssignmentSettings"}}),
            ),
            app(
                json!({"intent": "required", "target": group(G1), "settings": {"@odata.type": "#microsoft.graph.iosLobAppAssignmentSettings"}}),
            ),
        ),
    ];
    for (code, trigger, near) in cases {
        let got = trigger.check();
        assert!(
            got.iter()
                .any(|d| d.code == code && d.severity == Severity::Error),
            "{code}: {got:#?}"
        );
        let got = near.check();
        assert!(!got.iter().any(|d| d.code == code), "{code} near: {got:#?}");
    }
    // Graph rejects both with 400, so they are errors (and `reject` stops them) in v1.0.
    let unknown = req(target(json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": G1, "priority": 1}))).check();
    assert!(
        unknown
            .iter()
            .any(|d| d.code == Code::UnknownProperty && d.severity == Severity::Error),
        "{unknown:?}"
    );
}

#[test]
fn messages_say_what_to_send() {
    let message = |r: Req, code: Code| {
        r.check()
            .into_iter()
            .find(|d| d.code == code)
            .map(|d| (d.at, d.message))
            .unwrap_or_default()
    };
    let (_, m) = message(
        req(target(
            json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": G1, "priority": 1}),
        )),
        Code::UnknownProperty,
    );
    assert!(!m.contains("beta"), "priority exists nowhere: {m}");
    let (_, m) = message(
        req(target(
            json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupIds": [G1]}),
        )),
        Code::UnknownProperty,
    );
    assert!(m.contains("did you mean \"groupId\"?"), "{m}");
    let (_, m) = message(
        req(target(
            json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": G1, "deviceAndAppManagementAssignmentFilterId": G2}),
        )),
        Code::UnknownProperty,
    );
    assert!(m.contains("exists in beta only"), "{m}");
    let (_, m) = message(
        req(target(
            json!({"@odata.type": "#microsoft.graph.everyoneTarget"}),
        )),
        Code::TargetTypeUnknown,
    );
    assert!(
        m.contains("#microsoft.graph.allDevicesAssignmentTarget")
            && m.contains("#microsoft.graph.groupAssignmentTarget"),
        "{m}"
    );
    let (at, m) = message(
        req(targets(vec![group(G1), excl(G1)])),
        Code::GroupIncludedAndExcluded,
    );
    assert!(
        m.contains("/enrollmentConfigurationAssignments/0/target")
            && m.contains("/enrollmentConfigurationAssignments/1/target"),
        "{at}: {m}"
    );
    let same = json!({"enrollmentConfigurationAssignments": [{"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}, {"target": {"@odata.type": "#Microsoft.Graph.AllDevicesAssignmentTarget"}}]});
    let (_, m) = message(req(same), Code::DuplicateTarget);
    assert!(
        m.contains("(microsoft.graph.allDevicesAssignmentTarget)") && m.contains("send it once"),
        "{m}"
    );
    let mobile = "/v1.0/deviceAppManagement/mobileApps/app-1/assign";
    let conflict = json!({"mobileAppAssignments": [{"intent": "required", "target": group(G1)}, {"intent": "available", "target": group(G1)}]});
    let (_, m) = message(req(conflict).at(mobile), Code::DuplicateTarget);
    assert!(
        m.contains(&format!("microsoft.graph.groupAssignmentTarget {G1}"))
            && m.contains("conflict")
            && !m.contains("redundant"),
        "{m}"
    );
}

/// The assignments a 200 says are in force are held to the element type (as warnings).
#[test]
fn a_200_value_is_checked_element_by_element() {
    let config = "/v1.0/deviceManagement/deviceConfigurations/c-1/assign";
    let check = |body: &'static str| {
        Resp {
            path: config,
            ..resp(200, body)
        }
        .check()
    };
    let bad = check(r#"{"value":[{"id":"a","target":{"groupId":"G"}}]}"#);
    let found = bad.iter().find(|d| d.code == Code::TargetTypeMissing);
    assert!(
        found.is_some_and(
            |d| d.severity == Severity::Warning && &*d.at == "/value/0/target/@odata.type"
        ),
        "{bad:?}"
    );
    let good = check(
        r##"{"value":[{"id":"a","target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##,
    );
    assert_eq!(good, vec![]);
}

/// Issue 16: beta actions whose element types only beta has (read from the beta SDK's models)
/// get the element and target checks v1.0 actions get.
#[test]
fn beta_only_actions_get_element_and_target_checks() {
    let actions = [
        (
            "/beta/deviceManagement/configurationPolicies/p-1/assign",
            "assignments",
        ),
        (
            "/beta/deviceManagement/deviceHealthScripts/s-1/assign",
            "deviceHealthScriptAssignments",
        ),
        (
            "/beta/deviceManagement/windowsFeatureUpdateProfiles/w-1/assign",
            "assignments",
        ),
    ];
    for (path, param) in actions {
        let body = |elements: Value| req(json!({ param: elements })).at(path).check();
        let cases = [
            (
                Code::TargetPropertyMissing,
                json!([{"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget"}}]),
            ),
            (Code::TargetMissing, json!([{"id": "a"}])),
            (
                Code::GroupIncludedAndExcluded,
                json!([{"target": group(G1)}, {"target": excl(G1)}]),
            ),
            (
                Code::TargetTypeMissing,
                json!([{"target": {"groupId": G1}}]),
            ),
        ];
        for (code, elements) in cases {
            let got = body(elements);
            assert!(
                got.iter()
                    .any(|d| d.code == code && d.severity == Severity::Error),
                "{path} {code}: {got:#?}"
            );
        }
        let unknown = body(json!([{"target": {"@odata.type": "#microsoft.graph.everyoneTarget"}}]));
        assert!(
            unknown.iter().any(|d| d.code == Code::TargetTypeUnknown),
            "{path}: {unknown:#?}"
        );
        let fine = body(
            json!([{"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": G1,
            "deviceAndAppManagementAssignmentFilterId": G2, "deviceAndAppManagementAssignmentFilterType": "include"}}]),
        );
        assert_eq!(fine, vec![], "{path}");
    }
}

#[test]
fn the_deviations_header_names_each_code_once_in_order() {
    use super::{Code, Deviation, header};
    let d = |c| Deviation::new(c, "/x", "m");
    assert_eq!(header(&[]), None);
    assert_eq!(
        header(&[d(Code::AuthMissing), d(Code::AuthMissing)])
            .as_ref()
            .map(|v| v.as_bytes()),
        Some(Code::AuthMissing.as_str().as_bytes())
    );
    let mixed = [
        d(Code::EmptyAssignments),
        d(Code::AuthMissing),
        d(Code::EmptyAssignments),
    ];
    let expected = format!(
        "{},{}",
        Code::EmptyAssignments.as_str(),
        Code::AuthMissing.as_str()
    );
    assert_eq!(
        header(&mixed).as_ref().map(|v| v.as_bytes()),
        Some(expected.as_bytes())
    );
    // Every code is a valid header value on its own.
    for c in Code::ALL {
        assert!(
            http::HeaderValue::from_str(c.as_str()).is_ok(),
            "{}",
            c.as_str()
        );
    }
}
