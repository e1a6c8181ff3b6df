//! Task IDs, URL normalisation, digests and secret redaction on arbitrary
//! text (task IDs, URLs and digests arrive from peers, schedulers and dfget
//! callers; redacted URLs are what gets stored, logged and answered).
//!
//! Input: lines `url`, `digest`, `tag`, `application` (the last keeps the rest).
//!
//! Properties: no panic; a task ID or digest that parses reads back as
//! itself from its text, and its file name is not path-like; a download's
//! task ID is a valid task ID and the same from its normalised URL;
//! a redacted URL has no user info or fragment and keeps every query
//! parameter in order, with exactly the secret ones' values replaced; an
//! invalid URL's error shows only the redacted URL.

#![no_main]

use darter_common::digest::Digest;
use darter_common::secret::{REDACTED, is_secret_query_param, redact_headers, redact_url_str};
use darter_common::task_id::{TaskId, TaskIdError, normalise_url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(lines) = darter_fuzz::lines(data, 4) else { return };
    let (url, digest) = (lines[0], lines.get(1).copied().unwrap_or_default());
    let (tag, application) = (lines.get(2).copied().unwrap_or_default(), lines.get(3).copied().unwrap_or_default());

    for text in &lines {
        task_id(text);
        digest_text(text);
    }
    let digest = digest.parse::<Digest>().ok();
    match TaskId::for_download(url, digest.as_ref(), tag, application) {
        Ok(id) => {
            assert_eq!(TaskId::parse(id.as_str()).as_ref(), Ok(&id), "a download's ID is a valid task ID");
            let normalised = normalise_url(url).expect("the URL normalised once");
            let again = TaskId::for_download(&normalised, digest.as_ref(), tag, application);
            assert_eq!(again.as_ref(), Ok(&id), "{url:?} and its normal form {normalised:?} are one task");
        }
        Err(TaskIdError::Url { url: shown, .. }) => {
            assert_eq!(shown, redact_url_str(url).into_string(), "errors show the redacted URL");
        }
        Err(e) => panic!("for_download gave {e:?}"),
    }
    redaction(url);
    let headers: Vec<(&str, &str)> = lines.iter().filter_map(|l| l.split_once(':')).collect();
    for ((name, value), (shown_name, shown)) in headers.iter().zip(redact_headers(headers.iter().copied())) {
        assert_eq!(*name, shown_name);
        let secret = darter_common::secret::is_secret_header(name);
        assert_eq!(shown, if secret { REDACTED } else { value }, "{name}");
    }
});

fn task_id(text: &str) {
    if let Ok(id) = TaskId::parse(text) {
        assert_eq!(id.as_str(), text, "a valid task ID is kept as sent");
        assert_eq!(TaskId::parse(&id.to_string()).as_ref(), Ok(&id));
        let file = id.file_name();
        assert!(!file.contains('/') && !file.contains("..") && file.len() >= 64, "{file:?}");
    }
}

fn digest_text(text: &str) {
    if let Ok(d) = text.parse::<Digest>() {
        assert_eq!(d.to_string(), text, "a valid digest is kept as sent");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert_eq!(TaskId::from_digest(&d).as_str(), text);
    }
}

fn redaction(raw: &str) {
    let shown = redact_url_str(raw).into_string();
    let Ok(original) = url::Url::parse(raw) else {
        assert_eq!(shown, "(not a url)");
        return;
    };
    let redacted = url::Url::parse(&shown).expect("a redacted URL is a URL");
    assert!(redacted.username().is_empty() && redacted.password().is_none(), "{shown}");
    assert!(redacted.fragment().is_none(), "{shown}");
    let want: Vec<(String, String)> = original
        .query_pairs()
        .map(|(k, v)| {
            let v = if is_secret_query_param(&k) { REDACTED.into() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    let got: Vec<(String, String)> = redacted.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert_eq!(got, want, "{raw:?} -> {shown:?}");
}
