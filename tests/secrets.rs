//! No secret reaches disk or output: credentials planted where real clients and services put
//! them — headers of every kind, query parameters, JSON, form and text bodies, bodies that do
//! not parse, responses (token endpoints, `addPassword`, key credentials, connection strings,
//! SAS URLs) — go through record, auto, audit and replay (misses included) and through a
//! hand-edited export that is imported, shown, exported again and replayed; then every file
//! graph-vcr wrote and everything it printed is searched for each value.

mod common;

use common::*;
use std::path::Path;

const SECRETS_PATH: &str = "/v1.0/deviceManagement/deviceConfigurations/secrets-1/assign";
const TEXT_PATH: &str = "/v1.0/deviceManagement/deviceConfigurations/secrets-text/assign";
const FORM_PATH: &str = "/v1.0/deviceManagement/deviceConfigurations/form-1/assign";

/// Planted in requests: (value, where).
const REQUEST_SECRETS: [&str; 31] = [
    "CookieValue-q00",
    "AuxiliaryToken-q01",
    "XAuthValue-q02",
    "PrincipalValue-q03",
    "FunctionsKeyValue-q04",
    "ClientSecretHeader-q05",
    "NoSchemeCredential-q06",
    "QueryCodeValue-q07",
    "QueryKeyValue-q08",
    "QuerySigValue-q09",
    "QueryAccessToken-q10",
    "EncodedBearerValue-q11",
    "BodyPassword-q12",
    "BodyClientSecret-q13",
    "BodyKeyCredential-q14",
    "BodyPrivateKey-q15",
    "BodyCredential-q16",
    "BodyAccountKey-q17",
    "BodySasSig-q18",
    "LoneSurrogatePw-q19",
    "HugeNumberPw-q20",
    "TrailingBytesPw-q21",
    "InvalidUtf8Pw-q22",
    "FormClientSecret-q23",
    "FormRefreshToken-q24",
    "FormAuthCode-q25",
    "FormAssertion-q26",
    "TextPassword-q27",
    "BatchItemPassword-q28",
    "BatchItemHeader-q29",
    "BatchBase64Secret-q30",
];

/// A JWT whose dots are percent-encoded, as it appears inside an encoded URL.
fn encoded_jwt() -> String {
    JWT.replace('.', "%2E")
}

/// Sends every planted request through the proxy at `base` (cassette `c`), with the extra
/// body marker `variant` so a replay run can also make misses.
async fn plant(base: &str, variant: &str) -> TestResult {
    let q = REQUEST_SECRETS;
    let client = HttpClient::new();
    let auth = format!("Bearer {JWT}");
    let cookie = format!("session={}; theme=dark", q[0]);
    let aux = format!("Bearer {}", q[1]);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("cookie", cookie.as_str()),
        ("x-ms-authorization-auxiliary", aux.as_str()),
        ("x-auth", q[2]),
        ("x-ms-client-principal", q[3]),
        ("x-functions-key", q[4]),
        ("x-ms-client-secret", q[5]),
    ];
    let query = format!(
        "?code={}&key={}&sig={}&access_token={}&x=Bearer%20{}&y={}",
        q[7],
        q[8],
        q[9],
        q[10],
        q[11],
        encoded_jwt()
    );
    let body = serde_json::json!({
        "assignments": [{"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}],
        "marker": variant,
        "password": q[12], "client_secret": q[13], "keyCredentials": [{"key": q[14]}],
        "privateKey": q[15], "credential": q[16],
        "connectionString": format!("DefaultEndpointsProtocol=https;AccountName=a;AccountKey={};EndpointSuffix=x", q[17]),
        "note": format!("https://a.blob.core.windows.net/c?sv=1&sig={}", q[18]),
    })
    .to_string();
    let url = format!("{base}{SECRETS_PATH}{query}");
    client.send("POST", &url, &headers, &body).await?;

    // No scheme: the whole value is the credential (and the auth-not-bearer message must not
    // quote it).
    let seed = format!("{base}{SEED_PATH}");
    let no_scheme = [
        ("authorization", q[6]),
        ("content-type", "application/json"),
    ];
    client.send("POST", &seed, &no_scheme, SEED_BODY).await?;

    // Bodies that look like JSON but do not parse.
    let json_ct = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let broken: [Vec<u8>; 4] = [
        format!(r#"{{"password":"{}","x":"\ud800","m":"{variant}"}}"#, q[19]).into_bytes(),
        format!(r#"{{"password":"{}","n":1e400,"m":"{variant}"}}"#, q[20]).into_bytes(),
        format!(r#"{{"password":"{}","m":"{variant}"}} trailing"#, q[21]).into_bytes(),
        [
            format!(r#"{{"m":"{variant}","password":"{}"#, q[22]).as_bytes(),
            b"\xff\xfe\"}",
        ]
        .concat(),
    ];
    for b in &broken {
        client.send_bytes("POST", &seed, &json_ct, b).await?;
    }
    // Form-encoded and text bodies.
    let form = format!(
        "client_secret={}&refresh_token={}&code={}&client_assertion={}&m={variant}",
        q[23], q[24], q[25], q[26]
    );
    let form_ct = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    client
        .send("POST", &format!("{base}{FORM_PATH}"), &form_ct, &form)
        .await?;
    let text = format!("password={} m={variant}", q[27]);
    let text_ct = [
        ("authorization", auth.as_str()),
        ("content-type", "text/plain"),
    ];
    client
        .send("POST", &format!("{base}{TEXT_PATH}"), &text_ct, &text)
        .await?;
    // A $batch: secrets in an item's JSON body, its headers and a base64 (form) body, and an
    // item whose answer carries the service's credentials.
    use base64::Engine;
    let form = base64::engine::general_purpose::STANDARD
        .encode(format!("client_secret={}&m={variant}", q[30]));
    let batch = serde_json::json!({"requests": [
        {"id": "1", "method": "POST", "url": "/deviceManagement/deviceConfigurations/secrets-batch/assign",
         "headers": {"Content-Type": "application/json", "x-ms-client-secret": q[29]},
         "body": {"assignments": [], "passwordProfile": {"password": q[28]}, "marker": variant}},
        {"id": "2", "method": "POST", "url": "/deviceManagement/deviceConfigurations/form-batch/assign",
         "headers": {"Content-Type": "application/x-www-form-urlencoded"}, "body": form},
    ]})
    .to_string();
    client
        .send("POST", &format!("{base}/v1.0/$batch"), &json_ct, &batch)
        .await?;
    Ok(())
}

/// How the gate's placeholder for a body it cannot read starts.
const UNREADABLE_MARK: &str = "REDACTED: unreadable body";

fn all_secrets() -> Vec<String> {
    let mut all: Vec<String> = REQUEST_SECRETS.iter().map(|s| s.to_string()).collect();
    all.extend(RESPONSE_SECRETS.iter().map(|s| s.to_string()));
    all.push(JWT.to_string());
    all.push(encoded_jwt());
    all.push("StandInCookieSecret0123456789".into());
    all
}

/// Fails naming every planted value found in a file under `dir` or in `output`.
fn assert_clean(dir: &Path, output: &str, secrets: &[String], what: &str) {
    let mut found = Vec::new();
    for secret in secrets {
        for (path, bytes) in files_under(dir) {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                found.push(format!("{secret} in {}", path.display()));
            }
        }
        if output.contains(secret.as_str()) {
            found.push(format!("{secret} in the output"));
        }
    }
    assert!(found.is_empty(), "{what}: {found:#?}");
}

/// Report flags writing all three reports into `dir`.
fn report_flags(dir: &Path) -> Result<Vec<String>, Error> {
    let mut flags = Vec::new();
    for (flag, file) in [
        ("--report-junit", "junit.xml"),
        ("--report-markdown", "report.md"),
        ("--report-json", "report.json"),
    ] {
        flags.push(flag.to_string());
        flags.push(s(&dir.join(file))?.to_string());
    }
    Ok(flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_any_file_or_output_in_any_mode() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let secrets = all_secrets();
    let out = tmp.path().join("out");
    let flags = report_flags(&out)?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    // record, then auto and audit on fresh directories: every planted request, the stand-in
    // answering with its own secrets.
    for mode in ["record", "auto", "audit"] {
        let scratch = tmp.path().join(mode);
        std::fs::create_dir_all(&scratch)?;
        let (proxy, stand_in, _dir) = forwarding(mode, &scratch, &flags).await?;
        plant(&proxy.base, "first").await?;
        let exit = proxy.signal("TERM")?;
        stand_in.stop().await;
        // The stand-in did get the real values: redaction is for what graph-vcr keeps.
        assert_clean(tmp.path(), &exit.stderr, &secrets, mode);
        if mode == "record" {
            // The search sees what was recorded: every planted call, and the secrets answer.
            let e = run_to_end(&[
                "cassette",
                "show",
                "default",
                "--cassettes",
                s(&scratch.join("cassettes"))?,
            ])?;
            for visible in [
                "token_type",
                "m=first",
                "keyId",
                FORM_PATH,
                TEXT_PATH,
                SECRETS_PATH,
                "/secrets-batch/assign",
                "/form-batch/assign",
            ] {
                assert!(
                    e.stderr.contains(visible),
                    "{visible} not recorded: {}",
                    e.stderr
                );
            }
            assert_eq!(e.stderr.matches(UNREADABLE_MARK).count(), 4, "{}", e.stderr);
        }
    }

    // Replay what record stored: the same calls hit, changed ones miss (a miss explains
    // itself with the nearest recording).
    let dir = tmp.path().join("record").join("cassettes");
    let journal = out.join("replay.jsonl");
    let mut args = vec!["replay", "--cassettes", s(&dir)?, "--journal", s(&journal)?];
    args.extend_from_slice(&flags);
    let proxy = Proxy::start(&args)?;
    plant(&proxy.base, "first").await?;
    plant(&proxy.base, "second").await?;
    let exit = proxy.signal("TERM")?;
    assert!(
        exit.stderr.contains("replay miss"),
        "the replay made no miss: {}",
        exit.stderr
    );
    assert!(std::fs::metadata(&journal)?.len() > 0);
    assert_clean(tmp.path(), &exit.stderr, &secrets, "replay");

    // What was recorded is still usable: the assign call with secrets replays.
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?])?;
    let client = HttpClient::new();
    let r = client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    assert_eq!(
        r.header("x-graph-vcr-outcome"),
        Some("replayed"),
        "{}",
        r.text()
    );
    drop(proxy);

    // The cassette tools.
    for args in [
        vec!["cassette", "list", "--cassettes", s(&dir)?],
        vec!["cassette", "show", "default", "--cassettes", s(&dir)?],
        vec!["cassette", "export", "default", "--cassettes", s(&dir)?],
        vec!["cassette", "textconv", s(&dir.join("db"))?],
    ] {
        let e = run_to_end(&args)?;
        assert!(e.status.success(), "{args:?}: {}", e.stderr);
        assert_clean(tmp.path(), &e.stderr, &secrets, &args.join(" "));
    }
    Ok(())
}

/// Values planted by hand in an export before it is imported.
const IMPORTED: [&str; 5] = [
    "dXNlcjpJbXBvcnRlZEJhc2ljLWkw",
    "ImportedCookie-i1",
    "ImportedClientSecretHeader-i2",
    "ImportedBodySecret-i3",
    "ImportedRefreshToken-i4",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edited_export_is_redacted_on_import_and_keyed_as_a_live_call() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &[]).await?;
    let client = HttpClient::new();
    let body = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##;
    let path = "/v1.0/deviceManagement/deviceConfigurations/dc-9/assign";
    assert_eq!(
        client.assign(&proxy.base, path, body, &[]).await?.status,
        200
    );
    proxy.signal("TERM")?;
    stand_in.stop().await;

    // Plant secrets in the export as a person editing it by hand would.
    let e = run_to_end(&["cassette", "export", "default", "--cassettes", s(&dir)?])?;
    let mut doc: serde_json::Value = serde_json::from_str(&e.stdout)?;
    let i = &mut doc["interactions"][0];
    let headers = i["request"]["headers"]
        .as_array_mut()
        .ok_or("no request headers")?;
    headers.push(serde_json::json!(format!(
        "authorization: Basic {}",
        IMPORTED[0]
    )));
    headers.push(serde_json::json!(format!("cookie: sid={}", IMPORTED[1])));
    headers.push(serde_json::json!(format!(
        "x-ms-client-secret: {}",
        IMPORTED[2]
    )));
    // A JSON body edited as JSON, and a response body edited as text.
    let with_secret = body.replacen('{', &format!(r#"{{"client_secret":"{}","#, IMPORTED[3]), 1);
    i["request"]["json"] = serde_json::from_str(&with_secret)?;
    i["response"]
        .as_object_mut()
        .ok_or("no response")?
        .remove("json");
    i["response"]["text"] = serde_json::json!(format!(
        r#"{{"value":[],"refresh_token":"{}"}}"#,
        IMPORTED[4]
    ));
    let file = tmp.path().join("edited.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc)?)?;

    let imported = tmp.path().join("imported");
    let e = run_to_end(&[
        "cassette",
        "import",
        s(&file)?,
        "--cassettes",
        s(&imported)?,
    ])?;
    assert!(e.status.success(), "{}", e.stderr);
    std::fs::remove_file(&file)?;
    let secrets: Vec<String> = IMPORTED.iter().map(|s| s.to_string()).collect();
    let mut output = e.stderr;
    for args in [
        vec!["cassette", "show", "default", "--cassettes", s(&imported)?],
        vec![
            "cassette",
            "export",
            "default",
            "--cassettes",
            s(&imported)?,
        ],
        vec!["cassette", "textconv", s(&imported.join("db"))?],
    ] {
        let e = run_to_end(&args)?;
        assert!(e.status.success(), "{args:?}: {}", e.stderr);
        output.push_str(&e.stderr);
    }
    assert_clean(tmp.path(), &output, &secrets, "import");

    // Keyed as the live call with that body would be: the gate removed the secret before
    // keying, so a client sending the same body (secret and all) replays it.
    let proxy = Proxy::start(&["replay", "--cassettes", s(&imported)?])?;
    let r = client.assign(&proxy.base, path, &with_secret, &[]).await?;
    assert_eq!(
        r.header("x-graph-vcr-outcome"),
        Some("replayed"),
        "{}",
        r.text()
    );
    let exit = proxy.signal("TERM")?;
    assert_clean(tmp.path(), &exit.stderr, &secrets, "replay of the import");
    Ok(())
}
