//! The receiving side of an encrypted piece connection's record layer
//! (`dfdaemon::piece_wire::record` and `assembly`): a piece body put
//! together from the records a parent sends, under a key both ends hold.
//!
//! Input: four control bytes, then the body. The body is sealed into
//! records of a size the first byte picks; one byte of the record stream
//! may be flipped (bytes 3 and 4 say which, 0xffff for none); the stream
//! arrives in reads of a size the second byte picks; the third says how
//! much of the body the child expects (all of it, or less).
//!
//! Properties: no panic; an unaltered stream of the expected length gives
//! the body back exactly; an altered one never gives a body that differs
//! from what was sealed; a record that carries bytes past the announced
//! length is refused (records after the length is reached are left for the
//! stream).

#![no_main]

use dfdaemon::piece_wire::assembly::{Assembly, BodyError};
use dfdaemon::piece_wire::record::{Direction, HEADER, MAX_PLAINTEXT, OVERHEAD};
use libfuzzer_sys::fuzz_target;
use rustls::ConnectionTrafficSecrets;
use rustls::crypto::cipher::{AeadKey, Iv};

fn direction() -> Direction {
    let secrets = ConnectionTrafficSecrets::Chacha20Poly1305 { key: AeadKey::from([7u8; 32]), iv: Iv::new([3u8; 12]) };
    Direction::new((0, secrets)).expect("a ChaCha20-Poly1305 key")
}

fuzz_target!(|data: &[u8]| {
    let Some((control, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let record_size = 1 + (control[0] as usize * 131) % MAX_PLAINTEXT;
    let read_size = 1 + control[1] as usize * 257;
    let short = control[2] % 4 == 3 && !body.is_empty();
    let flip = u16::from_be_bytes([control[3], control[3] ^ control[2]]) as usize;

    let mut tx = direction();
    let mut stream = Vec::new();
    for chunk in body.chunks(record_size) {
        let mut record = vec![0u8; chunk.len() + OVERHEAD];
        record[HEADER..HEADER + chunk.len()].copy_from_slice(chunk);
        let n = tx.seal_data(&mut record, chunk.len()).expect("sealed");
        stream.extend_from_slice(&record[..n]);
    }
    let altered = flip < stream.len();
    if altered {
        stream[flip] ^= 0x5a;
    }
    let length = if short { body.len() - 1 } else { body.len() };

    let mut rx = direction();
    let mut buf = Vec::new();
    let mut assembly = Assembly::new(&mut buf, 0, length).expect("nothing opened yet");
    let mut fed = 0;
    let result = loop {
        match assembly.open(&mut rx, &mut buf) {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
        assembly.make_room(&mut buf);
        assert!(assembly.to_come(&buf) <= length, "more to come than the body");
        let spare = buf.capacity() - buf.len();
        assert!(spare > 0, "no room for the next read");
        let n = read_size.min(spare).min(stream.len() - fed);
        if n == 0 {
            break Err(BodyError::Closed(assembly.opened()));
        }
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
    };
    match result {
        Ok(()) => {
            let rest = assembly.finish(&mut buf);
            assert_eq!(buf, body[..length], "the body as sealed");
            assert!(rest.len() <= stream.len(), "the bytes after the body came from the stream");
        }
        Err(e) => {
            assert!(altered || short, "an unaltered stream of the announced length failed: {e:?}");
            if short && !altered {
                assert!(matches!(e, BodyError::TooLong), "{e:?}");
            }
        }
    }
});
