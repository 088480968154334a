//! Permissions, offline: the bearer token's `scp` or `roles` held against each action's
//! documented permissions, through the real binary; and the report's list of what a run needs.

mod common;

use common::*;
use serde_json::{Value, json};

fn token(claims: Value) -> String {
    jwt_with(&claims)
}

const CONFIG: &str = "/v1.0/deviceManagement/deviceConfigurations/c-1/assign";
const CONFIG_BODY: &str = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##;
const APP: &str = "/v1.0/deviceAppManagement/mobileApps/a-1/assign";
const APP_BODY: &str = r##"{"mobileAppAssignments":[{"intent":"required","target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_held_against_each_actions_permissions() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let report = tmp.path().join("report.json");
    let (proxy, stand_in, _dir) =
        forwarding("record", tmp.path(), &["--report-json", s(&report)?]).await?;
    let client = HttpClient::new();
    let send = |path: &'static str, body: &'static str, bearer: String| {
        let client = &client;
        let base = proxy.base.clone();
        async move {
            let auth = format!("Bearer {bearer}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let r = client
                .send("POST", &format!("{base}{path}"), &headers, body)
                .await?;
            Ok::<_, Error>(r.header("x-graph-vcr-deviations").unwrap_or("").to_string())
        }
    };
    let delegated =
        token(json!({"scp": "openid DeviceManagementConfiguration.ReadWrite.All", "tid": "t"}));
    let read_only = token(json!({"scp": "DeviceManagementConfiguration.Read.All"}));
    let app_enough = token(json!({"roles": ["DeviceManagementApps.ReadWrite.All"], "tid": "t"}));
    let app_none = token(json!({"roles": []}));
    assert_eq!(send(CONFIG, CONFIG_BODY, delegated.clone()).await?, "");
    assert_eq!(
        send(CONFIG, CONFIG_BODY, read_only).await?,
        "insufficient-permission"
    );
    assert_eq!(send(APP, APP_BODY, app_enough).await?, "");
    assert_eq!(
        send(APP, APP_BODY, app_none).await?,
        "insufficient-permission"
    );
    // An apps scope is no enrollment permission (either configuration scope would be); an
    // opaque token is not judged.
    let apps_only = token(json!({"scp": "DeviceManagementApps.ReadWrite.All"}));
    assert_eq!(
        send(SEED_PATH, SDK_BODY, apps_only).await?,
        "insufficient-permission"
    );
    assert_eq!(send(SEED_PATH, SDK_BODY, delegated).await?, "");
    assert_eq!(
        send(SEED_PATH, SDK_BODY, "opaque-test-token".into()).await?,
        ""
    );
    let exit = proxy.signal("TERM")?;
    stand_in.stop().await;
    assert!(
        !exit.status.success(),
        "insufficient permissions fail the run: {}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains("this run needs (least privileged per action): DeviceManagementApps.ReadWrite.All (mobileApps); DeviceManagementConfiguration.ReadWrite.All (deviceConfigurations); DeviceManagementServiceConfig.ReadWrite.All (deviceEnrollmentConfigurations)"),
        "{}",
        exit.stderr
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let needs = report["needs"].as_array().cloned().unwrap_or_default();
    assert_eq!(needs.len(), 3, "{report:#}");
    assert!(needs.iter().any(|n| n["action"]
        == "v1.0 /deviceAppManagement/mobileApps/{id}/assign"
        && n["delegated"] == "DeviceManagementApps.ReadWrite.All"
        && n["application"] == "DeviceManagementApps.ReadWrite.All"));
    let message = report.to_string();
    assert!(
        message.contains("read-only permission does not allow assign"),
        "{report:#}"
    );
    Ok(())
}

#[test]
fn check_holds_scopes_and_tokens_offline() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let body = tmp.path().join("body.json");
    std::fs::write(&body, CONFIG_BODY)?;
    let action = "/v1.0/deviceManagement/deviceConfigurations/{id}/assign";
    let run = |extra: &[&str]| {
        let mut args = vec!["check", "--action", action];
        args.extend_from_slice(extra);
        args.push(body.to_str().unwrap_or_default());
        run_to_end(&args)
    };
    let enough = run(&["--scopes", "DeviceManagementConfiguration.ReadWrite.All"])?;
    assert!(
        enough.status.success(),
        "{}{}",
        enough.stdout,
        enough.stderr
    );
    let read = run(&["--scopes", "DeviceManagementConfiguration.Read.All"])?;
    assert_eq!(read.status.code(), Some(1));
    assert!(
        read.stdout.contains("insufficient-permission"),
        "{}",
        read.stdout
    );
    let app = token(json!({"roles": ["DeviceManagementConfiguration.ReadWrite.All"]}));
    assert!(run(&["--token", &app])?.status.success());
    let opaque = run(&["--token", "opaque"])?;
    assert_eq!(
        opaque.status.code(),
        Some(2),
        "an unreadable token is a usage error here"
    );
    assert!(
        !opaque.stderr.contains("opaque\n") && opaque.stderr.contains("cannot be read"),
        "{}",
        opaque.stderr
    );
    Ok(())
}
