//! Permissions, offline: does the caller's token carry a permission the action accepts?
//!
//! The bearer token's claims are read without verifying it (graph-vcr is not the service, and
//! in replay it has no keys to verify with): `scp` (space-separated delegated scopes) or
//! `roles` (application roles), held against the action's documented permissions. Nothing of
//! the token is stored or printed: only the names of the permissions it grants, which are not
//! secrets. A token whose claims cannot be read (opaque, a test fake) or that carries neither
//! claim is not judged.

use super::{Code, Deviation};
use crate::contract::Permissions;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use serde_json::Value;
use std::sync::Arc;

/// Most bytes of a token graph-vcr reads claims from (real Entra tokens are a few KiB).
const MAX_TOKEN: usize = 16 * 1024;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granted {
    /// A user's token: its `scp`.
    Delegated(Vec<String>),
    /// An app's token: its `roles`.
    Application(Vec<String>),
}

impl Granted {
    /// The grant of `Authorization: Bearer <JWT>`, if its claims can be read.
    pub fn of_headers(headers: &HeaderMap) -> Option<Self> {
        Self::of_claims(&*claims(headers)?)
    }

    /// The grant of a JWT's claims, if they can be read.
    pub fn of_token(token: &str) -> Option<Self> {
        Self::of_claims(&token_claims(token)?)
    }

    fn of_claims(claims: &Value) -> Option<Self> {
        if let Some(roles) = claims.get("roles").and_then(Value::as_array) {
            let roles = roles.iter().filter_map(Value::as_str).map(str::to_string);
            return Some(Self::Application(roles.collect()));
        }
        let scp = claims.get("scp").and_then(Value::as_str)?;
        Some(Self::Delegated(
            scp.split_whitespace().map(str::to_string).collect(),
        ))
    }

    /// Scopes given by hand (`graph-vcr check --scopes`): delegated.
    pub fn scopes(list: &str) -> Self {
        Self::Delegated(
            list.split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Delegated(_) => "delegated scopes (scp)",
            Self::Application(_) => "application roles (roles)",
        }
    }

    fn names(&self) -> &[String] {
        match self {
            Self::Delegated(n) | Self::Application(n) => n,
        }
    }
}

/// The claims of `Authorization: Bearer <JWT>`, read (never verified), if they can be.
///
/// Every assign request is checked against its token (and `--throttle` counts by it), while a
/// run uses one or a few tokens: each worker thread keeps the last token it decoded, so a
/// repeated token costs one comparison instead of a base64 decode and a JSON parse. (The kept
/// value never leaves the process and is dropped with the thread.)
pub fn claims(headers: &HeaderMap) -> Option<Arc<Value>> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    thread_local! {
        static LAST: std::cell::RefCell<Option<Decoded>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        if let Some((seen, claims)) = last.borrow().as_ref()
            && **seen == *value
        {
            return claims.clone();
        }
        let claims = decode_header(value).map(Arc::new);
        *last.borrow_mut() = Some((value.into(), claims.clone()));
        claims
    })
}

/// An `Authorization` value and its claims (`None`: none readable).
type Decoded = (Box<[u8]>, Option<Arc<Value>>);

fn decode_header(value: &[u8]) -> Option<Value> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    token_claims(token.trim())
}

fn token_claims(token: &str) -> Option<Value> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `insufficient-permission` when `granted` has none of the permissions the action accepts.
pub fn check(permissions: &Permissions, granted: &Granted) -> Option<Deviation> {
    let accepted = match granted {
        Granted::Delegated(_) => &permissions.delegated,
        Granted::Application(_) => &permissions.application,
    };
    if accepted.is_empty() {
        return None;
    }
    let has = |p: &String| granted.names().iter().any(|g| g.eq_ignore_ascii_case(p));
    if accepted.iter().any(has) {
        return None;
    }
    let mut shown: Vec<&str> = granted
        .names()
        .iter()
        .take(10)
        .map(String::as_str)
        .collect();
    if granted.names().len() > shown.len() {
        shown.push("…");
    }
    let read_only = granted.names().iter().any(|g| {
        accepted
            .iter()
            .any(|a| a.replace(".ReadWrite.", ".Read.").eq_ignore_ascii_case(g))
    });
    Some(Deviation::new(
        Code::InsufficientPermission,
        "Authorization",
        format!(
            "the token's {} ({}) include none this action accepts: {} (least privileged first){}; \
             the service answers 403",
            granted.kind(),
            if shown.is_empty() {
                "none".to_string()
            } else {
                shown.join(" ")
            },
            accepted.join(", "),
            if read_only {
                "; a read-only permission does not allow assign"
            } else {
                ""
            },
        ),
    ))
}

/// The least privileged permission of each kind that covers a call of an action.
pub fn least(permissions: &Permissions) -> (Option<&str>, Option<&str>) {
    (
        permissions.delegated.first().map(String::as_str),
        permissions.application.first().map(String::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWT with `claims` (unsigned: graph-vcr never verifies).
    pub fn jwt(claims: &Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.sig",
            part(&serde_json::json!({"typ": "JWT", "alg": "RS256"})),
            part(claims)
        )
    }

    fn config() -> Permissions {
        Permissions {
            delegated: vec!["DeviceManagementConfiguration.ReadWrite.All".into()],
            application: vec!["DeviceManagementConfiguration.ReadWrite.All".into()],
        }
    }

    #[test]
    fn tokens_with_enough_pass_and_the_rest_are_named() {
        let ok = [
            serde_json::json!({"scp": "User.Read DeviceManagementConfiguration.ReadWrite.All"}),
            serde_json::json!({"roles": ["DeviceManagementConfiguration.ReadWrite.All"]}),
        ];
        for claims in ok {
            let g = Granted::of_token(&jwt(&claims));
            assert!(
                g.is_some_and(|g| check(&config(), &g).is_none()),
                "{claims}"
            );
        }
        let read = Granted::of_token(&jwt(
            &serde_json::json!({"scp": "DeviceManagementConfiguration.Read.All"}),
        ));
        let d = read.and_then(|g| check(&config(), &g));
        assert!(
            d.as_ref().is_some_and(|d| d.message.contains("read-only")
                && d.message
                    .contains("DeviceManagementConfiguration.ReadWrite.All")),
            "{d:?}"
        );
        let none = Granted::of_token(&jwt(&serde_json::json!({"roles": []})));
        assert!(
            none.and_then(|g| check(&config(), &g))
                .is_some_and(|d| d.message.contains("application roles (roles) (none)"))
        );
    }

    #[test]
    fn unreadable_tokens_are_not_judged() {
        for token in [
            "opaque-token",
            "a.b.c",
            &jwt(&serde_json::json!({"aud": "x"})),
            "x.!!!.y",
        ] {
            assert_eq!(Granted::of_token(token), None, "{token}");
        }
    }
}
