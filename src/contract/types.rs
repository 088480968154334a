//! The OData types of assign bodies: assignment elements, targets and settings, per version.
//!
//! Built once from `contracts/types.json`. Beta is v1.0 plus what the beta SDK adds: extra
//! properties (assignment filters on every target, `source`/`sourceId` on elements), extra
//! settings subtypes whose properties graph-vcr does not know (so it does not call them
//! unknown), and the element types only beta actions take (`contracts/beta_types.json`, read
//! from the beta SDK's models: the Settings Catalog's, health scripts', update profiles', ...).
//! Names are looked up case-insensitively, as the Graph SDKs match discriminators.

use super::ApiVersion;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// A property of a structured type.
#[derive(Debug, Clone, Deserialize)]
pub struct Property {
    /// `Edm.String`, `Edm.Boolean`, `Edm.Int32`, `Edm.DateTimeOffset`, an enum or complex type
    /// name, or `object` (a structured value whose type graph-vcr does not model).
    #[serde(rename = "type")]
    pub ty: String,
    pub collection: bool,
    pub nullable: bool,
}

/// A structured type (entity or complex).
#[derive(Debug, Clone, Deserialize)]
pub struct TypeInfo {
    #[serde(skip)]
    pub name: String,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    pub base: Option<String>,
    /// Every type derived from this one, transitively.
    pub derived: Vec<String>,
    /// Declared and inherited properties.
    pub properties: BTreeMap<String, Property>,
    /// Properties a request must send (see `contracts/generate.py`).
    pub required: Vec<String>,
    /// False for beta types known only by name: their properties are not checked.
    #[serde(skip, default = "yes")]
    pub properties_known: bool,
}

fn yes() -> bool {
    true
}

/// The types of one API version.
#[derive(Debug, Default)]
pub struct Types {
    by_lower_name: HashMap<String, TypeInfo>,
    enums: HashMap<String, Vec<String>>,
}

impl Types {
    /// The type named `name` (with or without a leading `#`, any case).
    pub fn get(&self, name: &str) -> Option<&TypeInfo> {
        self.by_lower_name
            .get(&name.trim_start_matches('#').to_ascii_lowercase())
    }

    /// Whether `candidate` is `declared` or derives from it.
    pub fn is_assignable(&self, candidate: &TypeInfo, declared: &TypeInfo) -> bool {
        candidate.name.eq_ignore_ascii_case(&declared.name)
            || declared
                .derived
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&candidate.name))
    }

    /// The members of enum type `name`, if it is one.
    pub fn enum_members(&self, name: &str) -> Option<&[String]> {
        self.enums.get(name).map(Vec::as_slice)
    }
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "v1.0")]
    v1: V1File,
    beta: BetaFile,
}

#[derive(Deserialize)]
struct V1File {
    types: HashMap<String, TypeInfo>,
    enums: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct BetaFile {
    added_properties: HashMap<String, BTreeMap<String, Property>>,
    added_derived: HashMap<String, Vec<String>>,
    enums: HashMap<String, Vec<String>>,
}

/// The element types only beta has, read from the beta SDK's models
/// (`contracts/beta_sdk_types.py`).
#[derive(Deserialize)]
struct BetaOnlyFile {
    types: HashMap<String, TypeInfo>,
    enums: HashMap<String, Vec<String>>,
}

const TYPES_JSON: &str = include_str!("../../contracts/types.json");
const BETA_TYPES_JSON: &str = include_str!("../../contracts/beta_types.json");

static TYPES: LazyLock<(Types, Types)> = LazyLock::new(|| {
    // Compiled-in data, not input: the unit tests parse it, so a failure here is a build defect.
    #[allow(clippy::expect_used)]
    let file: File = serde_json::from_str(TYPES_JSON).expect("contracts/types.json is valid");
    #[allow(clippy::expect_used)]
    let beta_only: BetaOnlyFile =
        serde_json::from_str(BETA_TYPES_JSON).expect("contracts/beta_types.json is valid");
    build(file, beta_only)
});

/// The types of `version`.
pub fn types(version: ApiVersion) -> &'static Types {
    match version {
        ApiVersion::V1 => &TYPES.0,
        ApiVersion::Beta => &TYPES.1,
    }
}

fn build(file: File, beta_only: BetaOnlyFile) -> (Types, Types) {
    let mut v1: HashMap<String, TypeInfo> = file.v1.types;
    for (name, t) in v1.iter_mut() {
        t.name = name.clone();
    }
    let mut beta = v1.clone();
    // Added properties are inherited by every derived type.
    for (owner, props) in &file.beta.added_properties {
        let mut receivers = vec![owner.clone()];
        if let Some(t) = beta.get(owner) {
            receivers.extend(t.derived.iter().cloned());
        }
        for r in receivers {
            if let Some(t) = beta.get_mut(&r) {
                t.properties.extend(props.clone());
            }
        }
    }
    for (parent, added) in &file.beta.added_derived {
        for name in added {
            // Register the new type under its parent and every ancestor of the parent.
            let mut ancestor = Some(parent.clone());
            while let Some(a) = ancestor {
                ancestor = beta.get_mut(&a).and_then(|t| {
                    if !t.derived.contains(name) {
                        t.derived.push(name.clone());
                    }
                    t.base.clone()
                });
            }
            beta.entry(name.clone()).or_insert_with(|| TypeInfo {
                name: name.clone(),
                is_abstract: false,
                base: Some(parent.clone()),
                derived: Vec::new(),
                properties: BTreeMap::new(),
                required: Vec::new(),
                properties_known: false,
            });
        }
    }
    for (name, mut t) in beta_only.types {
        t.name = name.clone();
        match beta.get_mut(&name) {
            // Known by name only (an added settings subtype): now its properties are known;
            // its place in the hierarchy stays the one the reference gives.
            Some(known) if !known.properties_known => {
                known.properties = t.properties;
                known.properties_known = true;
            }
            Some(_) => {}
            None => {
                beta.insert(name, t);
            }
        }
    }
    let mut beta_enums = file.v1.enums.clone();
    beta_enums.extend(file.beta.enums);
    for (name, members) in beta_only.enums {
        beta_enums.entry(name).or_insert(members);
    }
    let index = |m: HashMap<String, TypeInfo>| {
        m.into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    };
    (
        Types {
            by_lower_name: index(v1),
            enums: file.v1.enums,
        },
        Types {
            by_lower_name: index(beta),
            enums: beta_enums,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_their_hierarchy() {
        let t = types(ApiVersion::V1);
        let base = t.get("microsoft.graph.deviceAndAppManagementAssignmentTarget");
        let excl = t.get("#Microsoft.Graph.ExclusionGroupAssignmentTarget");
        let (Some(base), Some(excl)) = (base, excl) else {
            panic!("types missing")
        };
        assert!(base.is_abstract && t.is_assignable(excl, base));
        assert_eq!(excl.required, vec!["groupId"]);
        let cloud = t.get("microsoft.graph.cloudPcManagementGroupAssignmentTarget");
        assert!(cloud.is_some_and(|c| !t.is_assignable(c, base)));
    }

    #[test]
    fn beta_adds_filter_properties_to_every_target() {
        let name = "microsoft.graph.groupAssignmentTarget";
        let filter = "deviceAndAppManagementAssignmentFilterId";
        assert!(
            types(ApiVersion::V1)
                .get(name)
                .is_some_and(|t| !t.properties.contains_key(filter))
        );
        assert!(
            types(ApiVersion::Beta)
                .get(name)
                .is_some_and(|t| t.properties.contains_key(filter))
        );
        let source =
            types(ApiVersion::Beta).get("microsoft.graph.enrollmentConfigurationAssignment");
        assert!(source.is_some_and(|t| t.properties.contains_key("source")));
    }

    #[test]
    fn beta_settings_subtypes_are_known_with_their_properties() {
        let t = types(ApiVersion::Beta);
        let settings = t.get("microsoft.graph.mobileAppAssignmentSettings");
        let winget = t.get("microsoft.graph.winGetAppAssignmentSettings");
        let (Some(settings), Some(winget)) = (settings, winget) else {
            panic!("types missing")
        };
        // Its properties come from the beta SDK's model (contracts/beta_types.json).
        assert!(t.is_assignable(winget, settings) && winget.properties_known);
        assert!(winget.properties.contains_key("notifications"));
        assert!(
            types(ApiVersion::V1)
                .get("microsoft.graph.winGetAppAssignmentSettings")
                .is_none()
        );
    }
}
