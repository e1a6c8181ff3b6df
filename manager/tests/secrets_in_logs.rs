//! The real `manager` binary, logging everything (`trace`, JSON), never writes a
//! password, a password hash or a token secret to its output, whatever the
//! requests do with them.

mod support;

use testkit::manager::ManagerProcess;

const ROOT_PASSWORD: &str = "Root-Secret-Pw-1";
const WRONG_PASSWORD: &str = "Wrong-Secret-Pw-2";
const USER_PASSWORD: &str = "Guest-Secret-Pw-3";
const NEW_PASSWORD: &str = "Guest-Secret-Pw-4";

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = http.request(method, url).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.body(serde_json::to_vec(&body).unwrap()).send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MANAGER__LOG__FORMAT".to_owned(), "json".to_owned()),
        ("MANAGER__LOG__LEVEL".to_owned(), "trace".to_owned()),
    ];
    let mut manager =
        ManagerProcess::start(env!("CARGO_BIN_EXE_manager").as_ref(), dir.path(), &env, ROOT_PASSWORD).await.unwrap();
    let base = format!("http://{}/api/v1", manager.rest_addr);
    let http = support::http();
    let sign_in = |password: &'static str| serde_json::json!({"name": "root", "password": password});
    let (status, body) =
        call(&http, reqwest::Method::POST, format!("{base}/users/signin"), None, sign_in(ROOT_PASSWORD)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();

    use reqwest::Method;
    let (status, _) = call(&http, Method::POST, format!("{base}/users/signin"), None, sign_in(WRONG_PASSWORD)).await;
    assert_eq!(status, 401);
    let guest = serde_json::json!({"name": "guest1", "password": USER_PASSWORD, "role": "guest"});
    let (status, user) = call(&http, Method::POST, format!("{base}/users"), Some(&token), guest).await;
    assert_eq!(status, 201, "{user}");
    let change = serde_json::json!({"new_password": NEW_PASSWORD});
    let url = format!("{base}/users/{}/password", user["id"]);
    assert_eq!(call(&http, Method::PUT, url, Some(&token), change).await.0, 204);
    let (status, pat) = call(
        &http,
        Method::POST,
        format!("{base}/personal-access-tokens"),
        Some(&token),
        serde_json::json!({"name": "ci"}),
    )
    .await;
    assert_eq!(status, 201);
    let pat = pat["token"].as_str().unwrap().to_owned();
    assert_eq!(call(&http, Method::GET, format!("{base}/clusters"), Some(&pat), serde_json::json!({})).await.0, 200);
    // A malformed request carrying a password in the wrong place.
    let bad = serde_json::json!({"name": "guest2", "password": USER_PASSWORD, "role": "nope"});
    assert_eq!(call(&http, Method::POST, format!("{base}/users"), Some(&token), bad).await.0, 400);
    assert_eq!(
        call(&http, Method::POST, format!("{base}/users/signout"), Some(&token), serde_json::json!({})).await.0,
        204
    );

    // Stop it (SIGTERM) and read everything it wrote.
    manager.terminate().await.unwrap();
    let out = manager.log();
    assert!(out.contains("signed in"), "the log has the events: {out}");
    for secret in [ROOT_PASSWORD, WRONG_PASSWORD, USER_PASSWORD, NEW_PASSWORD, &token, &pat, &pat[5..], "$argon2"] {
        assert!(!out.contains(secret), "the log contains a secret ({}...)", &secret[..4]);
    }
}
