//! CA: the local root certificate forward mode signs its intercepting certificates with.
//!
//! `graph-vcr ca init` makes a root certificate and key in a per-user directory; forward mode
//! loads them and issues, per intercepted host, a short-lived leaf certificate that a client
//! trusting the root accepts. The key file is created owner-only (0600, in a 0700 directory)
//! and never leaves that directory. Leaves live in memory only; there is one per intercepted
//! host, and `--intercept` bounds the hosts, so the cache is bounded too.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// The certificate file in the CA directory (public; this is what clients trust).
pub const CERT_FILE: &str = "graph-vcr-ca.pem";
/// The private key file in the CA directory (owner-only).
pub const KEY_FILE: &str = "graph-vcr-ca.key";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The root is valid for ten years; `ca init --force` rotates it sooner.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Leaves stay under the 398 days that Apple and browsers accept for any certificate.
const LEAF_LIFETIME: Duration = Duration::from_secs(397 * 24 * 60 * 60);

/// `t` as rcgen's date type.
macro_rules! date {
    ($t:expr) => {{
        let (y, m, d) = ymd($t);
        rcgen::date_time_ymd(y, m, d)
    }};
}

/// Where the local CA lives.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CaOptions {
    /// Directory of the local CA made by `graph-vcr ca init`.
    ///
    /// Default: $XDG_DATA_HOME/graph-vcr/ca, else ~/.local/share/graph-vcr/ca (on Windows
    /// %APPDATA%\graph-vcr\ca). Example: `--ca-dir ./.graph-vcr-ca`.
    #[arg(long, env = "GRAPH_VCR_CA_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

impl CaOptions {
    /// The directory asked for, or the per-user default.
    pub fn dir(&self) -> Result<PathBuf, CaError> {
        match &self.ca_dir {
            Some(d) => Ok(d.clone()),
            None => default_dir().ok_or(CaError::NoHome),
        }
    }
}

fn default_dir() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        env("APPDATA")?
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local").join("share")))?
    };
    Some(base.join("graph-vcr").join("ca"))
}

/// Why the CA could not be made or used.
#[derive(Debug, Error)]
pub enum CaError {
    #[error("no home directory to keep the CA in (HOME is not set): pass --ca-dir DIR")]
    NoHome,
    #[error(
        "no graph-vcr CA in {}: run `graph-vcr ca init{}` first",
        dir.display(), dir_flag(dir, *custom)
    )]
    Missing { dir: PathBuf, custom: bool },
    #[error(
        "the CA in {} cannot be used ({path}: {reason}); run `graph-vcr ca init --force{}` to make a new one",
        dir.display(), dir_flag(dir, *custom)
    )]
    Unusable {
        dir: PathBuf,
        custom: bool,
        path: String,
        reason: String,
    },
    #[error(
        "a CA already exists in {}: pass --force to replace it (clients that trust the old one must then trust the new one)",
        .0.display()
    )]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup for {host}: {source}")]
    Tls {
        host: String,
        #[source]
        source: rustls::Error,
    },
}

fn dir_flag(dir: &Path, custom: bool) -> String {
    if custom {
        format!(" --ca-dir {}", dir.display())
    } else {
        String::new()
    }
}

/// The two files of a CA directory.
#[derive(Debug, Clone)]
pub struct CaFiles {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CaFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }
}

/// Makes a new root certificate and key in `dir`. Refuses to replace one unless `force`.
pub fn init(dir: &Path, force: bool) -> Result<CaFiles, CaError> {
    let files = CaFiles::in_dir(dir);
    if !force && (files.cert.exists() || files.key.exists()) {
        return Err(CaError::Exists(dir.to_path_buf()));
    }
    create_private_dir(dir)?;
    let key = KeyPair::generate()?;
    let fingerprint = Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key));
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    // A per-key name: two machines' CAs never look alike in a trust store.
    name.push(
        DnType::CommonName,
        format!("graph-vcr local CA {}", hex(&fingerprint[..4])),
    );
    name.push(
        DnType::OrganizationName,
        "graph-vcr (testing only; not for production trust stores)",
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial(&fingerprint));
    let now = SystemTime::now();
    params.not_before = date!(now - DAY);
    params.not_after = date!(now + CA_LIFETIME);
    let cert = params.self_signed(&key)?;
    // The key first: a certificate without its key is useless, the reverse is merely pending.
    write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(files)
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io)
}

/// Writes `bytes` to a fresh file with `mode` from the start (never briefly world-readable),
/// then renames it over `path`, so a reader sees the old file or the new one, not half of one.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// Facts about a CA certificate, for `ca show`.
#[derive(Debug, Clone)]
pub struct CaInfo {
    pub files: CaFiles,
    pub subject: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SHA-256 of the DER certificate, colon-separated hex (as browsers and `openssl` show it).
    pub sha256: String,
    pub pem: String,
    /// Whether the key file is readable by others than its owner (unix only).
    pub key_exposed: bool,
}

/// A loaded CA: signs leaf certificates and keeps one TLS server setup per host.
pub struct LocalCa {
    info: CaInfo,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// One key for every leaf of this process: hosts differ only in their certificates.
    leaf_key: KeyPair,
    configs: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert", &self.info.files.cert)
            .finish()
    }
}

impl LocalCa {
    /// Loads the CA from `options`' directory, with an error that says what to run when it
    /// is missing or broken.
    pub fn load(options: &CaOptions) -> Result<Self, CaError> {
        let dir = options.dir()?;
        let custom = options.ca_dir.is_some();
        let files = CaFiles::in_dir(&dir);
        if !files.cert.exists() && !files.key.exists() {
            return Err(CaError::Missing { dir, custom });
        }
        let unusable = |path: &Path, reason: String| CaError::Unusable {
            dir: dir.clone(),
            custom,
            path: path.display().to_string(),
            reason,
        };
        let read =
            |path: &Path| std::fs::read_to_string(path).map_err(|e| unusable(path, e.to_string()));
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| unusable(&files.cert, format!("not a PEM certificate: {e}")))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| unusable(&files.key, format!("not a PEM private key: {e}")))?;
        let info = describe(&files, &cert_der, &cert_pem)
            .map_err(|reason| unusable(&files.cert, reason))?;
        if !same_public_key(&cert_der, &key) {
            return Err(unusable(
                &files.key,
                "this key does not belong to the certificate beside it".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| unusable(&files.cert, format!("not a usable CA certificate: {e}")))?;
        if info.key_exposed {
            tracing::warn!(key = %files.key.display(),
                "the CA key is readable by others than its owner; run chmod 600 on it");
        }
        if info.not_after < SystemTime::now() {
            return Err(unusable(&files.cert, "the certificate has expired".into()));
        }
        Ok(Self {
            info,
            cert_der,
            issuer,
            leaf_key: KeyPair::generate()?,
            configs: Mutex::new(HashMap::new()),
        })
    }

    pub fn info(&self) -> &CaInfo {
        &self.info
    }

    /// The TLS server setup that presents `host` a leaf signed by this CA, made on first use.
    /// ALPN offers h2 and http/1.1; the client picks.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let host = host.to_ascii_lowercase();
        if let Some(found) = self
            .configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&host)
        {
            return Ok(Arc::clone(found));
        }
        let leaf = self.leaf(&host)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let tls_err = |source| CaError::Tls {
            host: host.clone(),
            source,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(vec![leaf, self.cert_der.clone()], key)
            .map_err(tls_err)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host, Arc::clone(&config));
        Ok(config)
    }

    fn leaf(&self, host: &str) -> Result<CertificateDer<'static>, CaError> {
        // An IPv6 host arrives bracketed (`[::1]`); the certificate names the address itself.
        let mut params = CertificateParams::new(vec![host.trim_matches(['[', ']']).to_string()])?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        params.serial_number = Some(serial(&Sha256::digest(format!("{host}@{nanos}"))));
        params.not_before = date!(now - DAY);
        params.not_after = date!(now + LEAF_LIFETIME).min(date!(self.info.not_after));
        Ok(params
            .signed_by(&self.leaf_key, &self.issuer)?
            .der()
            .clone())
    }
}

/// Reads the facts `ca show` prints, without loading the key.
pub fn show(options: &CaOptions) -> Result<CaInfo, CaError> {
    let dir = options.dir()?;
    let custom = options.ca_dir.is_some();
    let files = CaFiles::in_dir(&dir);
    if !files.cert.exists() {
        return Err(CaError::Missing { dir, custom });
    }
    let unusable = |reason: String| CaError::Unusable {
        dir: dir.clone(),
        custom,
        path: files.cert.display().to_string(),
        reason,
    };
    let pem = std::fs::read_to_string(&files.cert).map_err(|e| unusable(e.to_string()))?;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| unusable(format!("not a PEM certificate: {e}")))?;
    describe(&files, &der, &pem).map_err(unusable)
}

fn describe(files: &CaFiles, der: &CertificateDer<'_>, pem: &str) -> Result<CaInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let time = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    let digest = Sha256::digest(der.as_ref());
    let sha256 = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(CaInfo {
        files: files.clone(),
        subject: cert.subject().to_string(),
        not_before: time(cert.validity().not_before.timestamp()),
        not_after: time(cert.validity().not_after.timestamp()),
        sha256,
        pem: pem.to_string(),
        key_exposed: key_exposed(&files.key),
    })
}

fn same_public_key(cert: &CertificateDer<'_>, key: &KeyPair) -> bool {
    use rcgen::PublicKeyData;
    x509_parser::parse_x509_certificate(cert)
        .is_ok_and(|(_, c)| c.public_key().raw == key.subject_public_key_info().as_slice())
}

#[cfg(unix)]
fn key_exposed(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn key_exposed(_path: &Path) -> bool {
    false
}

/// How to make clients trust the CA, for `ca show`. Commands are those the platforms and
/// tools document; `pem` is the certificate's path.
pub fn trust_instructions(pem: &Path) -> String {
    let p = pem.display();
    format!(
        "\
Trust it only where you test, and remove it when done (anyone with the key can impersonate
the hosts graph-vcr intercepts to a machine that trusts it).

  Debian, Ubuntu:   sudo cp {p} /usr/local/share/ca-certificates/graph-vcr.crt && sudo update-ca-certificates
  Fedora, RHEL:     sudo cp {p} /etc/pki/ca-trust/source/anchors/graph-vcr.pem && sudo update-ca-trust
  macOS:            sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {p}
  Windows:          certutil -user -addstore Root {p}
                    (PowerShell: Import-Certificate -FilePath {p} -CertStoreLocation Cert:\\CurrentUser\\Root)
  Python (requests, Azure CLI; httpx and msgraph-sdk via SSL_CERT_FILE): these replace the
                    trusted roots, so give them the system roots plus this CA:
                    cat /etc/ssl/certs/ca-certificates.crt {p} > graph-vcr-bundle.pem
                    export REQUESTS_CA_BUNDLE=$PWD/graph-vcr-bundle.pem SSL_CERT_FILE=$PWD/graph-vcr-bundle.pem
  Node.js:          export NODE_EXTRA_CA_CERTS={p}   (adds to the built-in roots)
  PowerShell, .NET: Windows: the Windows line above. Linux: the system store (Debian/Ubuntu or
                    Fedora/RHEL line above). macOS: the macOS line above.
  curl:             curl --proxy http://127.0.0.1:8080 --cacert {p} https://graph.microsoft.com/...
"
    )
}

/// `t` as (year, month, day) in UTC: whole days are enough for validity bounds.
fn ymd(t: SystemTime) -> (i32, u8, u8) {
    let days = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / DAY.as_secs();
    civil_from_days(days as i64)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// A positive 16-byte serial from a digest (RFC 5280: unique per issuer, at most 20 bytes).
fn serial(digest: &[u8]) -> SerialNumber {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_name_their_host_and_are_cached() -> Result<(), CaError> {
        use x509_parser::extensions::GeneralName;
        let dir = std::env::temp_dir().join(format!("graph-vcr-ca-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        init(&dir, false)?;
        let ca = LocalCa::load(&CaOptions {
            ca_dir: Some(dir.clone()),
        })?;
        for (host, want) in [
            ("graph.microsoft.com", "graph.microsoft.com"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "::1"),
        ] {
            let leaf = ca.leaf(host)?;
            let (_, cert) = x509_parser::parse_x509_certificate(&leaf)
                .map_err(|_| CaError::Generate(rcgen::Error::CouldNotParseCertificate))?;
            let names: Vec<String> = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|san| {
                    san.value
                        .general_names
                        .iter()
                        .map(|n| match n {
                            GeneralName::DNSName(d) => d.to_string(),
                            GeneralName::IPAddress(b) => match b.len() {
                                4 => std::net::IpAddr::from(
                                    <[u8; 4]>::try_from(*b).unwrap_or_default(),
                                )
                                .to_string(),
                                16 => std::net::IpAddr::from(
                                    <[u8; 16]>::try_from(*b).unwrap_or_default(),
                                )
                                .to_string(),
                                _ => String::new(),
                            },
                            _ => String::new(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(names, vec![want.to_string()], "{host}");
            let config = ca.server_config(host)?;
            assert_eq!(
                config.alpn_protocols,
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            );
            assert!(Arc::ptr_eq(&config, &ca.server_config(host)?), "not cached");
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
