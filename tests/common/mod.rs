//! Test harness shared by the integration tests: a test CA made at test time, a stand-in Graph
//! server over real TLS on loopback, the real `graph-vcr` binary as a child process, and a real
//! HTTP client. Nothing here mocks graph-vcr itself.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type TestResult = Result<(), Error>;

#[allow(unused_imports)] // not every test binary uses it
pub use graph_vcr::contract::SEED_EXAMPLE_BODY as SEED_BODY;

/// The same call as msgraph-sdk serializes it: no element `@odata.type`, `#` on the target
/// type, the SDK's own key order, no whitespace.
pub const SDK_BODY: &str = r##"{"enrollmentConfigurationAssignments":[{"id":"705b021c-021c-705b-1c02-5b701c025b70","target":{"@odata.type":"#microsoft.graph.configurationManagerCollectionAssignmentTarget","collectionId":"Collection Id value"}}]}"##;

pub const SEED_PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign";

/// A JWT-shaped bearer token: what real Graph clients send.
pub const JWT: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20iLCJ0aWQiOiJ0ZXN0In0.dGVzdC1zaWduYXR1cmUtYnl0ZXM";

/// An unsigned JWT carrying `claims` (graph-vcr reads claims, never verifies them).
pub fn jwt_with(claims: &Value) -> String {
    use base64::Engine;
    let part = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256"});
    format!("{}.{}.c2ln", part(&header), part(claims))
}

// ---------------------------------------------------------------------------------------------
// Test CA

/// A root CA and a leaf for `localhost` / 127.0.0.1 signed by it, generated per test.
pub struct TestCa {
    pub ca_pem: String,
    pub leaf_chain: Vec<CertificateDer<'static>>,
    leaf_key_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Result<Self, Error> {
        Self::for_names(&["localhost", "127.0.0.1"])
    }

    /// A CA whose leaf is valid only for `names` (to test a certificate for the wrong host).
    pub fn for_names(names: &[&str]) -> Result<Self, Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "graph-vcr test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let leaf_params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            leaf_chain: vec![leaf.der().clone(), ca.der().clone()],
            leaf_key_der: leaf_key.serialize_der(),
        })
    }

    /// Writes the CA certificate to `dir/ca.pem` for `--upstream-ca`.
    pub fn write_ca(&self, dir: &Path) -> Result<PathBuf, Error> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem)?;
        Ok(path)
    }

    fn server_config(&self) -> Result<rustls::ServerConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.leaf_chain.clone(), key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

// ---------------------------------------------------------------------------------------------
// Stand-in Graph server

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A stand-in for graph.microsoft.com over TLS on loopback, answering like Graph does:
/// 204 for most assign actions, 200 with `{"value": [...]}` for deviceConfigurations and
/// deviceCompliancePolicies, `request-id` on every response, `client-request-id` echoed.
/// A path containing `/slow/` answers after 5 s; `/not-json` answers with text; `/misbehave-`
/// answers 200 with `{}` and no `request-id`, as Graph's documentation says it never does;
/// `/gzip-` answers 200 with a gzip-compressed JSON body. `/secrets-` answers 200 with the
/// credentials real services return ([`RESPONSE_SECRETS`]: token endpoint fields,
/// `addPassword`'s `secretText`, key credentials, a connection string, a SAS URL, an
/// authorization `code` in `Location`, the caller's auxiliary token echoed under a plain name),
/// and `/secrets-text` the same as form-encoded text.
pub struct StandIn {
    pub addr: SocketAddr,
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    tasks: JoinSet<()>,
}

static STAND_IN_COUNTER: AtomicU64 = AtomicU64::new(1);

/// The secrets a `/secrets-` answer carries (see [`StandIn`]).
pub const RESPONSE_SECRETS: [&str; 10] = [
    "AccessTokenValue-r0",
    "0.AXrefreshTokenValue-r1",
    "SecretTextValue-r2",
    "PasswordValue-r3",
    "PrivateKeyValue-r4",
    "KeyCredentialValue-r5",
    "AccountKeyValue-r6",
    "SasSignatureValue-r7",
    "LocationCodeValue-r8",
    "TextAccessTokenValue-r9",
];

fn secrets_answer(text: bool, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let r = RESPONSE_SECRETS;
    let echoed = headers
        .get("x-ms-authorization-auxiliary")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (content_type, body) = if text {
        (
            "application/x-www-form-urlencoded",
            format!("access_token={}&token_type=Bearer&expires_in=3599", r[9]),
        )
    } else {
        let v = serde_json::json!({
            "token_type": "Bearer", "access_token": r[0], "refresh_token": r[1],
            "id_token": JWT, "secretText": r[2], "passwordProfile": {"password": r[3]},
            "privateKey": r[4], "keyCredentials": [{"keyId": "k-1", "key": r[5]}],
            "connectionString": format!("DefaultEndpointsProtocol=https;AccountName=a;AccountKey={};EndpointSuffix=core.windows.net", r[6]),
            "contentUrl": format!("https://a.blob.core.windows.net/c/f?sv=2020-08-04&se=2030-01-01&sig={}", r[7]),
            "note": echoed,
        });
        ("application/json", v.to_string())
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let h = response.headers_mut();
    h.insert("content-type", http::HeaderValue::from_static(content_type));
    h.insert(
        "request-id",
        http::HeaderValue::from_static("00000000-0000-4000-8000-00000000c0de"),
    );
    if let Ok(v) = format!("https://login.example/cb?code={}&state=s1", r[8]).parse() {
        h.insert("location", v);
    }
    h.insert(
        "set-cookie",
        http::HeaderValue::from_static("fpc=StandInCookieSecret0123456789; path=/; secure"),
    );
    response
}

impl StandIn {
    pub async fn start(ca: &TestCa) -> Result<Self, Error> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()?));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        let rec = Arc::clone(&received);
        let ctx = Arc::new(Ctx {
            origin: format!("https://localhost:{}", addr.port()),
            throttled: Mutex::new(std::collections::HashSet::new()),
        });
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let rec = Arc::clone(&rec);
                let ctx = Arc::clone(&ctx);
                conns.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let rec = Arc::clone(&rec);
                        let ctx = Arc::clone(&ctx);
                        async move { Ok::<_, Infallible>(answer(req, rec, ctx).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            url: format!("https://localhost:{}", addr.port()),
            received,
            tasks,
        })
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Stops accepting and drops every open connection.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What the stand-in's answers share: its own origin (for absolute next links) and which
/// throttle-once requests it has throttled.
struct Ctx {
    origin: String,
    throttled: Mutex<std::collections::HashSet<String>>,
}

/// The header that asks the stand-in to answer the first such request (per path) with Graph's
/// 429, and the retry normally.
pub const THROTTLE_ONCE: &str = "x-stand-in-throttle-once";

/// Two pages of `deviceConfigurations`, the next link absolute, as Graph pages collections.
pub const PAGED_PATH: &str = "/v1.0/deviceManagement/deviceConfigurations";

async fn answer(
    req: Request<hyper::body::Incoming>,
    rec: Arc<Mutex<Vec<Received>>>,
    ctx: Arc<Ctx>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if let Ok(mut r) = rec.lock() {
        r.push(Received {
            method: parts.method.clone(),
            path_and_query: path.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }
    if path.contains("/slow/") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    respond(&parts, body, &ctx).await
}

/// The stand-in's answer to one call, direct or inside a `$batch`.
async fn respond(parts: &http::request::Parts, body: Bytes, ctx: &Ctx) -> Response<Full<Bytes>> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if let Some(r) = graph_like(parts, &path, &body, ctx).await {
        return r;
    }
    let n = STAND_IN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("00000000-0000-4000-8000-{n:012}");
    let lower = parts.uri.path().to_ascii_lowercase();
    if lower.contains("/secrets-") {
        return secrets_answer(lower.contains("/secrets-text"), &parts.headers);
    }
    if lower.contains("/gzip-") {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = gz.write_all(br#"{"value":[{"id":"compressed-assignment"}]}"#);
        let mut response = Response::new(Full::new(Bytes::from(gz.finish().unwrap_or_default())));
        let h = response.headers_mut();
        h.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        h.insert("content-encoding", http::HeaderValue::from_static("gzip"));
        h.insert(
            "request-id",
            http::HeaderValue::from_static("00000000-0000-4000-8000-00000000a71b"),
        );
        return response;
    }
    if lower.contains("/misbehave-") {
        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        return response;
    }
    let (status, content_type, out): (StatusCode, Option<&str>, Bytes) =
        if lower.contains("/not-json") {
            (
                StatusCode::OK,
                Some("text/plain"),
                Bytes::from_static(b"plain text answer"),
            )
        } else if lower.ends_with("/assign")
            && (lower.contains("/deviceconfigurations/")
                || lower.contains("/devicecompliancepolicies/"))
        {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let value = v
                .get("assignments")
                .cloned()
                .unwrap_or(Value::Array(vec![]));
            (
                StatusCode::OK,
                Some("application/json; odata.metadata=minimal"),
                Bytes::from(serde_json::json!({"value": value}).to_string()),
            )
        } else if lower.ends_with("/assign") {
            (StatusCode::NO_CONTENT, None, Bytes::new())
        } else {
            (
                StatusCode::OK,
                Some("application/json"),
                Bytes::from(format!(r#"{{"id":"other-{n}"}}"#)),
            )
        };
    let mut response = Response::new(Full::new(out));
    *response.status_mut() = status;
    let h = response.headers_mut();
    if let Some(ct) = content_type {
        h.insert(
            "content-type",
            ct.parse()
                .unwrap_or(http::HeaderValue::from_static("application/json")),
        );
    }
    h.insert(
        "request-id",
        request_id
            .parse()
            .unwrap_or(http::HeaderValue::from_static("x")),
    );
    if let Some(cid) = parts.headers.get("client-request-id") {
        h.insert("client-request-id", cid.clone());
    }
    h.insert(
        "x-ms-ags-diagnostic",
        http::HeaderValue::from_static(r#"{"ServerInfo":{"DataCenter":"Test"}}"#),
    );
    h.insert(
        "strict-transport-security",
        http::HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        "set-cookie",
        http::HeaderValue::from_static("fpc=StandInCookieSecret0123456789; path=/; secure"),
    );
    response
}

/// A tenant's identifiers, as the stand-in's directory answers give them: what
/// `--pseudonymize` must keep out of every file.
pub mod tenant {
    pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    pub const USER_ID: &str = "e3b0c442-98fc-4c14-9afb-f4c8996fb924";
    pub const GROUP_ID: &str = "5d41402a-bc4b-4a76-b971-9d911017c592";
    pub const CONFIG_ID: &str = "9e107d9d-372b-4b68-9b2d-6c4f0c5e1a3b";
    pub const UPN: &str = "alice.wong@contoso.onmicrosoft.com";
    pub const MAIL: &str = "alice.wong@contoso.com";
    pub const DOMAIN: &str = "contoso.onmicrosoft.com";
    /// Every identifier above, and the parts of one a leak would show. (The organization's
    /// and the user's display names are names, not identifiers: a `[[sanitize]]` rule covers
    /// them.)
    pub const ALL: [&str; 10] = [
        TENANT_ID,
        USER_ID,
        GROUP_ID,
        CONFIG_ID,
        UPN,
        MAIL,
        DOMAIN,
        "alice.wong",
        "contoso.com",
        "contoso%2e",
    ];
}

/// The directory part of the stand-in: `/v1.0/organization` (the tenant id and its domain),
/// `/v1.0/users/{id or UPN}` and `/v1.0/me`, `GET /v1.0/groups` (one group) and
/// `POST /v1.0/groups` (echoing the body with the group's id).
fn tenant_answer(parts: &http::request::Parts, lower: &str, body: &Bytes) -> Option<Value> {
    use tenant::*;
    let user = || {
        serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "id": USER_ID, "userPrincipalName": UPN, "mail": MAIL, "displayName": "Alice Wong",
        })
    };
    match (parts.method.as_str(), lower) {
        ("GET", "/v1.0/organization") => Some(serde_json::json!({"value": [{
            "id": TENANT_ID, "displayName": "Contoso",
            "verifiedDomains": [{"name": DOMAIN, "isDefault": true, "isInitial": true}],
        }]})),
        ("GET", "/v1.0/me") => Some(user()),
        ("GET", p) if p.starts_with("/v1.0/users/") => Some(user()),
        ("GET", "/v1.0/groups") => Some(serde_json::json!({"value": [
            {"id": GROUP_ID, "displayName": "Finance team", "mail": format!("finance@{DOMAIN}")},
        ]})),
        ("POST", "/v1.0/groups") => {
            let mut v: Value = serde_json::from_slice(body).ok()?;
            v["id"] = Value::String(GROUP_ID.into());
            Some(v)
        }
        _ => None,
    }
}

/// The parts of the stand-in that behave like Graph's collections, batches and throttling:
/// `deviceConfigurations` in two pages with an absolute `@odata.nextLink`; `POST /{v}/$batch`
/// answering every item as it would be answered directly (in reverse order, as Graph may),
/// with `424` for an item whose dependency failed; a `429` with `Retry-After` for the first
/// request carrying [`THROTTLE_ONCE`].
async fn graph_like(
    parts: &http::request::Parts,
    path: &str,
    body: &Bytes,
    ctx: &Ctx,
) -> Option<Response<Full<Bytes>>> {
    let json = |status: u16, v: Value| {
        let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json; odata.metadata=minimal"),
        );
        r.headers_mut().insert(
            "request-id",
            http::HeaderValue::from_static("00000000-0000-4000-8000-0000000000aa"),
        );
        r
    };
    if parts.headers.contains_key(THROTTLE_ONCE) {
        let first = ctx
            .throttled
            .lock()
            .map(|mut t| t.insert(path.to_string()))
            .unwrap_or(false);
        if first {
            let mut r = json(
                429,
                serde_json::json!({"error": {"code": "TooManyRequests", "message": "Too many requests", "innerError": {"code": "429", "status": "429"}}}),
            );
            r.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("1"));
            return Some(r);
        }
    }
    if parts.method == Method::GET && parts.uri.path() == PAGED_PATH {
        let page = match parts.uri.query() {
            Some(q) if q.contains("$skiptoken=page2") => serde_json::json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/deviceConfigurations",
                "value": [{"id": "dc-3", "displayName": "Third"}],
            }),
            _ => serde_json::json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/deviceConfigurations",
                "value": [{"id": "dc-1", "displayName": "First"}, {"id": "dc-2", "displayName": "Second"}],
                "@odata.nextLink": format!("{}{PAGED_PATH}?$skiptoken=page2", ctx.origin),
            }),
        };
        return Some(json(200, page));
    }
    let lower = parts.uri.path().to_ascii_lowercase();
    if let Some(r) = tenant_answer(parts, &lower, body) {
        return Some(json(200, r));
    }
    if parts.method == Method::GET && lower.ends_with("/assignments") {
        let id = lower.split('/').nth_back(1).unwrap_or("x").to_string();
        return Some(json(
            200,
            serde_json::json!({"value": [{"id": format!("{id}-assignment"), "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]}),
        ));
    }
    if parts.method == Method::POST && (lower == "/v1.0/$batch" || lower == "/beta/$batch") {
        let version = &lower[..lower.len() - "/$batch".len()];
        let v: Value = serde_json::from_slice(body).ok()?;
        let mut statuses: Vec<(String, u16)> = Vec::new();
        let mut out = Vec::new();
        for item in v["requests"].as_array()? {
            let id = item["id"].as_str().unwrap_or("").to_string();
            let failed = item["dependsOn"].as_array().into_iter().flatten().any(|d| {
                statuses
                    .iter()
                    .any(|(i, s)| Some(i.as_str()) == d.as_str() && !(200..300).contains(s))
            });
            if failed {
                statuses.push((id.clone(), 424));
                out.push(serde_json::json!({"id": id, "status": 424, "headers": {"content-type": "application/json"},
                    "body": {"error": {"code": "FailedDependency", "message": "dependency failed"}}}));
                continue;
            }
            let url = item["url"].as_str().unwrap_or("/");
            let mut b = Request::builder()
                .method(item["method"].as_str().unwrap_or("GET"))
                .uri(format!("{version}{url}"));
            for (k, hv) in item["headers"].as_object().into_iter().flatten() {
                b = b.header(k.as_str(), hv.as_str().unwrap_or(""));
            }
            for (k, hv) in &parts.headers {
                if k != "content-type" && k != "content-length" {
                    b = b.header(k, hv);
                }
            }
            let item_body = match &item["body"] {
                Value::Null => Bytes::new(),
                other => Bytes::from(other.to_string()),
            };
            let Ok((item_parts, ())) = b.body(()).map(Request::into_parts) else {
                continue;
            };
            let r = Box::pin(respond(&item_parts, item_body, ctx)).await;
            let status = r.status().as_u16();
            let headers: serde_json::Map<String, Value> = r
                .headers()
                .iter()
                .filter(|(k, _)| *k == "content-type" || *k == "retry-after" || *k == "location")
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value::String(v.to_str().unwrap_or("").to_string()),
                    )
                })
                .collect();
            let bytes = r
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut entry = serde_json::json!({"id": id, "status": status, "headers": headers});
            if !bytes.is_empty() {
                entry["body"] = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            }
            statuses.push((id, status));
            out.push(entry);
        }
        out.reverse();
        return Some(json(200, serde_json::json!({"responses": out})));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// A running `graph-vcr` child process.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    pub base: String,
    stderr_path: PathBuf,
    _scratch: tempfile::TempDir,
}

/// How a proxy process ended.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    /// stderr, then (for [`run_to_end`]) stdout: everything a person would see.
    pub stderr: String,
    /// stdout alone ([`run_to_end`]), for output that is parsed.
    pub stdout: String,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_graph-vcr")
}

impl Proxy {
    /// Starts `graph-vcr ARGS --listen 127.0.0.1:0` and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Result<Self, Error> {
        Self::try_start(args).map_err(|e| format!("graph-vcr did not start: {e:?}").into())
    }

    /// [`Proxy::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Self, Error> {
        Self::spawn(args, env).map_err(|e| format!("graph-vcr did not start: {e:?}").into())
    }

    /// Like [`Proxy::start`], but a process that exits before listening is returned as `Err`.
    pub fn try_start(args: &[&str]) -> Result<Self, Exit> {
        Self::spawn(args, &[])
    }

    /// [`Proxy::start_with_env`] in working directory `cwd` (where `graph-vcr.toml` is looked for).
    pub fn start_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Self, Error> {
        Self::spawn_in(Some(cwd), args, env)
            .map_err(|e| format!("graph-vcr did not start: {e:?}").into())
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Result<Self, Exit> {
        Self::spawn_in(None, args, env)
    }

    fn spawn_in(cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Result<Self, Exit> {
        let scratch = tempfile::tempdir().map_err(io_exit)?;
        let stderr_path = scratch.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(io_exit)?;
        let mut command = Command::new(binary());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("GRAPH_VCR_CASSETTE")
            .env_remove("GRAPH_VCR_CONFIG")
            .env_remove("GRAPH_VCR_PSEUDONYM_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(io_exit)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io_exit(std::io::Error::other("no stdout")))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let addr = line
                    .strip_prefix("listening on http://")
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    .ok_or_else(|| {
                        io_exit(std::io::Error::other(format!(
                            "unexpected first line {line:?}"
                        )))
                    })?;
                Ok(Self {
                    child,
                    addr,
                    base: format!("http://{addr}"),
                    stderr_path,
                    _scratch: scratch,
                })
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map_err(io_exit)?;
                Err(Exit {
                    status,
                    stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                    stdout: String::new(),
                })
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and waits for the process to end.
    pub fn signal(mut self, signal: &str) -> Result<Exit, Error> {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !ok.success() {
            return Err(format!("kill -{signal} failed").into());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Exit {
                    status,
                    stderr: self.stderr(),
                    stdout: String::new(),
                });
            }
            if std::time::Instant::now() > deadline {
                return Err("graph-vcr did not exit within 30 s of the signal".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `graph-vcr ARGS` to completion (for commands that do not serve).
pub fn run_to_end(args: &[&str]) -> Result<Exit, Error> {
    run_to_end_with_env(args, &[])
}

/// [`run_to_end`] with extra environment variables.
pub fn run_to_end_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Exit, Error> {
    let out = Command::new(binary())
        .args(args)
        .env_remove("GRAPH_VCR_CONFIG")
        .env_remove("GRAPH_VCR_PSEUDONYM_KEY")
        .envs(env.iter().copied())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(Exit {
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned() + &stdout,
        stdout,
    })
}

fn io_exit(e: std::io::Error) -> Exit {
    #[cfg(unix)]
    let status = std::os::unix::process::ExitStatusExt::from_raw(1 << 8);
    Exit {
        status,
        stderr: format!("harness error: {e}"),
        stdout: String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// A real HTTP client

/// A response as the client saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// Reads a whole response.
    pub async fn read(response: Response<hyper::body::Incoming>) -> Result<Self, Error> {
        let (parts, body) = response.into_parts();
        Ok(Self {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct HttpClient(Client<HttpConnector, Full<Bytes>>);

impl HttpClient {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Resp, Error> {
        self.send_bytes(method, url, headers, body.as_bytes()).await
    }

    /// [`HttpClient::send`] with a body of any bytes (not UTF-8, say).
    pub async fn send_bytes(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp, Error> {
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let response = self
            .0
            .request(b.body(Full::new(Bytes::copy_from_slice(body)))?)
            .await?;
        Resp::read(response).await
    }

    /// POSTs an assign body with the headers a Graph SDK sends.
    pub async fn assign(
        &self,
        base: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Result<Resp, Error> {
        let auth = format!("Bearer {JWT}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.send("POST", &format!("{base}{path}"), &headers, body)
            .await
    }
}

/// `graph-vcr cassette export --all` of the cassettes in `from` into the directory `to`,
/// asserted to succeed.
pub fn export_all(from: &Path, to: &Path) -> Result<(), Error> {
    let e = run_to_end(&[
        "cassette",
        "export",
        "--all",
        "--cassettes",
        s(from)?,
        "-o",
        s(to)?,
    ])?;
    assert!(e.status.success(), "{}", e.stderr);
    Ok(())
}

/// A path as the `&str` the binary's arguments take.
pub fn s(p: &Path) -> Result<&str, Error> {
    p.to_str().ok_or_else(|| "non-UTF-8 temp path".into())
}

/// Copies the directory tree `from` to `to`, leaving out lock files (a copy is nobody's lock).
pub fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != "graph-vcr.lock" {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Every file under `dir`, with its bytes, sorted by path.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Whether `needle` occurs in any file under `dir`.
pub fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    files_under(dir)
        .iter()
        .any(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
}

// ---------------------------------------------------------------------------------------------
// A broken upstream

/// How a [`FaultyUpstream`] misbehaves after reading a request head.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Starts a response, then resets the connection mid-body.
    ResetMidResponse,
    /// Answers bytes that are not HTTP.
    Malformed,
    /// Answers `204 No Content` that declares (and sends) a body.
    BodyOn204,
}

/// A TLS server on loopback that accepts the handshake and then breaks the HTTP exchange.
pub struct FaultyUpstream {
    pub url: String,
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyUpstream {
    pub async fn start(ca: &TestCa, fault: Fault) -> Result<Self, Error> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()?));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://localhost:{}", listener.local_addr()?.port());
        let requests = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    match fault {
                        Fault::ResetMidResponse => {
                            let _ = tls
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{\"value\":[",
                                )
                                .await;
                            let _ = tls.flush().await;
                            let (tcp, _) = tls.into_inner();
                            // Zero linger: close with RST at once (no blocking on drop).
                            #[allow(deprecated)]
                            let _ = tcp.set_linger(Some(Duration::ZERO));
                            drop(tcp);
                        }
                        Fault::Malformed => {
                            let _ = tls.write_all(b"THIS IS NOT HTTP\r\n\r\n").await;
                            let _ = tls.shutdown().await;
                        }
                        Fault::BodyOn204 => {
                            let _ = tls
                                .write_all(b"HTTP/1.1 204 No Content\r\nrequest-id: r-204\r\ncontent-length: 2\r\n\r\n{}")
                                .await;
                            let _ = tls.shutdown().await;
                        }
                    }
                });
            }
        });
        Ok(Self {
            url,
            requests,
            task,
        })
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stand-in Graph server and `graph-vcr MODE` forwarding to it (test CA trusted), keeping
/// cassettes in `tmp/cassettes`, with `extra` flags. Returns the proxy, the stand-in and the
/// cassette directory.
pub async fn forwarding(
    mode: &str,
    tmp: &Path,
    extra: &[&str],
) -> Result<(Proxy, StandIn, PathBuf), Error> {
    forwarding_with_env(mode, tmp, extra, &[]).await
}

/// [`forwarding`] with extra environment variables for graph-vcr.
pub async fn forwarding_with_env(
    mode: &str,
    tmp: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<(Proxy, StandIn, PathBuf), Error> {
    let ca = TestCa::new()?;
    let ca_pem = ca.write_ca(tmp)?;
    let dir = tmp.join("cassettes");
    let stand_in = StandIn::start(&ca).await?;
    let (dir_s, ca_s) = (
        dir.to_str().ok_or("non-UTF-8 path")?,
        ca_pem.to_str().ok_or("non-UTF-8 path")?,
    );
    let mut args = vec![
        mode,
        "--cassettes",
        dir_s,
        "--upstream",
        &stand_in.url,
        "--upstream-ca",
        ca_s,
    ];
    args.extend_from_slice(extra);
    let proxy = Proxy::start_with_env(&args, env)?;
    Ok((proxy, stand_in, dir))
}

/// The interactions of `cassette` in `dir`, through the real `cassette export` command.
pub fn exported(dir: &Path, cassette: &str) -> Result<Vec<Value>, Error> {
    let dir = dir.to_str().ok_or("non-UTF-8 path")?;
    let out = run_to_end(&["cassette", "export", cassette, "--cassettes", dir])?;
    if !out.status.success() {
        return Err(format!("cassette export failed: {}", out.stderr).into());
    }
    let doc: Value = serde_json::from_str(&out.stdout)?;
    Ok(doc["interactions"].as_array().cloned().unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// A real HTTPS client through a forward proxy

/// What a client got from `CONNECT`.
pub enum Connected {
    /// The proxy answered 200 and the TLS handshake through the tunnel succeeded.
    Tunnel(Tunnel),
    /// The proxy answered something else (the response to `CONNECT` itself).
    Refused(Resp),
}

/// An HTTPS connection through a `CONNECT` tunnel, over h2 or HTTP/1.1 as ALPN decided.
pub struct Tunnel {
    host: String,
    /// The protocol ALPN chose (`h2` or `http/1.1`).
    pub alpn: String,
    sender: Sender,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Opens `CONNECT target` through the proxy at `proxy`, then TLS to the target's host with
/// `roots_pem` as the only trust anchors, offering `alpn`.
pub async fn connect_through(
    proxy: SocketAddr,
    target: &str,
    roots_pem: &str,
    alpn: &[&str],
) -> Result<Connected, Error> {
    use rustls_pki_types::pem::PemObject;
    let tcp = tokio::net::TcpStream::connect(proxy).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await?;
    tokio::spawn(conn.with_upgrades());
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri(target)
        .header("host", target)
        .body(Full::new(Bytes::new()))?;
    let response = send.send_request(connect).await?;
    if response.status() != StatusCode::OK {
        return Ok(Connected::Refused(Resp::read(response).await?));
    }
    let upgraded = hyper::upgrade::on(response).await?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let host = target
        .rsplit_once(':')
        .map_or(target, |(h, _)| h)
        .to_string();
    let name = rustls_pki_types::ServerName::try_from(host.clone())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, TokioIo::new(upgraded))
        .await?;
    let alpn = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let sender = if alpn == "h2" {
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Sender::H2(send)
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Sender::H1(send)
    };
    Ok(Connected::Tunnel(Tunnel { host, alpn, sender }))
}

impl Connected {
    /// The tunnel, or an error that shows what the proxy answered instead.
    pub fn tunnel(self) -> Result<Tunnel, Error> {
        match self {
            Self::Tunnel(t) => Ok(t),
            Self::Refused(r) => Err(format!("CONNECT answered {}: {}", r.status, r.text()).into()),
        }
    }

    /// The refusal, or an error when the tunnel was opened.
    pub fn refused(self) -> Result<Resp, Error> {
        match self {
            Self::Refused(r) => Ok(r),
            Self::Tunnel(t) => Err(format!("CONNECT was accepted ({})", t.alpn).into()),
        }
    }
}

impl Tunnel {
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Resp, Error> {
        let uri = match self.sender {
            Sender::H2(_) => format!("https://{}{path}", self.host),
            Sender::H1(_) => path.to_string(),
        };
        let mut b = Request::builder().method(method).uri(uri);
        if let Sender::H1(_) = self.sender {
            b = b.header("host", &self.host);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let request = b.body(Full::new(Bytes::from(body.to_string())))?;
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
        };
        Resp::read(response).await
    }

    /// POSTs an assign body with the headers a Graph SDK sends.
    pub async fn assign(&mut self, path: &str, body: &str) -> Result<Resp, Error> {
        let auth = format!("Bearer {JWT}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ];
        self.send("POST", path, &headers, body).await
    }
}

/// Sends one request in absolute form (`POST http://host/path`), as a client configured with
/// a plain-HTTP proxy does.
pub async fn absolute_form(
    proxy: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Resp, Error> {
    let tcp = tokio::net::TcpStream::connect(proxy).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let uri: http::Uri = url.parse()?;
    let mut b = Request::builder().method(method).uri(&uri);
    if let Some(a) = uri.authority() {
        b = b.header("host", a.as_str());
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let response = send
        .send_request(b.body(Full::new(Bytes::from(body.to_string())))?)
        .await?;
    Resp::read(response).await
}

/// `graph-vcr MODE --forward` with a CA made in `tmp/ca`, forwarding intercepted hosts to a
/// stand-in (as [`forwarding`] does). Returns the proxy, the stand-in, the cassette directory
/// and graph-vcr's CA certificate (the client's only trust root).
pub async fn forward_proxy(
    mode: &str,
    tmp: &Path,
    extra: &[&str],
) -> Result<(Proxy, StandIn, PathBuf, String), Error> {
    let ca_dir = tmp.join("ca");
    let root = ca_init(&ca_dir)?;
    let mut args = vec![
        "--forward",
        "--ca-dir",
        ca_dir.to_str().ok_or("non-UTF-8 path")?,
    ];
    args.extend_from_slice(extra);
    let (proxy, stand_in, dir) = forwarding(mode, tmp, &args).await?;
    Ok((proxy, stand_in, dir, root))
}

/// Runs `graph-vcr ca init --ca-dir DIR` and returns the certificate PEM.
pub fn ca_init(dir: &Path) -> Result<String, Error> {
    let out = run_to_end(&[
        "ca",
        "init",
        "--ca-dir",
        dir.to_str().ok_or("non-UTF-8 path")?,
    ])?;
    if !out.status.success() {
        return Err(format!("ca init failed: {}", out.stderr).into());
    }
    Ok(std::fs::read_to_string(dir.join("graph-vcr-ca.pem"))?)
}

/// One keep-alive HTTP/1.1 connection to a proxy, for tests that send many calls on it.
pub struct KeepAlive {
    addr: SocketAddr,
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    pub async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { addr, send })
    }

    /// POSTs `body` to the seed path with an SDK's bearer token, into `cassette` when given.
    /// Returns the status, the `request-id` header ("" when absent) and the body.
    pub async fn assign(
        &mut self,
        body: Bytes,
        cassette: Option<&str>,
    ) -> Result<(u16, String, Bytes), Error> {
        let mut request = Request::post(format!("http://{}{SEED_PATH}", self.addr))
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {JWT}"))
            .header("content-type", "application/json");
        if let Some(cassette) = cassette {
            request = request.header("x-graph-vcr-cassette", cassette);
        }
        self.send.ready().await?;
        let response = self
            .send
            .send_request(request.body(Full::new(body))?)
            .await?;
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, request_id, body))
    }
}
