//! The piece server's request-head parser and piece path parser, and the
//! piece client's response-head parser, on arbitrary bytes (what any peer
//! that reaches the piece port, or any parent, sends).
//!
//! Properties: no panic; a complete head's length is within the input and
//! the head alone parses to the same request; a path that names a piece
//! names the same piece once written back by `piece_path`.

#![no_main]

use dfdaemon::piece_client::parse_head;
use dfdaemon::piece_server::request::{MAX_HEAD, parse};
use dfdaemon::piece_server::{parse_piece_path, piece_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server never looks at more than MAX_HEAD bytes of one head.
    let head = &data[..data.len().min(MAX_HEAD)];
    if let Ok(Some((request, len))) = parse(head) {
        assert!(len <= head.len(), "head length {len} past the input ({})", head.len());
        let again = parse(&head[..len]).expect("the head alone parses").expect("the head alone is complete");
        assert_eq!(again, (request, len));
        let request = again.0;
        assert!(!request.path.contains('?'), "the query is cut off: {:?}", request.path);
        check_piece_path(&request.path);
    }
    check_piece_path(&String::from_utf8_lossy(data));

    if let Ok(Some((_, len))) = parse_head(head) {
        assert!(len <= head.len(), "response head length {len} past the input ({})", head.len());
    }
});

fn check_piece_path(path: &str) {
    if let Ok((task_id, number)) = parse_piece_path(path) {
        let written = piece_path(&task_id, number);
        assert_eq!(parse_piece_path(&written), Ok((task_id.clone(), number)), "{path:?} -> {written:?}");
        // Nothing path-like reaches the file system.
        let file = task_id.file_name();
        assert!(!file.contains('/') && !file.contains("..") && !file.is_empty(), "{file:?}");
    }
}
