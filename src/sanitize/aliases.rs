//! Aliases: deterministic, recognisable stand-ins for a tenant's identifiers.
//!
//! An alias is an HMAC-SHA256 of the value under the directory's pseudonym key, shaped like
//! what it replaces so clients and contract checks still accept it:
//! - a GUID becomes `hhhhhhhh-hhhh-0a11-a5ed-hhhhhhhhhhhh` (the fixed middle, "alias-ed",
//!   marks it; no GUID generator makes version-0 GUIDs with it);
//! - an address (UPN or e-mail) `user-hhhhhhhhhh@` its domain's alias;
//! - a domain `tenant-hhhhhhhh.onmicrosoft.com` (a tenant's own) or `domain-hhhhhhhh.example`;
//! - anything else a rule pseudonymises `alias-hhhhhhhhhhhh`.
//!
//! An alias maps to itself, so a client that sends back an id it read from a replayed
//! response matches, and so does one that sends the real id (aliased the same way on the way
//! in). The same value gets the same alias under the same key, in every cassette and run.

use ring::hmac;
use std::borrow::Cow;

/// Well-known identifiers that are the same in every tenant, so say nothing about one: the
/// nil GUID and Intune's "all devices" and "all users" virtual groups (first-party app ids,
/// `XXXXXXXX-0000-0000-c000-000000000000`, are recognised by shape).
const WELL_KNOWN: [&str; 3] = [
    "00000000-0000-0000-0000-000000000000",
    "adadadad-808e-44e2-905a-0b7873a8a531",
    "acacacac-9df4-4c7d-9d50-4ef0226f57a9",
];

/// The marker in the middle of every GUID alias.
const GUID_MARK: &str = "0a11-a5ed";

/// The pseudonym key, and what aliases under it.
#[derive(Clone)]
pub struct Aliaser {
    key: hmac::Key,
}

impl std::fmt::Debug for Aliaser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aliaser(key hidden)")
    }
}

impl Aliaser {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn digest_hex(&self, kind: &str, value: &str, hex_len: usize) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(kind.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        let tag = ctx.sign();
        let mut hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        hex.truncate(hex_len);
        hex
    }

    /// The alias of a GUID (`value` is GUID-shaped).
    pub fn guid(&self, value: &str) -> Cow<'static, str> {
        let lower = value.to_ascii_lowercase();
        if is_guid_alias(&lower) || is_well_known_guid(&lower) {
            return Cow::Owned(lower);
        }
        let h = self.digest_hex("guid", &lower, 24);
        Cow::Owned(format!(
            "{}-{}-{GUID_MARK}-{}",
            &h[..8],
            &h[8..12],
            &h[12..24]
        ))
    }

    /// The alias of a domain.
    pub fn domain(&self, value: &str) -> String {
        let lower = value.to_ascii_lowercase();
        if is_domain_alias(&lower) || is_reserved_domain(&lower) {
            return lower;
        }
        let h = self.digest_hex("domain", &lower, 8);
        if lower.ends_with(".onmicrosoft.com") {
            format!("tenant-{h}.onmicrosoft.com")
        } else {
            format!("domain-{h}.example")
        }
    }

    /// The alias of an address `local@domain` (`at` is how it was written: `@` or `%40`).
    pub fn address(&self, local: &str, domain: &str, at: &str) -> String {
        let domain_alias = self.domain(domain);
        if is_local_alias(local) && domain_alias.eq_ignore_ascii_case(domain) {
            return format!("{local}{at}{domain}");
        }
        let whole = format!("{}@{}", local, domain).to_ascii_lowercase();
        let h = self.digest_hex("address", &whole, 10);
        format!("user-{h}{at}{domain_alias}")
    }

    /// The alias of a value a rule pseudonymises: shaped like it when it is a GUID, an
    /// address or a domain.
    pub fn value(&self, value: &str) -> String {
        if is_guid(value.as_bytes()) {
            return self.guid(value).into_owned();
        }
        if let Some((local, domain)) = value.split_once('@')
            && is_domain(domain)
            && !local.is_empty()
        {
            return self.address(local, domain, "@");
        }
        if is_domain(value) {
            return self.domain(value);
        }
        if is_value_alias(value) {
            return value.to_string();
        }
        format!("alias-{}", self.digest_hex("value", value, 12))
    }

    /// A key's public name: which key made a cassette's aliases, without revealing it.
    pub fn key_id(secret: &[u8]) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"graph-vcr pseudonym key id\0");
        h.update(secret);
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn all_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn is_guid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

pub fn is_guid_alias(lower: &str) -> bool {
    lower.len() == 36 && lower.get(14..23) == Some(GUID_MARK)
}

fn is_well_known_guid(lower: &str) -> bool {
    WELL_KNOWN.contains(&lower) || lower.get(8..) == Some("-0000-0000-c000-000000000000")
}

fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

fn is_domain_alias(lower: &str) -> bool {
    let label = |prefix: &str, suffix: &str| {
        lower
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
            .is_some_and(|h| h.len() == 8 && all_hex(h))
    };
    label("tenant-", ".onmicrosoft.com") || label("domain-", ".example")
}

/// Reserved for documentation and tests (RFC 2606): nobody's real domain.
fn is_reserved_domain(lower: &str) -> bool {
    [".example", ".test", ".invalid", ".localhost"]
        .iter()
        .any(|t| lower.ends_with(t))
}

fn is_local_alias(local: &str) -> bool {
    local
        .strip_prefix("user-")
        .is_some_and(|h| h.len() == 10 && all_hex(h))
}

fn is_value_alias(s: &str) -> bool {
    s.strip_prefix("alias-")
        .is_some_and(|h| h.len() == 12 && all_hex(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "3F2504E0-4F89-41D3-9A0C-0305E82C3301";

    #[test]
    fn a_guid_alias_is_stable_recognisable_and_maps_to_itself() {
        let a = Aliaser::new(b"k1-0123456789abcdef");
        let alias = a.guid(REAL).into_owned();
        assert!(
            is_guid(alias.as_bytes()) && is_guid_alias(&alias),
            "{alias}"
        );
        assert_eq!(a.guid(&REAL.to_ascii_lowercase()), alias);
        assert_eq!(a.guid(&alias), alias);
        let other = Aliaser::new(b"k2-0123456789abcdef");
        assert_ne!(other.guid(REAL), alias, "another key, another alias");
    }

    #[test]
    fn well_known_ids_and_reserved_domains_stay() {
        let a = Aliaser::new(b"k");
        for id in [
            WELL_KNOWN[1],
            "00000003-0000-0000-c000-000000000000",
            WELL_KNOWN[0],
        ] {
            assert_eq!(a.guid(id), id);
        }
        assert_eq!(a.domain("contoso.example"), "contoso.example");
    }

    #[test]
    fn addresses_and_domains() {
        let a = Aliaser::new(b"k");
        let tenant = a.domain("Contoso.onmicrosoft.com");
        assert!(is_domain_alias(&tenant) && tenant.ends_with(".onmicrosoft.com"));
        let user = a.address("Alice", "contoso.onmicrosoft.com", "@");
        assert_eq!(user, a.address("alice", "CONTOSO.onmicrosoft.com", "@"));
        assert!(user.starts_with("user-") && user.ends_with(&format!("@{tenant}")));
        let (local, domain) = user.split_once('@').unwrap_or_default();
        assert_eq!(a.address(local, domain, "@"), user);
        assert_eq!(
            a.address("alice", "contoso.com", "%40")
                .split_once("%40")
                .map(|p| p.1),
            Some(a.domain("contoso.com").as_str())
        );
        assert_eq!(a.value("Finance team"), a.value("Finance team"));
        assert!(is_value_alias(&a.value("Finance team")));
        assert_eq!(a.value(&a.value("x")), a.value("x"));
        assert_eq!(Aliaser::key_id(b"k").len(), 16);
    }
}
