//! The registry of Graph `assign` action contracts.
//!
//! Contracts are data, not code: `contracts/actions.json` (generated from the reference data set,
//! see `contracts/generate.py`) is compiled into the binary and parsed once. Each entry names an
//! API version, a path template whose `{id}` segments match any id, the body parameters with
//! their declared element types, and the documented success status. The classifier uses the
//! registry to say which action a request is; the key uses it to know which collection is
//! order-insensitive and which `@odata.type` only restates the declared element type; `check`
//! uses it, with the types in [`types`], to hold each call to its documented contract.

pub mod types;

use serde::Deserialize;
use std::fmt;
use std::sync::LazyLock;

/// The request body of the seed document's example (the v1.0 deviceEnrollmentConfiguration
/// assign reference page), verbatim: the call the bundled example cassette holds, and the
/// reference point of the key and contract tests.
pub const SEED_EXAMPLE_BODY: &str = r##"{
  "enrollmentConfigurationAssignments": [
    {
      "@odata.type": "#microsoft.graph.enrollmentConfigurationAssignment",
      "id": "705b021c-021c-705b-1c02-5b701c025b70",
      "target": {
        "@odata.type": "microsoft.graph.configurationManagerCollectionAssignmentTarget",
        "collectionId": "Collection Id value"
      }
    }
  ]
}"##;

/// A Graph API version, the first path segment of every Graph URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum ApiVersion {
    #[serde(rename = "v1.0")]
    V1,
    #[serde(rename = "beta")]
    Beta,
}

impl ApiVersion {
    /// Parses a path segment; Graph treats the version segment case-insensitively.
    pub fn from_segment(segment: &str) -> Option<Self> {
        if segment.eq_ignore_ascii_case("v1.0") {
            Some(Self::V1)
        } else if segment.eq_ignore_ascii_case("beta") {
            Some(Self::Beta)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1.0",
            Self::Beta => "beta",
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One body parameter of an action: a collection whose elements have a declared type.
#[derive(Debug, Clone, Deserialize)]
pub struct Parameter {
    pub name: String,
    /// Fully qualified OData type, e.g. `microsoft.graph.enrollmentConfigurationAssignment`.
    pub element_type: String,
}

/// What a successful call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuccessBody {
    /// `204 No Content`.
    None,
    /// `200 OK` with `{"value": [...]}`.
    Value,
}

/// The contract of one assign action.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub version: ApiVersion,
    /// Path template below the version segment, e.g.
    /// `/deviceManagement/deviceEnrollmentConfigurations/{id}/assign`.
    pub path: String,
    pub parameters: Vec<Parameter>,
    pub success_status: u16,
    pub success_body: SuccessBody,
    pub doc_page: Option<String>,
    /// The documented permissions, least privileged first; `None` where the reference could
    /// not verify them (Cloud PC) and for beta (not documented per action there).
    #[serde(default)]
    pub permissions: Option<Permissions>,
    #[serde(skip)]
    segments: Vec<Segment>,
}

/// The permissions an action accepts, per permission type, least privileged first.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// Delegated (work or school account): the token's `scp`.
    pub delegated: Vec<String>,
    /// Application: the token's `roles`.
    pub application: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Name(String),
    Id,
}

impl Action {
    /// Whether `segments` (the request path below the version) matches this action's template.
    /// Segment names compare case-insensitively, as Graph does.
    pub fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self.segments.iter().zip(segments).all(|(t, s)| match t {
                Segment::Id => !s.is_empty(),
                Segment::Name(n) => n.eq_ignore_ascii_case(s),
            })
    }

    /// Whether path segment `index` is an id (a `{id}` in the template).
    pub fn is_id_segment(&self, index: usize) -> bool {
        matches!(self.segments.get(index), Some(Segment::Id))
    }

    /// The declared element type of body parameter `name`, if the action has it.
    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

/// All known actions.
pub struct Registry {
    actions: Vec<Action>,
}

#[derive(Deserialize)]
struct RegistryFile {
    actions: Vec<Action>,
}

const ACTIONS_JSON: &str = include_str!("../../contracts/actions.json");

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    // The file is part of this binary, not input: a parse failure is a build defect that the
    // unit test below catches, so failing loudly here is correct.
    #[allow(clippy::expect_used)]
    let file: RegistryFile =
        serde_json::from_str(ACTIONS_JSON).expect("contracts/actions.json is valid");
    Registry::new(file.actions)
});

/// The registry compiled into this binary.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

impl Registry {
    fn new(mut actions: Vec<Action>) -> Self {
        for action in &mut actions {
            action.segments = action
                .path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    if s.starts_with('{') {
                        Segment::Id
                    } else {
                        Segment::Name(s.to_string())
                    }
                })
                .collect();
        }
        Self { actions }
    }

    /// The action at `segments` (path below the version) for `version`, whatever the method.
    pub fn find(&self, version: ApiVersion, segments: &[&str]) -> Option<&Action> {
        self.actions
            .iter()
            .find(|a| a.version == version && a.matches(segments))
    }

    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<&str> {
        path.split('/').filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn registry_parses_and_covers_every_v1_action() {
        let v1: Vec<_> = registry()
            .actions()
            .filter(|a| a.version == ApiVersion::V1)
            .collect();
        // Ten distinct v1.0 path templates in the reference data (managedAppPolicies is listed
        // twice there, once per abstract binding type, with the same contract), and the two
        // documented alternate paths of managedAppPolicies' assign.
        assert_eq!(v1.len(), 12, "{v1:#?}");
        let alternate = [
            "v1.0",
            "deviceAppManagement",
            "managedAppRegistrations",
            "r-1",
            "appliedPolicies",
            "p-1",
            "assign",
        ];
        assert!(
            registry()
                .find(ApiVersion::V1, &alternate[1..])
                .is_some_and(|a| a.parameters[0].name == "assignments")
        );
        assert!(registry().actions().any(|a| a.version == ApiVersion::Beta));
    }

    #[test]
    fn seed_action_matches_case_insensitively() {
        let a = registry()
            .find(
                ApiVersion::V1,
                &segs("/DeviceManagement/deviceenrollmentconfigurations/abc/Assign"),
            )
            .map(|a| a.parameters[0].name.as_str());
        assert_eq!(a, Some("enrollmentConfigurationAssignments"));
    }

    #[test]
    fn unknown_paths_and_versions_do_not_match() {
        assert!(
            registry()
                .find(
                    ApiVersion::V1,
                    &segs("/deviceManagement/deviceEnrollmentConfigurations/abc")
                )
                .is_none()
        );
        // windowsAutopilotDeploymentProfiles/assign exists in beta only.
        let p = segs("/deviceManagement/windowsAutopilotDeploymentProfiles/x/assign");
        assert!(registry().find(ApiVersion::V1, &p).is_none());
        assert!(registry().find(ApiVersion::Beta, &p).is_some());
    }
}
