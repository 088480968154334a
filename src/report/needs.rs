//! Needs: the least-privileged permissions that cover every call a run made, per action, so
//! a team can cut its app registration down to what its tests use.
//!
//! From the documented permissions of each action the run called (`contracts/actions.json`,
//! least privileged first, per permission type); actions graph-vcr has no verified permissions
//! for (Cloud PC, beta) are not listed.

use super::Call;
use crate::check::permissions;
use crate::contract;
use serde::Serialize;
use std::collections::BTreeMap;

/// What one action the run called needs, at least.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Need {
    /// The action, as the report names it (`v1.0 /deviceManagement/…/assign`).
    pub action: String,
    /// The least privileged delegated permission (a user's token, `scp`).
    pub delegated: Option<String>,
    /// The least privileged application permission (an app's token, `roles`).
    pub application: Option<String>,
}

/// The needs of the actions `calls` made, in action order.
pub fn of(calls: &[Call]) -> Vec<Need> {
    let mut labels: Vec<&str> = calls.iter().map(|c| c.action.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    labels
        .into_iter()
        .filter_map(|label| {
            let action = contract::registry()
                .actions()
                .find(|a| format!("{} {}", a.version, a.path) == label)?;
            let (delegated, application) = permissions::least(action.permissions.as_ref()?);
            Some(Need {
                action: label.to_string(),
                delegated: delegated.map(str::to_string),
                application: application.map(str::to_string),
            })
        })
        .collect()
}

/// One line for people: each permission and the resources that need it.
pub fn line(needs: &[Need]) -> Option<String> {
    let mut by_permission: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for n in needs {
        let permission = match (&n.delegated, &n.application) {
            (Some(d), Some(a)) if d == a => d.clone(),
            (Some(d), Some(a)) => format!("{d} (delegated) or {a} (application)"),
            (Some(d), None) => format!("{d} (delegated)"),
            (None, Some(a)) => format!("{a} (application)"),
            (None, None) => continue,
        };
        by_permission
            .entry(permission)
            .or_default()
            .push(resource(&n.action));
    }
    if by_permission.is_empty() {
        return None;
    }
    let parts: Vec<String> = by_permission
        .into_iter()
        .map(|(p, resources)| format!("{p} ({})", resources.join(", ")))
        .collect();
    Some(format!(
        "this run needs (least privileged per action): {}",
        parts.join("; ")
    ))
}

/// `deviceConfigurations` of `v1.0 /deviceManagement/deviceConfigurations/{id}/assign`.
fn resource(label: &str) -> &str {
    let path = label.split_once(' ').map_or(label, |(_, p)| p);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segments
        .iter()
        .rev()
        .find(|s| **s != "assign" && **s != "{id}")
        .copied()
        .unwrap_or(path)
}
