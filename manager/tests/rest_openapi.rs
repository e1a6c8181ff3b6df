//! The manager's OpenAPI document (`/api/v1/openapi.json`) describes every
//! route of docs/manager.md, with its security, and is served for real.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

mod support;
use support::rest::start;

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let (m, root) = start().await;
    let doc = root.anonymous().get("/openapi.json").await;
    assert!(
        doc.headers.get(CONTENT_TYPE).is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
        "{:?}",
        doc.headers
    );
    let doc = doc.ok(StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);

    // Every route of docs/manager.md.
    let routes = [
        ("post", "/users/signin"),
        ("post", "/users/signout"),
        ("get", "/users/me"),
        ("get", "/users"),
        ("post", "/users"),
        ("get", "/users/{id}"),
        ("patch", "/users/{id}"),
        ("delete", "/users/{id}"),
        ("put", "/users/{id}/password"),
        ("get", "/roles"),
        ("get", "/personal-access-tokens"),
        ("post", "/personal-access-tokens"),
        ("delete", "/personal-access-tokens/{id}"),
        ("get", "/clusters"),
        ("post", "/clusters"),
        ("get", "/clusters/{id}"),
        ("put", "/clusters/{id}"),
        ("patch", "/clusters/{id}"),
        ("delete", "/clusters/{id}"),
        ("get", "/clusters/{id}/scopes"),
        ("put", "/clusters/{id}/scopes"),
        ("get", "/clusters/{id}/config"),
        ("put", "/clusters/{id}/config"),
        ("get", "/schedulers"),
        ("get", "/schedulers/{id}"),
        ("delete", "/schedulers/{id}"),
        ("get", "/seed-peers"),
        ("get", "/seed-peers/{id}"),
        ("delete", "/seed-peers/{id}"),
        ("get", "/match"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in routes {
        let full = format!("/api/v1{path}");
        let op = paths.get(&full).and_then(|p| p.get(method));
        assert!(op.is_some(), "{method} {full} missing; documented: {:?}", paths.keys().collect::<Vec<_>>());
        // Everything but sign-in asks for the bearer token.
        let secured = op.unwrap()["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        assert_eq!(secured, path != "/users/signin", "{method} {full} security");
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")), "{scheme}");
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());

    // And it is served for real: a documented route answers.
    root.get("/roles").await.ok(StatusCode::OK);
    m.stop().await;
}
