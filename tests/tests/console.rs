//! The manager's web console in a real browser: the `manager` and
//! `scheduler` binaries on loopback, and headless Chromium driven through
//! chromedriver over the W3C WebDriver HTTP protocol. Root signs in, creates a
//! cluster with a CIDR scope, gets a field error for a bad CIDR and asks
//! "which cluster would this host get?" (`no_cluster` while no scheduler is
//! registered); a real scheduler joins the cluster, shows active in the
//! members view and makes the answer that cluster by the `cidr` rule; killed,
//! it shows inactive and root deletes it. Root signs out (the token is
//! revoked); a guest sees no write controls and is sent back to the sign-in
//! form when its session is revoked elsewhere.
//!
//! Needs the binaries built (`cargo build --workspace --bins`) and Debian's
//! `chromium` and `chromium-driver`. Without the browser the test prints
//! SKIPPED and passes, except under CI (`CI` set), where it fails.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use testkit::cluster::SchedulerProcess;
use testkit::dfdaemon::{sibling_binary, tail};
use testkit::eventually::{DEADLINE, START_DEADLINE, try_poll};
use testkit::manager::ManagerProcess;
use testkit::process::ChildGuard;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ROOT_PASSWORD: &str = "console-root-password";
const GUEST_PASSWORD: &str = "console-guest-password";
/// Where the console keeps its sign-in token (app.js `TOKEN_KEY`).
const TOKEN_KEY: &str = "darter.console.token";
/// The W3C WebDriver key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Sends one JSON request, bounded by `timeout`, and returns the status and
/// the JSON body (`null` when empty or not JSON).
async fn http_json(
    client: &HttpClient,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut req = Request::builder().method(method.clone()).uri(url);
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let payload = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(v)?)
        }
        None => Bytes::new(),
    };
    let exchange = async {
        let resp = client.request(req.body(Full::new(payload))?).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        anyhow::Ok((status, json))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{method} {url}: no answer in {timeout:?}"))?
}

/// Whether Debian's browser and driver are installed (saying so when not).
fn browser_installed() -> bool {
    if Path::new(CHROMEDRIVER).is_file() && Path::new(CHROMIUM).is_file() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{CHROMIUM} or {CHROMEDRIVER} is missing and CI must not skip the console test: apt-get install chromium chromium-driver"
        );
    }
    println!("SKIPPED console test: chromium/chromedriver not installed (apt-get install chromium chromium-driver)");
    false
}

/// The real `manager` binary on loopback (the kit's launcher) with a client
/// for its REST API.
struct Manager {
    process: ManagerProcess,
    client: HttpClient,
}

impl Manager {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let process = ManagerProcess::start(&sibling_binary("manager")?, dir, &[], ROOT_PASSWORD).await?;
        Ok(Self { process, client: Client::builder(TokioExecutor::new()).build_http() })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.process.rest_addr)
    }

    /// Calls the REST API directly (setup and checks the browser cannot see).
    async fn api(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        http_json(&self.client, method, &self.url(&format!("/api/v1{path}")), Some(bearer), body.as_ref(), DEADLINE)
            .await
    }

    fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }
}

/// chromedriver in its own process group, so that dropping it kills the
/// browser processes it started too (a plain SIGKILL to chromedriver would
/// orphan Chromium). Chromium's temporary files go to `dir` (`TMPDIR`).
struct ChromeDriver {
    url: String,
    log: PathBuf,
    child: ChildGuard,
}

impl ChromeDriver {
    /// Starts chromedriver on a port the kernel picks (`--port=0`; it logs
    /// the one it got) and waits until it reports ready.
    async fn start(dir: &Path, client: &HttpClient) -> anyhow::Result<Self> {
        let log = dir.join("chromedriver.log");
        let out = File::create(&log)?;
        let child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .env("TMPDIR", dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("start chromedriver")?;
        let mut driver = Self { url: String::new(), log, child: ChildGuard::new(child) };
        let port = try_poll("chromedriver to log its port", START_DEADLINE, || {
            let exited = driver.child.has_exited();
            let port = logged_port(&driver.log);
            async move {
                anyhow::ensure!(!exited, "chromedriver exited");
                Ok(port)
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&driver.log, 40)))?;
        driver.url = format!("http://127.0.0.1:{port}");
        let status = format!("{}/status", driver.url);
        try_poll("chromedriver to report ready", START_DEADLINE, || {
            let exited = driver.child.has_exited();
            let status = &status;
            async move {
                anyhow::ensure!(!exited, "chromedriver exited");
                let (_, v) = http_json(client, Method::GET, status, None, None, DEADLINE).await?;
                Ok((v["value"]["ready"] == true).then_some(()))
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&driver.log, 40)))?;
        Ok(driver)
    }
}

/// The port in chromedriver's "started successfully on port N." line.
fn logged_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let rest = &text[text.find("started successfully on port ")? + "started successfully on port ".len()..];
    rest[..rest.find('.')?].parse().ok()
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it started.
        // `ChildGuard` then reaps chromedriver itself.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
    }
}

/// A WebDriver session with headless Chromium.
struct Browser {
    client: HttpClient,
    session: String,
}

impl Browser {
    async fn open(driver: &ChromeDriver, client: HttpClient, profile: &Path) -> anyhow::Result<Self> {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let url = format!("{}/session", driver.url);
        let (status, v) = http_json(&client, Method::POST, &url, None, Some(&capabilities), START_DEADLINE).await?;
        ensure!(status.is_success(), "new session: {status} {v}");
        let id = v["value"]["sessionId"].as_str().context("new session: no sessionId")?;
        let browser = Self { client, session: format!("{url}/{id}") };
        browser.cmd(Method::POST, "/timeouts", json!({"implicit": 0, "pageLoad": 10_000, "script": 10_000})).await?;
        Ok(browser)
    }

    /// One WebDriver command on this session; its `value`, or its error.
    async fn cmd(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session);
        let body = (method != Method::GET && method != Method::DELETE).then_some(body);
        let (status, v) = http_json(&self.client, method.clone(), &url, None, body.as_ref(), DEADLINE).await?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {} {}", v["value"]["error"], v["value"]["message"]);
        }
        Ok(v["value"].clone())
    }

    async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/url", json!({ "url": url })).await.map(drop)
    }

    /// Runs `script` (a function body) in the page and returns its result.
    async fn js(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(Method::POST, "/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Polls `script` until it returns something other than `null`.
    async fn wait_js(&self, what: &str, script: &str, args: Value) -> anyhow::Result<Value> {
        try_poll(what, DEADLINE, || async {
            let v = self.js(script, args.clone()).await?;
            Ok((!v.is_null()).then_some(v))
        })
        .await
    }

    /// Waits until form `form` highlights fields; answers `{bad: [their
    /// ids], error: <the text of its error box error_box>}`.
    async fn invalid_fields(&self, what: &str, form: &str, error_box: &str) -> anyhow::Result<Value> {
        let script = "const bad = [...document.querySelectorAll(`#${arguments[0]} .invalid`)].map((e) => e.id); \
             return bad.length ? {bad, error: document.getElementById(arguments[1]).innerText} : null;";
        self.wait_js(what, script, json!([form, error_box])).await
    }

    /// The reference of the element `css` matches, when it is displayed now.
    async fn displayed(&self, css: &str) -> anyhow::Result<Option<String>> {
        let found = self.cmd(Method::POST, "/element", json!({"using": "css selector", "value": css})).await?;
        let id = found[ELEMENT_KEY].as_str().context("no element reference")?.to_owned();
        let shown = self.cmd(Method::GET, &format!("/element/{id}/displayed"), Value::Null).await?;
        Ok((shown == true).then_some(id))
    }

    /// Waits until `css` matches a displayed element, and returns its reference.
    async fn element(&self, css: &str) -> anyhow::Result<String> {
        try_poll(&format!("{css} to be displayed"), DEADLINE, || self.displayed(css)).await
    }

    /// Runs WebDriver `commands` on the element `css` matches once it is
    /// displayed, returning the last one's value. The console redraws its
    /// tables when data arrives, so the element found may be replaced before
    /// a command reaches it ("stale element reference"): then it is found
    /// again and the commands run on the new one. Any other error ends it.
    async fn on_element(&self, css: &str, commands: &[(Method, &str, Value)]) -> anyhow::Result<Value> {
        let what = format!("{css} to be displayed and take {} command(s)", commands.len());
        try_poll(&what, DEADLINE, || async {
            let Some(id) = self.displayed(css).await? else { return Ok(None) };
            let mut last = Value::Null;
            for (method, action, body) in commands {
                match self.cmd(method.clone(), &format!("/element/{id}{action}"), body.clone()).await {
                    Ok(v) => last = v,
                    Err(e) if e.to_string().contains("stale element reference") => return Err(e),
                    Err(e) => return Ok(Some(Err(e))),
                }
            }
            Ok(Some(Ok(last)))
        })
        .await?
    }

    async fn is_displayed(&self, css: &str) -> anyhow::Result<bool> {
        let v = self
            .js("const e = document.querySelector(arguments[0]); return !!e && e.checkVisibility();", json!([css]))
            .await?;
        Ok(v == true)
    }

    async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.on_element(css, &[(Method::POST, "/click", json!({}))]).await.map(drop)
    }

    /// Clears the input `css` and types `text` into it, key by key.
    async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let commands = [(Method::POST, "/clear", json!({})), (Method::POST, "/value", json!({ "text": text }))];
        self.on_element(css, &commands).await.map(drop)
    }

    /// The text of the first element matching `css` once it is displayed.
    async fn text(&self, css: &str) -> anyhow::Result<String> {
        let v = self.on_element(css, &[(Method::GET, "/text", Value::Null)]).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// The page's console messages since the last call.
    async fn console_log(&self) -> anyhow::Result<Vec<String>> {
        let v = self.cmd(Method::POST, "/se/log", json!({"type": "browser"})).await?;
        Ok(v.as_array()
            .map(|entries| entries.iter().map(|e| format!("{} {}", e["level"], e["message"])).collect())
            .unwrap_or_default())
    }

    /// What the page shows, for a failure report.
    async fn page_text(&self) -> String {
        match self.js("return location.href + '\\n' + document.body.innerText;", json!([])).await {
            Ok(v) => v.as_str().unwrap_or_default().to_owned(),
            Err(e) => format!("(page unavailable: {e:#})"),
        }
    }

    async fn quit(&self) {
        let _ = self.cmd(Method::DELETE, "", Value::Null).await;
    }
}

/// Signs in through the form and returns the session's token once the
/// console shows who is signed in.
async fn sign_in(b: &Browser, name: &str, password: &str, role: &str) -> anyhow::Result<String> {
    b.type_into("#signin-name", name).await?;
    b.type_into("#signin-password", password).await?;
    b.click("#signin-submit").await?;
    let whoami = format!("{name} ({role})");
    b.wait_js(
        &format!("the console to show {whoami}"),
        "return document.getElementById('whoami').textContent === arguments[0] && \
                document.getElementById('nav').checkVisibility() ? true : null;",
        json!([whoami]),
    )
    .await?;
    let token = b.js("return sessionStorage.getItem(arguments[0]);", json!([TOKEN_KEY])).await?;
    let token = token.as_str().context("no token in sessionStorage after sign-in")?.to_owned();
    // Neither the password nor the token is in the URL, the DOM or localStorage.
    let exposed = b
        .js(
            "return [location.href, document.documentElement.outerHTML, JSON.stringify(localStorage)].join('\\n');",
            json!([]),
        )
        .await?;
    let exposed = exposed.as_str().unwrap_or_default();
    ensure!(!exposed.contains(password), "the password is in the URL, DOM or localStorage");
    ensure!(!exposed.contains(&token), "the token is in the URL, DOM or localStorage");
    ensure!(
        b.js("return document.getElementById('signin-password').value;", json!([])).await? == "",
        "password field not cleared"
    );
    Ok(token)
}

/// Waits for the sign-in form with `message` (a substring) above it.
async fn expect_signin_form(b: &Browser, message: &str) -> anyhow::Result<()> {
    let shown = b
        .wait_js(
            "the sign-in form",
            "return document.getElementById('signin-form').checkVisibility() && \
                    document.getElementById('nav').hidden ? document.getElementById('signin-message').textContent : null;",
            json!([]),
        )
        .await?;
    ensure!(shown.as_str().unwrap_or_default().contains(message), "sign-in message {shown}, expected {message:?}");
    let token = b.js("return sessionStorage.getItem(arguments[0]);", json!([TOKEN_KEY])).await?;
    ensure!(token.is_null(), "the token is still in sessionStorage");
    Ok(())
}

/// Submits "which cluster would this host get?" for `ip` and returns the
/// answer as shown: `{state: "ok" | "error", text, rule?, cluster?, detail?,
/// schedulers?}`.
async fn ask_match(b: &Browser, ip: &str) -> anyhow::Result<Value> {
    b.click("#nav a[data-view=\"match\"]").await?;
    b.type_into("#match-ip", ip).await?;
    b.click("#match-submit").await?;
    b.wait_js(
        "the match answer",
        "const r = document.getElementById('match-result'); \
         if (!r.checkVisibility()) return null; \
         const text = (id) => document.getElementById(id)?.textContent; \
         return {state: r.dataset.state, text: r.innerText, rule: text('match-rule'), \
                 cluster: text('match-cluster'), detail: text('match-detail'), schedulers: text('match-schedulers')};",
        json!([]),
    )
    .await
}

/// Root signs in, creates cluster idc-a (10.0.0.0/8) and fails to create one
/// with a bad CIDR; "which cluster?" has no answer yet. Returns root's token
/// and idc-a's ID.
async fn root_session(b: &Browser, m: &Manager) -> anyhow::Result<(String, i64)> {
    // `GET /` redirects to the console, which starts at the sign-in form.
    b.goto(&m.url("/")).await?;
    b.element("#signin-form").await?;
    let path = b.js("return location.pathname;", json!([])).await?;
    ensure!(path == "/console/", "GET / landed on {path}");
    let token = sign_in(b, "root", ROOT_PASSWORD, "root").await?;

    // A cluster with a CIDR scope appears in the table.
    b.click("#clusters-new").await?;
    b.type_into("#cluster-name", "idc-a").await?;
    b.type_into("#cluster-cidrs", "10.0.0.0/8").await?;
    b.click("#cluster-submit").await?;
    let row = b
        .wait_js(
            "cluster idc-a in the table",
            "const row = document.querySelector('#clusters-table tbody tr[data-name=\"idc-a\"]'); \
             return row && document.getElementById('cluster-form').hidden ? {id: row.dataset.clusterId, text: row.innerText} : null;",
            json!([]),
        )
        .await?;
    let text = row["text"].as_str().unwrap_or_default();
    ensure!(text.contains("cidrs 10.0.0.0/8") && text.contains("load 32"), "cluster row: {text:?}");
    let cluster_id: i64 = row["id"].as_str().unwrap_or_default().parse().context("cluster ID in the row")?;

    // A bad CIDR: the server's error is shown and `scopes.cidrs` highlighted.
    b.click("#clusters-new").await?;
    b.type_into("#cluster-name", "bad-cidr").await?;
    b.type_into("#cluster-cidrs", "10.0.0.0/33").await?;
    b.click("#cluster-submit").await?;
    let invalid = b.invalid_fields("the error on scopes.cidrs", "cluster-form", "cluster-error").await?;
    ensure!(invalid["bad"] == json!(["cluster-cidrs"]), "highlighted: {invalid}");
    let error = invalid["error"].as_str().unwrap_or_default();
    ensure!(error.contains("scopes.cidrs") && error.contains("10.0.0.0/33"), "error shown: {error:?}");
    ensure!(b.is_displayed("#cluster-error").await?, "the error is not visible");
    b.click("#cluster-cancel").await?;
    ensure!(!b.is_displayed("#cluster-form").await?, "cancel leaves the form open");
    let (status, clusters) = m.api(Method::GET, "/clusters", &token, None).await?;
    let names: Vec<&str> = clusters.as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    ensure!(status == StatusCode::OK && !names.contains(&"bad-cidr"), "clusters: {status} {clusters}");

    // Which cluster would 10.1.2.3 get? None: no cluster has an active scheduler.
    let answer = ask_match(b, "10.1.2.3").await?;
    let text = answer["text"].as_str().unwrap_or_default();
    ensure!(answer["state"] == "error", "match answer: {answer}");
    ensure!(
        text.contains("No cluster for this host")
            && text.contains("404 no_cluster")
            && text.contains("active scheduler"),
        "match answer: {text:?}"
    );

    // Members: none yet, and no error.
    b.click("#nav a[data-view=\"members\"]").await?;
    let empty = b.text("#schedulers-table tbody tr.empty").await?;
    ensure!(empty == "No schedulers.", "schedulers table: {empty:?}");
    ensure!(!b.is_displayed("#members-error").await?, "members error: {}", b.page_text().await);
    Ok((token, cluster_id))
}

/// Polls the API until `cluster_id` has `count` schedulers in `state`.
async fn expect_schedulers(m: &Manager, token: &str, cluster_id: i64, state: &str, count: usize) -> anyhow::Result<()> {
    let path = format!("/schedulers?cluster_id={cluster_id}&state={state}");
    try_poll(&format!("{count} {state} scheduler(s) in cluster {cluster_id}"), DEADLINE, || async {
        let (_, v) = m.api(Method::GET, &path, token, None).await?;
        Ok((v.as_array().map(Vec::len) == Some(count)).then_some(()))
    })
    .await
}

/// A real scheduler joins idc-a: the members view shows it active and
/// "which cluster?" answers idc-a by its CIDR. Killed, it turns inactive and
/// root deletes it from the members view.
async fn with_a_scheduler(b: &Browser, m: &Manager, token: &str, cluster_id: i64, dir: &Path) -> anyhow::Result<()> {
    let mut env = m.process.join("scheduler", Some(cluster_id)).await?.env("SCHEDULER");
    env.extend([
        ("SCHEDULER__MANAGER__ADDRS".to_owned(), m.process.grpc_addr.to_string()),
        ("SCHEDULER__MANAGER__CLUSTER_ID".to_owned(), cluster_id.to_string()),
        ("SCHEDULER__HOST__HOSTNAME".to_owned(), "console-scheduler".to_owned()),
    ]);
    let mut scheduler =
        SchedulerProcess::start(&sibling_binary("scheduler")?, &dir.join("scheduler"), &[], &env).await?;
    expect_schedulers(m, token, cluster_id, "active", 1).await.with_context(|| tail(&scheduler.log_path, 20))?;

    // Active, in idc-a, and not deletable while so.
    b.click("#nav a[data-view=\"members\"]").await?;
    b.click("#members-refresh").await?;
    let row = b
        .wait_js(
            "the active scheduler in the members view",
            "const row = document.querySelector('#schedulers-table tbody tr[data-state=\"active\"]'); \
             return row ? {text: row.innerText, buttons: row.querySelectorAll('button').length} : null;",
            json!([]),
        )
        .await?;
    let text = row["text"].as_str().unwrap_or_default();
    ensure!(
        text.contains("console-scheduler") && text.contains(&format!("idc-a (#{cluster_id})")),
        "scheduler row: {text:?}"
    );
    ensure!(row["buttons"] == 0, "an active scheduler has a delete button: {row}");

    // Which cluster would 10.1.2.3 get? idc-a, by its CIDR.
    let answer = ask_match(b, "10.1.2.3").await?;
    ensure!(answer["state"] == "ok" && answer["rule"] == "cidr", "match answer: {answer}");
    ensure!(answer["cluster"] == format!("idc-a (#{cluster_id})"), "match answer: {answer}");
    ensure!(answer["detail"].as_str().unwrap_or_default().contains("10.0.0.0/8"), "match answer: {answer}");
    ensure!(answer["schedulers"].as_str().unwrap_or_default().contains("console-scheduler"), "match answer: {answer}");

    // Gone: its keepalive stream closes, it turns inactive, root deletes it.
    scheduler.kill();
    expect_schedulers(m, token, cluster_id, "inactive", 1).await?;
    b.click("#nav a[data-view=\"members\"]").await?;
    b.click("#members-refresh").await?;
    b.click("#schedulers-table tbody tr[data-state=\"inactive\"] button.delete").await?;
    b.cmd(Method::POST, "/alert/accept", json!({})).await.context("the delete confirmation")?;
    let empty = b.text("#schedulers-table tbody tr.empty").await?;
    ensure!(empty == "No schedulers.", "schedulers table after delete: {empty:?}");
    expect_schedulers(m, token, cluster_id, "inactive", 0).await
}

/// The Trust view: the CA pin, the scheduler's certificate (it enrolled with
/// a join token), a new join token shown once with the config a member
/// needs, a bad lifetime named, and revoking the token.
async fn trust_view(b: &Browser, m: &Manager, token: &str, cluster_id: i64) -> anyhow::Result<()> {
    b.click("#nav a[data-view=\"trust\"]").await?;
    let (_, ca) = m.api(Method::GET, "/ca", token, None).await?;
    let pin = ca["ca_cert_hash"].as_str().unwrap_or_default().to_owned();
    ensure!(pin.starts_with("sha256:"), "CA: {ca}");
    let shown = b
        .wait_js(
            "the CA pin and the scheduler's certificate",
            "const pin = document.getElementById('trust-ca-pin').textContent;              const row = [...document.querySelectorAll('#certificates-table tbody tr')]                .find((r) => r.innerText.includes('console-scheduler'));              return pin && row ? {pin, row: row.innerText} : null;",
            json!([]),
        )
        .await?;
    ensure!(shown["pin"] == pin.as_str(), "pin shown: {shown}");
    let row = shown["row"].as_str().unwrap_or_default();
    ensure!(row.contains("scheduler") && row.contains("valid"), "certificate row: {row:?}");

    // A bad lifetime: the server's error names `ttl` and the field is highlighted.
    b.type_into("#join-token-ttl", "forever").await?;
    b.click("#join-token-submit").await?;
    let invalid = b.invalid_fields("the error on ttl", "join-token-form", "join-token-error").await?;
    ensure!(invalid["bad"] == json!(["join-token-ttl"]), "highlighted: {invalid}");

    // A seed peer token for idc-a, one use: shown once, with the member's config.
    b.js("document.getElementById('join-token-form').reset(); return null;", json!([])).await?;
    b.js(
        "document.getElementById('join-token-role').value = 'seed_peer';          document.getElementById('join-token-cluster').value = arguments[0]; return null;",
        json!([cluster_id.to_string()]),
    )
    .await?;
    b.type_into("#join-token-ttl", "2h").await?;
    b.type_into("#join-token-max-uses", "1").await?;
    b.type_into("#join-token-description", "rack 7").await?;
    b.click("#join-token-submit").await?;
    let secret = b
        .wait_js(
            "the new join token",
            "const box = document.getElementById('join-token-secret-box');              const row = document.querySelector('#join-tokens-table tbody tr[data-state=\"live\"]');              return !box.hidden && row ? {secret: document.getElementById('join-token-secret').textContent} : null;",
            json!([]),
        )
        .await?;
    let secret = secret["secret"].as_str().unwrap_or_default();
    ensure!(secret.contains("join_token: ") && secret.contains(&format!("ca_cert_hash: {pin}")), "shown: {secret:?}");
    let (status, tokens) = m.api(Method::GET, "/join-tokens", token, None).await?;
    let created = tokens
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["description"] == "rack 7")
        .cloned()
        .with_context(|| format!("join tokens: {status} {tokens}"))?;
    ensure!(
        created["role"] == "seed_peer" && created["cluster_id"] == cluster_id && created["max_uses"] == 1,
        "stored: {created}"
    );
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    ensure!(secret.contains(&format!("join_token: {id}.")), "the shown token is the stored one: {secret:?}");
    b.click("#join-token-secret-dismiss").await?;
    let left = b.js("return document.getElementById('join-token-secret').textContent;", json!([])).await?;
    ensure!(left == "", "the secret stays in the page: {left}");

    // Revoked: its row says so and the API agrees.
    b.click(&format!("#join-tokens-table tbody tr[data-join-token=\"{id}\"] button.delete")).await?;
    b.cmd(Method::POST, "/alert/accept", json!({})).await.context("the revoke confirmation")?;
    b.wait_js(
        "the revoked join token",
        "const row = document.querySelector(`#join-tokens-table tbody tr[data-join-token=\"${arguments[0]}\"]`);          return row && row.dataset.state === 'revoked' ? true : null;",
        json!([id]),
    )
    .await?;
    let (_, tokens) = m.api(Method::GET, "/join-tokens", token, None).await?;
    let revoked = tokens.as_array().into_iter().flatten().any(|t| t["id"] == id.as_str() && !t["revoked_at"].is_null());
    ensure!(revoked, "revoked over the API: {tokens}");
    Ok(())
}

/// Root asks for the Helm values of cluster idc-a's release (cluster B of
/// the multi-cluster guide): a bad manager address is named and creates
/// nothing; a good one creates one join token per role for the cluster and
/// shows values that name the cluster, the address, the CA pin and those
/// tokens, which never expire (docs/kubernetes.md).
async fn helm_values(b: &Browser, m: &Manager, token: &str, cluster_id: i64) -> anyhow::Result<()> {
    let tokens_of = |list: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["cluster_id"] == cluster_id && t["revoked_at"].is_null())
            .map(|t| {
                (t["id"].as_str().unwrap_or_default().to_owned(), t["role"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        v.sort();
        v
    };
    let (_, before) = m.api(Method::GET, "/join-tokens", token, None).await?;
    b.click("#nav a[data-view=\"clusters\"]").await?;
    b.click("#clusters-table tbody tr[data-name=\"idc-a\"] button.values").await?;
    b.element("#cluster-values-form").await?;
    b.js("document.getElementById('cluster-values-addr').value = ''; return null;", json!([])).await?;
    b.type_into("#cluster-values-addr", "no-port").await?;
    b.click("#cluster-values-submit").await?;
    let invalid = b.invalid_fields("the bad address named", "cluster-values-form", "cluster-values-error").await?;
    ensure!(invalid["bad"] == json!(["cluster-values-addr"]), "highlighted: {invalid}");
    let (_, after_bad) = m.api(Method::GET, "/join-tokens", token, None).await?;
    ensure!(tokens_of(&after_bad) == tokens_of(&before), "a refused address created tokens");

    b.js("document.getElementById('cluster-values-addr').value = ''; return null;", json!([])).await?;
    b.type_into("#cluster-values-addr", "manager.example.com:65003").await?;
    b.click("#cluster-values-submit").await?;
    let yaml = b
        .wait_js(
            "the values",
            "const box = document.getElementById('cluster-values-box');              return box.hidden ? null : document.getElementById('cluster-values-yaml').textContent;",
            json!([]),
        )
        .await?;
    let yaml = yaml.as_str().unwrap_or_default().to_owned();
    let (_, ca) = m.api(Method::GET, "/ca", token, None).await?;
    for line in [
        "manager:\n  enabled: false".to_owned(),
        format!("clusterID: {cluster_id}"),
        "  addr: \"manager.example.com:65003\"".to_owned(),
        format!("  caCertHash: \"{}\"", ca["ca_cert_hash"].as_str().unwrap_or_default()),
    ] {
        ensure!(yaml.contains(&line), "values lack {line:?}:\n{yaml}");
    }
    // One new live token per role for this cluster, and the values carry each.
    let (_, after) = m.api(Method::GET, "/join-tokens", token, None).await?;
    let new: Vec<(String, String)> =
        tokens_of(&after).into_iter().filter(|t| !tokens_of(&before).contains(t)).collect();
    let mut roles: Vec<&str> = new.iter().map(|(_, r)| r.as_str()).collect();
    roles.sort();
    ensure!(roles == ["peer", "scheduler", "seed_peer"], "tokens created: {new:?}");
    for (id, role) in &new {
        ensure!(yaml.contains(&format!("      {role}: \"{id}.")), "values lack the {role} token {id}:\n{yaml}");
        // The form's default lifetime, "never": the cluster's nodes come and go.
        let listed = after.as_array().into_iter().flatten().find(|t| t["id"] == id.as_str());
        let expires = listed.map(|t| t["expires_at"].clone()).unwrap_or_default();
        ensure!(expires == json!(253_402_300_799_999_i64), "the {role} token {id} expires at {expires}");
    }
    b.click("#cluster-values-close").await?;
    Ok(())
}

/// A guest sees the cluster but no write controls, and a session revoked
/// elsewhere sends the console back to the sign-in form.
async fn guest_session(b: &Browser, m: &Manager) -> anyhow::Result<()> {
    let token = sign_in(b, "guest-1", GUEST_PASSWORD, "guest").await?;
    b.click("#nav a[data-view=\"clusters\"]").await?;
    // The table may still hold the rows drawn for root until it is redrawn
    // for the guest: wait for a row without write buttons (a console that
    // shows them to a guest times out here).
    let row = b
        .wait_js(
            "cluster idc-a for the guest, without write buttons",
            "const row = document.querySelector('#clusters-table tbody tr[data-name=\"idc-a\"]'); \
             return row && row.querySelectorAll('button').length === 0 ? 0 : null;",
            json!([]),
        )
        .await?;
    ensure!(row == 0, "a guest sees {row} buttons in the cluster row");
    ensure!(!b.is_displayed("#clusters-new").await?, "a guest sees New cluster");

    let (status, _) = m.api(Method::POST, "/users/signout", &token, None).await?;
    ensure!(status == StatusCode::NO_CONTENT, "sign out over the API: {status}");
    b.click("#clusters-refresh").await?;
    expect_signin_form(b, "session has ended").await
}

async fn scenario(b: &Browser, m: &Manager, dir: &Path) -> anyhow::Result<()> {
    let (root, cluster_id) = root_session(b, m).await?;
    with_a_scheduler(b, m, &root, cluster_id, dir).await?;
    trust_view(b, m, &root, cluster_id).await?;
    helm_values(b, m, &root, cluster_id).await?;
    let guest = json!({"name": "guest-1", "password": GUEST_PASSWORD, "role": "guest"});
    let (status, v) = m.api(Method::POST, "/users", &root, Some(guest)).await?;
    ensure!(status == StatusCode::CREATED, "create guest: {status} {v}");

    // Signing out revokes the token on the server, not only in the page.
    b.click("#signout").await?;
    expect_signin_form(b, "Signed out.").await?;
    let (status, _) = m.api(Method::GET, "/users/me", &root, None).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "root's token after sign-out: {status}");

    guest_session(b, m).await?;

    // No script errors; failed requests (the 401s, the 404 no_cluster) are
    // logged by Chromium itself and expected. Nothing secret was logged.
    let log = b.console_log().await?;
    let errors: Vec<&String> =
        log.iter().filter(|l| l.contains("SEVERE") && !l.contains("Failed to load resource")).collect();
    ensure!(errors.is_empty(), "browser console errors: {errors:#?}");
    ensure!(!log.iter().any(|l| l.contains(ROOT_PASSWORD) || l.contains(&root)), "a secret was logged: {log:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_a_real_browser() {
    if !browser_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::start(dir.path()).await.unwrap_or_else(|e| panic!("{e:#}"));
    let driver = ChromeDriver::start(dir.path(), &manager.client).await.unwrap_or_else(|e| panic!("{e:#}"));
    let browser = Browser::open(&driver, manager.client.clone(), &dir.path().join("profile"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n--- chromedriver ---\n{}", tail(&driver.log, 40)));
    let result = scenario(&browser, &manager, dir.path()).await;
    let page = if result.is_err() { browser.page_text().await } else { String::new() };
    browser.quit().await;
    if let Err(e) = result {
        panic!(
            "{e:#}\n--- page ---\n{page}\n--- manager ---\n{}\n--- chromedriver ---\n{}",
            manager.log_tail(),
            tail(&driver.log, 20)
        );
    }
}
