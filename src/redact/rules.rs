//! Rules: which names say a value is a secret. The reasons for each are in `docs/REDACTION.md`.
//!
//! Names are compared folded: lower-cased, with `_`, `-`, `.`, and a leading `$` or `@` taken
//! out, so `client_secret`, `clientSecret` and `Client-Secret` are one name. Every check here
//! runs per JSON member, header and query parameter of every body recorded or audited, so
//! names of up to 64 ASCII bytes (every Graph property) are folded on the stack.

/// Paging tokens: opaque to clients but no credential, and replay keys on them (each page of
/// a collection is its own recording), so they are never redacted.
const PAGING: [&str; 2] = ["skiptoken", "deltatoken"];

/// Runs `f` on the folded form of `name`.
fn folded<T>(name: &str, f: impl FnOnce(&str) -> T) -> T {
    const SHORT: usize = 64;
    let name = name.trim_start_matches(['$', '@']);
    let keep = |c: &char| !matches!(c, '_' | '-' | '.');
    if name.is_ascii() && name.len() <= SHORT {
        let mut buf = [0u8; SHORT];
        let mut len = 0;
        for b in name.bytes().filter(|b| keep(&char::from(*b))) {
            buf[len] = b.to_ascii_lowercase();
            len += 1;
        }
        // ASCII in, ASCII out: the buffer is UTF-8.
        f(std::str::from_utf8(&buf[..len]).unwrap_or(""))
    } else {
        let n: String = name
            .chars()
            .filter(keep)
            .flat_map(char::to_lowercase)
            .collect();
        f(&n)
    }
}

/// The core of every rule, on a folded name.
fn names_a_secret(n: &str) -> bool {
    if PAGING.contains(&n) {
        return false;
    }
    n.contains("secret")
        || n.contains("password")
        || n.contains("credential")
        || n.contains("connectionstring")
        || n.ends_with("token")
        // `privateKey`, `AccountKey`, `productKey`; not a bare `key`, which Graph uses for
        // the name half of key/value pairs (`keyCredentials[].key` goes with its list).
        || (n.len() > 3 && n.ends_with("key"))
        || matches!(
            n,
            "pwd" | "passwd" | "assertion" | "clientassertion" | "sig" | "signature" | "sas"
        )
}

/// Whether a JSON member's name says its value is a secret (`client_secret`, `secretText`,
/// `access_token`, `privateKey`, `keyCredentials`, `password`, ...). Not a bare `key` (a
/// key/value pair's name), nor `code`: in JSON that
/// is Graph's error code.
pub fn is_secret_field(name: &str) -> bool {
    folded(name, names_a_secret)
}

/// Whether a query, form or connection-string parameter is a secret: the field names, and
/// the OAuth authorization `code`, SAS `sig`, `key` and `AccountKey`-style names.
pub fn is_secret_param(name: &str) -> bool {
    folded(name, |n| {
        names_a_secret(n) || matches!(n, "code" | "key" | "auth" | "session" | "sessionid")
    })
}

/// Whether a header carries credentials by its name: `Authorization` and its kin
/// (`Proxy-Authorization`, `x-ms-authorization-auxiliary`, `X-Auth`), cookies, keys
/// (`x-functions-key`, `Ocp-Apim-Subscription-Key`), tokens, signatures, sessions, and the
/// App Service principal headers (`x-ms-client-principal*`, a base64 identity).
pub fn is_credential_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.split('-').any(|part| {
        matches!(
            part,
            "authorization"
                | "auth"
                | "cookie"
                | "cookie2"
                | "key"
                | "apikey"
                | "secret"
                | "token"
                | "password"
                | "signature"
                | "sig"
                | "credential"
                | "credentials"
                | "principal"
                | "session"
                | "assertion"
        )
    }) || is_secret_field(&lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_by_name() {
        for h in [
            "Authorization",
            "Proxy-Authorization",
            "cookie",
            "Set-Cookie",
            "X-Api-Key",
            "x-client-secret",
            "x-ms-client-secret",
            "x-ms-token-aad-id-token",
            "x-ms-authorization-auxiliary",
            "X-Auth",
            "x-ms-client-principal",
            "x-ms-client-principal-id",
            "x-functions-key",
            "Ocp-Apim-Subscription-Key",
        ] {
            assert!(is_credential_header(h), "{h}");
        }
        for h in [
            "content-type",
            "client-request-id",
            "request-id",
            "accept",
            "x-ms-ags-diagnostic",
            "keep-alive",
            "location",
            "retry-after",
        ] {
            assert!(!is_credential_header(h), "{h}");
        }
    }

    #[test]
    fn fields_in_any_case_and_spelling_short_or_long() {
        for secret in [
            "client_secret",
            "clientSecret",
            "secretText",
            "Password",
            "refresh-token",
            "access_token",
            "id_token",
            "privateKey",
            "keyCredentials",
            "passwordCredentials",
            "credential",
            "connectionString",
            "AccountKey",
            "ClientAssertion",
        ] {
            assert!(is_secret_field(secret), "{secret}");
            let long = format!("{}{secret}", "x".repeat(80));
            assert_eq!(
                is_secret_field(&long),
                !matches!(secret, "ClientAssertion"),
                "{long}"
            );
        }
        for plain in [
            "id",
            "groupId",
            "tokenType",
            "keyId",
            "key",
            "target",
            "signatureAlgorithm",
            "code",
            "@odata.nextLink",
            "$skiptoken",
            "$deltatoken",
            "é",
            "",
        ] {
            assert!(!is_secret_field(plain), "{plain}");
        }
    }

    #[test]
    fn params_add_the_oauth_code_and_sas_names() {
        for p in [
            "code",
            "sig",
            "key",
            "access_token",
            "SharedAccessKey",
            "client_assertion",
        ] {
            assert!(is_secret_param(p), "{p}");
        }
        for p in [
            "$skiptoken",
            "$filter",
            "$select",
            "se",
            "sv",
            "grant_type",
            "state",
        ] {
            assert!(!is_secret_param(p), "{p}");
        }
    }
}
