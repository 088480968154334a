use super::*;

fn parse_v1(body: &str) -> Parsed {
    parse(ApiVersion::V1, body.as_bytes())
}

fn codes(parsed: &Parsed) -> Vec<&'static str> {
    let d = match parsed {
        Parsed::Batch(b) => &b.deviations,
        Parsed::Opaque(d) => d,
    };
    d.iter().map(|d| d.code.as_str()).collect()
}

#[test]
fn items_become_the_calls_they_carry() {
    let body = r#"{"requests":[
        {"id":"1","method":"get","url":"/deviceManagement/deviceConfigurations?$select=id"},
        {"id":"2","method":"POST","url":"deviceManagement/deviceConfigurations/a/assign",
         "headers":{"Content-Type":"application/json"},"body":{"assignments":[]},"dependsOn":["1"]},
        {"id":"3","method":"GET","url":"https://graph.microsoft.com/beta/groups/g"}]}"#;
    let Parsed::Batch(b) = parse_v1(body) else {
        panic!("not unpacked: {:?}", codes(&parse_v1(body)));
    };
    let uris: Vec<&str> = b.items.iter().map(|i| i.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "/v1.0/deviceManagement/deviceConfigurations?$select=id",
            "/v1.0/deviceManagement/deviceConfigurations/a/assign",
            "/beta/groups/g",
        ]
    );
    assert_eq!(b.items[0].method, Method::GET);
    assert_eq!(&b.items[1].body[..], br#"{"assignments":[]}"#);
    assert_eq!(b.items[1].depends_on, ["1"]);
    assert!(b.deviations.is_empty(), "{:?}", b.deviations);
}

#[test]
fn batches_graph_refuses_whole_are_opaque_with_why() {
    let many: Vec<String> = (0..21)
        .map(|i| format!(r#"{{"id":"{i}","method":"GET","url":"/me"}}"#))
        .collect();
    let cases = [
        ("not json".to_string(), "batch-malformed"),
        (r#"{"requests":{}}"#.to_string(), "batch-malformed"),
        (r#"{"requests":[{"method":"GET","url":"/me"}]}"#.to_string(), "batch-malformed"),
        (format!(r#"{{"requests":[{}]}}"#, many.join(",")), "batch-too-many-requests"),
        (
            r#"{"requests":[{"id":"a","method":"GET","url":"/me"},{"id":"A","method":"GET","url":"/me"}]}"#.to_string(),
            "batch-duplicate-id",
        ),
        (
            r#"{"requests":[{"id":"1","method":"GET","url":"/me","dependsOn":["9"]}]}"#.to_string(),
            "batch-depends-on-unknown",
        ),
        (
            r#"{"requests":[{"id":"1","method":"GET","url":"/me","dependsOn":["2"]},{"id":"2","method":"GET","url":"/me","dependsOn":["1"]}]}"#.to_string(),
            "batch-depends-on-unknown",
        ),
    ];
    for (body, code) in cases {
        let parsed = parse_v1(&body);
        assert!(matches!(parsed, Parsed::Opaque(_)), "{body}");
        assert_eq!(codes(&parsed).first().copied(), Some(code), "{body}");
    }
}

#[test]
fn rules_that_do_not_stop_unpacking_are_flagged() {
    let body = r#"{"requests":[{"id":"1","method":"POST","url":"/a/assign","body":{"x":1},"depends_on":["0"]}]}"#;
    let parsed = parse_v1(body);
    assert!(matches!(parsed, Parsed::Batch(_)));
    assert_eq!(
        codes(&parsed),
        ["batch-item-missing-content-type", "batch-unknown-member"]
    );
    // msgraph-core writes an empty `depends_on` on every item: nothing is lost, nothing said.
    let sdk = r#"{"requests":[{"id":"1","method":"GET","url":"http://127.0.0.1:1/v1.0/me","depends_on":[]}]}"#;
    assert_eq!(codes(&parse_v1(sdk)), Vec::<&str>::new());
}

#[test]
fn items_run_after_what_they_depend_on() {
    let body = r#"{"requests":[{"id":"1","method":"GET","url":"/a","dependsOn":["3"]},{"id":"2","method":"GET","url":"/b"},{"id":"3","method":"GET","url":"/c"}]}"#;
    let Parsed::Batch(b) = parse_v1(body) else {
        panic!("not unpacked");
    };
    assert_eq!(run_order(&b.items), [1, 2, 0]);
    let forwarded: serde_json::Value =
        serde_json::from_slice(&forwarded_item(&b.items[0], &["1"])).unwrap_or_default();
    assert!(forwarded.get("dependsOn").is_none(), "{forwarded}");
    assert_eq!(forwarded["url"], "/a", "{forwarded}");
}

#[test]
fn batch_paths_in_both_versions_and_nothing_else() {
    let cases = [
        (Method::POST, "/v1.0/$batch", Some(ApiVersion::V1)),
        (Method::POST, "/beta/$BATCH", Some(ApiVersion::Beta)),
        (Method::GET, "/v1.0/$batch", None),
        (Method::POST, "/v1.0/$batch/x", None),
        (Method::POST, "/v2/$batch", None),
        (Method::POST, "//v1.0//$Batch//", Some(ApiVersion::V1)),
        (Method::POST, "/v1.0/x$batch", None),
        (Method::POST, "$batch", None),
        (Method::POST, "/é$batch", None),
    ];
    for (method, path, version) in cases {
        assert_eq!(is_batch(&method, path), version, "{method} {path}");
    }
}

/// 21 items, one over Graph's limit.
fn batch_of_21() -> String {
    let items: Vec<String> = (1..=21)
        .map(|i| format!(r#"{{"id":"{i}","method":"GET","url":"/me"}}"#))
        .collect();
    format!(r#"{{"requests":[{}]}}"#, items.join(","))
}

/// Every `$batch` code has a case that triggers it and a close one that does not.
#[test]
fn every_batch_code_is_triggered_by_its_case_and_not_by_the_close_one() {
    let get =
        |id: &str, extra: &str| format!(r#"{{"id":"{id}","method":"GET","url":"/me"{extra}}}"#);
    let batch = |items: &[String]| format!(r#"{{"requests":[{}]}}"#, items.join(","));
    let cases: Vec<(Code, String, String)> = vec![
        (Code::BatchMalformed, r#"{"requests":[{"id":"1","url":"/me"}]}"#.into(), batch(&[get("1", "")])),
        (Code::BatchTooManyRequests, batch_of_21(), r#"{"requests":[]}"#.into()),
        (Code::BatchDuplicateId, batch(&[get("a", ""), get("A", "")]), batch(&[get("a", ""), get("b", "")])),
        (Code::BatchDependsOnUnknown, batch(&[get("1", r#","dependsOn":["1"]"#)]),
            batch(&[get("1", ""), get("2", r#","dependsOn":["1"]"#)])),
        (Code::BatchItemMissingContentType, r#"{"requests":[{"id":"1","method":"POST","url":"/a/assign","body":{}}]}"#.into(),
            r#"{"requests":[{"id":"1","method":"POST","url":"/a/assign","headers":{"content-type":"application/json"},"body":{}}]}"#.into()),
        (Code::BatchUnknownMember, batch(&[get("1", ""), get("2", r#","depends_on":["1"]"#)]),
            batch(&[get("1", ""), get("2", r#","dependsOn":["1"]"#)])),
    ];
    for code in Code::ALL
        .iter()
        .filter(|c| c.as_str().starts_with("batch-"))
    {
        assert!(
            cases.iter().any(|(c, _, _)| c == code),
            "no case for {code}"
        );
    }
    for (code, trigger, near) in &cases {
        assert!(
            codes(&parse_v1(trigger)).contains(&code.as_str()),
            "{code}: {trigger}"
        );
        assert!(
            !codes(&parse_v1(near)).contains(&code.as_str()),
            "{code} near: {near}"
        );
    }
}

#[test]
fn a_forwarded_item_carries_its_body_as_sent() {
    let body = r#"{"requests":[{"id":"1","method":"POST","url":"/a","headers":{"Content-Type":"application/json"},"body":{"assignments":[{"x":"é\"q"}]}},{"id":"2","method":"PUT","url":"/b","headers":{"content-type":"text/plain"},"body":"aGVsbG8="},{"id":"3","method":"POST","url":"/c","body":null},{"id":"4","method":"GET","url":"/d","dependsOn":["1"]}]}"#;
    let Parsed::Batch(b) = parse_v1(body) else {
        panic!("not unpacked");
    };
    assert_eq!(&b.items[1].body[..], b"hello");
    let sent: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let forwarded: serde_json::Value = serde_json::from_slice(&body_of(
        b.items
            .iter()
            .map(|i| forwarded_item(i, &["1", "2", "3", "4"]))
            .collect(),
    ))
    .unwrap_or_default();
    // The same items, member for member (order within an item aside).
    assert_eq!(forwarded, sent);
}
