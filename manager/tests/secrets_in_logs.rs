//! The real `manager` binary, logging everything (`trace`, JSON), never writes a
//! password, a password hash or a token secret to its output, whatever the
//! requests do with them.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::rest::Api;
use testkit::manager::ManagerProcess;

const ROOT_PASSWORD: &str = "Root-Secret-Pw-1";
const WRONG_PASSWORD: &str = "Wrong-Secret-Pw-2";
const USER_PASSWORD: &str = "Guest-Secret-Pw-3";
const NEW_PASSWORD: &str = "Guest-Secret-Pw-4";

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MANAGER__LOG__FORMAT".to_owned(), "json".to_owned()),
        ("MANAGER__LOG__LEVEL".to_owned(), "trace".to_owned()),
    ];
    let mut manager =
        ManagerProcess::start(env!("CARGO_BIN_EXE_manager").as_ref(), dir.path(), &env, ROOT_PASSWORD).await.unwrap();
    let anon = Api::at(manager.rest_addr);
    let root = anon.sign_in("root", ROOT_PASSWORD).await;
    let token = root.token().to_owned();

    anon.sign_in_answer("root", WRONG_PASSWORD).await.unauthenticated();
    let guest = json!({"name": "guest1", "password": USER_PASSWORD, "role": "guest"});
    let user = root.post("/users", guest).await.ok(StatusCode::CREATED);
    let change = json!({"new_password": NEW_PASSWORD});
    root.put(&format!("/users/{}/password", user["id"]), change).await.ok(StatusCode::NO_CONTENT);
    let pat = root.post("/personal-access-tokens", json!({"name": "ci"})).await.ok(StatusCode::CREATED);
    let pat = pat["token"].as_str().unwrap().to_owned();
    root.with(&pat).get("/clusters").await.ok(StatusCode::OK);
    // A malformed request carrying a password in the wrong place.
    let bad = json!({"name": "guest2", "password": USER_PASSWORD, "role": "nope"});
    assert_eq!(root.post("/users", bad).await.status, StatusCode::BAD_REQUEST);
    root.post("/users/signout", json!({})).await.ok(StatusCode::NO_CONTENT);

    // Stop it (SIGTERM) and read everything it wrote.
    manager.terminate().await.unwrap();
    let out = manager.log();
    assert!(out.contains("signed in"), "the log has the events: {out}");
    for secret in [ROOT_PASSWORD, WRONG_PASSWORD, USER_PASSWORD, NEW_PASSWORD, &token, &pat, &pat[5..], "$argon2"] {
        assert!(!out.contains(secret), "the log contains a secret ({}...)", &secret[..4]);
    }
}
