//! Classify: which Graph call a request is.
//!
//! The first stage after the listener. From the method and URI alone it finds the API version,
//! the action in the contract registry (if any), whether the call is an Intune `assign` action
//! (recorded by default), and the normalized path and query that go into the key. Graph paths
//! are case-insensitive, so segment names are case-folded; ids are kept as sent except that a
//! GUID is lower-cased, because two spellings of one GUID name the same object. The query's
//! normalized form is `classify::query`'s.

use crate::contract::{self, Action, ApiVersion};

pub mod query;

/// What the classifier knows about a request.
#[derive(Debug, Clone)]
pub struct Classified {
    /// `None` when the first path segment is not a Graph version (`v1.0`, `beta`).
    pub version: Option<ApiVersion>,
    /// The path below the version, normalized for the key.
    pub normalized_path: String,
    /// Query parameters sorted, or empty.
    pub normalized_query: String,
    /// The registry entry for this path, whatever the method.
    pub action: Option<&'static Action>,
    /// An Intune assign action: `…/{id}/assign` under `/deviceManagement/` or
    /// `/deviceAppManagement/`, or any registry entry.
    pub is_assign: bool,
    /// Shaped like an assign action whatever the version segment says, so that a call to
    /// `/v2/deviceManagement/…/assign` is still checked (and flagged for its version).
    pub assign_shaped: bool,
}

impl Classified {
    /// A short, stable label for logs, journals and miss messages.
    pub fn action_label(&self) -> String {
        match (self.action, self.version) {
            (Some(a), _) => format!("{} {}", a.version, a.path),
            (None, Some(v)) if self.is_assign => format!("{v} (unlisted assign action)"),
            _ => "other".to_string(),
        }
    }
}

/// Classifies a request by its path (without query) and raw query string.
pub fn classify(path: &str, query: Option<&str>) -> Classified {
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let version = segments.first().and_then(|s| ApiVersion::from_segment(s));
    if version.is_some() {
        segments.remove(0);
    }
    let action = version.and_then(|v| contract::registry().find(v, &segments));
    let below_version = if version.is_some() {
        &segments[..]
    } else {
        segments.get(1..).unwrap_or(&[])
    };
    let assign_shaped = action.is_some() || looks_like_assign(below_version);
    let is_assign = version.is_some() && assign_shaped;

    let normalized: Vec<String> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id_position = match action {
                Some(a) => a.is_id_segment(i),
                // Without a template only GUIDs are recognisably ids.
                None => false,
            };
            if id_position && !is_guid(s) {
                (*s).to_string()
            } else {
                s.to_ascii_lowercase()
            }
        })
        .collect();

    Classified {
        version,
        normalized_path: format!("/{}", normalized.join("/")),
        normalized_query: normalize_query(query.unwrap_or("")),
        action,
        is_assign,
        assign_shaped,
    }
}

fn looks_like_assign(segments: &[&str]) -> bool {
    segments.len() >= 3
        && segments
            .last()
            .is_some_and(|s| s.eq_ignore_ascii_case("assign"))
        && (segments[0].eq_ignore_ascii_case("deviceManagement")
            || segments[0].eq_ignore_ascii_case("deviceAppManagement"))
}

/// The query's normalized form (see `classify::query`): decoded, OData options canonical,
/// pairs sorted, so that neither spelling nor parameter order changes the key.
pub fn normalize_query(query: &str) -> String {
    query::normalize(query)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, any case.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_path_is_the_seed_action() {
        let c = classify(
            "/v1.0/deviceManagement/deviceEnrollmentConfigurations/abc/assign",
            None,
        );
        assert_eq!(c.version, Some(ApiVersion::V1));
        assert!(c.is_assign);
        assert_eq!(
            c.action.map(|a| a.path.as_str()),
            Some("/deviceManagement/deviceEnrollmentConfigurations/{id}/assign")
        );
    }

    #[test]
    fn names_fold_guids_lower_other_ids_kept() {
        let a = classify(
            "/v1.0/DEVICEMANAGEMENT/DeviceEnrollmentConfigurations/705B021C-021C-705B-1C02-5B701C025B70/Assign",
            None,
        );
        let b = classify(
            "/V1.0/deviceManagement/deviceEnrollmentConfigurations/705b021c-021c-705b-1c02-5b701c025b70/assign",
            None,
        );
        assert_eq!(a.normalized_path, b.normalized_path);
        let c = classify(
            "/v1.0/deviceManagement/deviceEnrollmentConfigurations/Abc_Windows10/assign",
            None,
        );
        assert!(
            c.normalized_path.contains("/Abc_Windows10/"),
            "{}",
            c.normalized_path
        );
    }

    #[test]
    fn unlisted_assign_and_other_calls() {
        let c = classify("/beta/deviceManagement/someNewThings/1/assign", None);
        assert!(c.is_assign && c.action.is_none());
        let c = classify("/v1.0/me", None);
        assert!(!c.is_assign);
        let c = classify("/v2/deviceManagement/deviceConfigurations/1/assign", None);
        assert!(c.version.is_none() && !c.is_assign && c.assign_shaped);
        assert!(!classify("/v1.0/me/assign", None).assign_shaped);
    }

    #[test]
    fn query_order_does_not_matter() {
        assert_eq!(normalize_query("b=2&a=1&"), normalize_query("a=1&b=2"));
    }

    #[test]
    fn guid_shape() {
        assert!(is_guid("705b021c-021c-705b-1c02-5b701c025b70"));
        assert!(!is_guid("705b021c-021c-705b-1c02-5b701c025b7"));
        assert!(!is_guid("705b021c0021c-705b-1c02-5b701c025b70"));
    }
}
