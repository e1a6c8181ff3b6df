//! The HTTP(S) origin backend against the testkit origin: redirects are
//! followed by hand so the caller's headers never reach another host, and
//! error text never carries a URL's query. Two `Origin`s listen on two ports,
//! which makes them two hosts as far as redirects are concerned.

mod support;

use futures::StreamExt as _;
use support::Daemon;
use testkit::data::random_bytes;
use testkit::origin::{Behavior, Content, Origin};

use dfdaemon::backend::{Backend as _, GetRequest, GetResponse, HttpBackend, Range};
use dfdaemon::config::BackToSourceConfig;
use dfdaemon::error::Error;

const TOKEN: (&str, &str) = ("x-token", "s3cret");

fn needs_token() -> Behavior {
    Behavior { require_header: Some((TOKEN.0.into(), TOKEN.1.into())), ..Default::default() }
}

fn redirect(to: String) -> Behavior {
    Behavior { redirect_to: Some(to), ..Default::default() }
}

fn backend(max_redirects: usize) -> HttpBackend {
    HttpBackend::new(&BackToSourceConfig { max_redirects, ..Default::default() }).unwrap()
}

async fn get(
    backend: &HttpBackend,
    url: &str,
    range: Option<Range>,
    if_range: Option<&str>,
) -> Result<GetResponse, Error> {
    let headers = vec![(TOKEN.0.to_string(), TOKEN.1.to_string())];
    let request = GetRequest { url: url.parse().unwrap(), headers, range, if_range: if_range.map(str::to_string) };
    backend.get(request).await
}

fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

#[tokio::test(flavor = "multi_thread")]
async fn dfget_headers_stay_on_the_original_host() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Origin::start().await, Origin::start().await);
    let daemon = Daemon::start(dir.path(), &[("DFDAEMON__BACK_TO_SOURCE__MAX_ATTEMPTS", "2")]).await;
    let data = random_bytes(300 * 1024, 21);
    b.add("/blob", Content::Bytes(data.clone()), needs_token());
    a.add("/elsewhere", Content::Bytes(data.clone()), redirect(b.url("/blob")));
    a.add("/blob", Content::Bytes(data.clone()), needs_token());
    a.add("/here", Content::Bytes(data.clone()), redirect("/blob".into()));

    let out = dir.path().join("elsewhere");
    let r = daemon.dfget(&a.url("/elsewhere"), &out, &["-H", "X-Token: s3cret"]).await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    assert!(!out.exists());
    let seen = b.stats("/blob");
    assert!(seen.requests > 0, "the redirect was followed to the other host");
    assert!(!has_header(&seen.last_headers, TOKEN.0), "{:?}", seen.last_headers);

    let out = dir.path().join("here");
    let r = daemon.dfget(&a.url("/here"), &out, &["-H", "X-Token: s3cret"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == data);
    assert!(has_header(&a.stats("/blob").last_headers, TOKEN.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_host_hops_keep_range_and_if_range_but_not_caller_headers() {
    let (a, b) = (Origin::start().await, Origin::start().await);
    let data = random_bytes(1000, 22);
    b.add("/open", Content::Bytes(data.clone()), Behavior { etag: Some("\"v1\"".into()), ..Default::default() });
    a.add("/go", Content::Bytes(data.clone()), redirect(b.url("/open")));
    let backend = backend(10);
    let range = Some(Range { start: 10, end: Some(19) });

    let stale = get(&backend, &a.url("/go"), range, Some("\"v0\"")).await.unwrap();
    assert_eq!((stale.status, stale.content_length), (200, Some(1000)), "a changed validator gets everything");
    assert_eq!(stale.validator.as_deref(), Some("\"v1\""));

    let resp = get(&backend, &a.url("/go"), range, Some("\"v1\"")).await.unwrap();
    assert_eq!(resp.status, 206);
    assert_eq!(resp.content_range, Some((10, 19, Some(1000))));
    assert_eq!(resp.validator.as_deref(), Some("\"v1\""));
    let body: Vec<u8> = resp.body.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!(body, &data[10..20]);
    let headers = b.stats("/open").last_headers;
    let value = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(value("range"), Some("bytes=10-19"));
    assert_eq!(value("if-range"), Some("\"v1\""));
    assert_eq!(value(TOKEN.0), None);
    assert!(has_header(&a.stats("/go").last_headers, TOKEN.0), "the original host got it");
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_dropped_once_stay_dropped_when_a_redirect_comes_back() {
    let (a, b) = (Origin::start().await, Origin::start().await);
    let data = random_bytes(1000, 23);
    a.add("/start", Content::Bytes(data.clone()), redirect(b.url("/bounce")));
    b.add("/bounce", Content::Bytes(data.clone()), redirect(a.url("/private")));
    a.add("/private", Content::Bytes(data.clone()), needs_token());
    let resp = get(&backend(10), &a.url("/start"), None, None).await.unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(resp.validator, None, "no ETag, no Last-Modified");
    assert_eq!(a.stats("/private").requests, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_limits_and_bad_locations_are_protocol_errors() {
    let origin = Origin::start().await;
    let data = Content::Bytes(random_bytes(10, 24));
    origin.add("/loop", data.clone(), redirect("/loop".into()));
    origin.add("/one", data.clone(), redirect("/two".into()));
    origin.add("/two", data.clone(), redirect("/end".into()));
    origin.add("/end", data.clone(), Behavior::default());
    origin.add("/ftp", data.clone(), redirect("ftp://127.0.0.1/f".into()));
    origin.add("/file", data.clone(), redirect("file:///etc/passwd".into()));
    origin.add("/broken", data.clone(), redirect("http://[::1".into()));

    let e = get(&backend(10), &origin.url("/loop?sig=hush"), None, None).await.unwrap_err();
    assert!(matches!(&e, Error::OriginProtocol(m) if m.contains("too many redirects")), "{e:?}");
    assert!(!e.to_string().contains("hush"), "{e}");
    assert_eq!(origin.stats("/loop").requests, 11, "the first request and 10 redirects");

    assert_eq!(get(&backend(2), &origin.url("/one"), None, None).await.unwrap().status, 200);
    let e = get(&backend(1), &origin.url("/one"), None, None).await.unwrap_err();
    assert!(matches!(&e, Error::OriginProtocol(m) if m.contains("too many redirects")), "{e:?}");
    let e = get(&backend(0), &origin.url("/end"), None, None).await;
    assert_eq!(e.unwrap().status, 200, "no redirect, no limit");

    for path in ["/ftp", "/file", "/broken"] {
        let e = get(&backend(10), &origin.url(&format!("{path}?sig=hush")), None, None).await.unwrap_err();
        assert!(matches!(e, Error::OriginProtocol(_)), "{path}: {e:?}");
        assert!(!e.to_string().contains("hush"), "{path}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_url_without_its_query() {
    let dead = format!("http://user:pw@127.0.0.1:{}/blob?X-Amz-Signature=hush", support::refused_port());
    let e = get(&backend(10), &dead, None, None).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::OriginUnavailable(_)), "{e:?}");
    assert!(text.contains("/blob") && !text.contains("hush") && !text.contains("pw@"), "{text}");

    let origin = Origin::start().await;
    let reset = Behavior { reset_after: Some(1000), ..Default::default() };
    origin.add("/reset", Content::Bytes(random_bytes(64 * 1024, 25)), reset);
    let resp = get(&backend(10), &origin.url("/reset?X-Amz-Signature=hush"), None, None).await.unwrap();
    let errors: Vec<Error> = resp.body.filter_map(|c| async move { c.err() }).collect().await;
    let [e] = &errors[..] else { panic!("one body error: {errors:?}") };
    let text = e.to_string();
    assert!(text.contains("/reset") && !text.contains("hush"), "{text}");
}
