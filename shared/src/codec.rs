//! Frames on the socket, and the one place bincode is called.
//!
//! A frame is a 4-byte little-endian length followed by that many bytes of a
//! bincode-encoded (serde) message. The length is checked against
//! [`MAX_FRAME`] before anything is allocated, and decoding runs with the
//! same limit, so a hostile 9-byte frame cannot make the reader allocate
//! gigabytes. Keeping every bincode call here means the codec could be
//! swapped (postcard is the natural successor) in one file.

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use bincode::config::{self, Configuration, Limit};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::protocol::{GetRef, Request};

/// The largest frame body either side accepts or sends: 1 MiB.
pub const MAX_FRAME: usize = 1 << 20;

type Config = Configuration<config::LittleEndian, config::Varint, Limit<MAX_FRAME>>;

fn config() -> Config {
    config::standard().with_limit::<MAX_FRAME>()
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge { len: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Encodes a value with bincode (no length prefix): for cache records.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    Ok(bytes)
}

/// Decodes a value encoded by [`to_vec`]; trailing bytes are an error.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_FRAME {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// [`from_slice`] for a message that borrows from `bytes`.
fn borrow_from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::borrow_decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// A request, as the daemon reads it.
#[derive(Debug, PartialEq)]
pub enum Incoming<'a> {
    /// A `Get`, its strings still in the frame.
    Get(GetRef<'a>),
    Other(Request),
}

impl Incoming<'_> {
    /// The owned request.
    pub fn into_request(self) -> Request {
        match self {
            Incoming::Get(get) => get.to_request(),
            Incoming::Other(request) => request,
        }
    }
}

/// Decodes a request frame's body, a `Get` without copying its strings.
pub fn decode_request(body: &[u8]) -> Result<Incoming<'_>, CodecError> {
    if body.len() > MAX_FRAME {
        return Err(CodecError::TooLarge { len: body.len() });
    }
    match body.strip_prefix(get_variant()) {
        Some(fields) => match plain_get(fields) {
            Some(get) => Ok(Incoming::Get(get)),
            None => borrow_from_slice(fields).map(Incoming::Get),
        },
        None => from_slice(body).map(Incoming::Other),
    }
}

/// The fields of a plain `get NAME`, read directly: a name shorter than
/// 251 bytes (its length is then one byte, bincode's varint), no
/// `min_valid_secs`, no scopes. Going through serde was a third of reading
/// such a request (issue 15). Anything else, well-formed or not, is `None`
/// and left to bincode.
fn plain_get(fields: &[u8]) -> Option<GetRef<'_>> {
    let (&len, rest) = fields.split_first()?;
    if len > 250 {
        return None;
    }
    let (name, rest) = rest.split_at_checked(usize::from(len))?;
    // `None`, the refresh flag, and an empty list of scopes.
    let refresh = match rest {
        [0, flag @ (0 | 1), 0] => *flag == 1,
        _ => return None,
    };
    Some(GetRef {
        name: std::str::from_utf8(name).ok()?,
        min_valid_secs: None,
        refresh,
        scopes: Vec::new(),
    })
}

/// How a frame says "`Get`": the encoded variant, taken from an encoded
/// `Get` whose four fields are each one byte (empty, `None`, `false`,
/// empty), so it follows the enum's order wherever `Get` is in it.
fn get_variant() -> &'static [u8] {
    static VARIANT: OnceLock<Vec<u8>> = OnceLock::new();
    VARIANT.get_or_init(|| {
        let empty = Request::Get {
            name: String::new(),
            min_valid_secs: None,
            refresh: false,
            scopes: Vec::new(),
        };
        let mut bytes = to_vec(&empty).expect("an empty Get encodes");
        bytes.truncate(bytes.len() - 4);
        bytes
    })
}

/// A whole frame: length prefix and body.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let mut frame = Vec::new();
    encode_frame_into(msg, &mut frame)?;
    Ok(frame)
}

/// [`encode_frame`] into `frame`, replacing what it held: a server answering
/// request after request on one connection reuses one buffer. On an error
/// `frame` is left empty.
pub fn encode_frame_into<T: Serialize>(msg: &T, frame: &mut Vec<u8>) -> Result<(), CodecError> {
    frame.clear();
    frame.extend_from_slice(&[0; 4]);
    let encoded = bincode::serde::encode_into_std_write(msg, frame, config());
    let len = frame.len() - 4;
    if let Err(e) = encoded {
        frame.clear();
        return Err(CodecError::Malformed(e.to_string()));
    }
    if len > MAX_FRAME {
        frame.clear();
        return Err(CodecError::TooLarge { len });
    }
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// The body length a frame header announces, refused if over the limit.
pub fn body_len(header: [u8; 4]) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(CodecError::TooLarge { len });
    }
    Ok(len)
}

/// Reads one frame from a blocking stream. `Ok(None)` is a clean end of
/// stream before any byte of a frame; an end inside a frame is
/// [`CodecError::Truncated`].
pub fn read_frame<R: Read, T: DeserializeOwned>(reader: &mut R) -> Result<Option<T>, CodecError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(CodecError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = body_len(header)?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CodecError::Truncated,
        _ => CodecError::Io(e),
    })?;
    from_slice(&body).map(Some)
}

/// Writes one frame to a blocking stream.
pub fn write_frame<W: Write, T: Serialize>(writer: &mut W, msg: &T) -> Result<(), CodecError> {
    writer.write_all(&encode_frame(msg)?)?;
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorKind, Request, Response, WireError};

    #[test]
    fn round_trips_a_request() {
        let req = Request::Get {
            name: "gcp".into(),
            min_valid_secs: Some(60),
            refresh: false,
            scopes: Vec::new(),
        };
        let frame = encode_frame(&req).unwrap();
        let back: Request = read_frame(&mut &frame[..]).unwrap().unwrap();
        assert_eq!(back, req);
    }

    /// A reused buffer holds exactly the one frame, whatever it held
    /// before; an oversized message leaves it empty, never half a frame.
    #[test]
    fn a_frame_encoded_into_a_used_buffer_is_that_frame_alone() {
        let long = Request::Get {
            name: "x".repeat(300),
            min_valid_secs: None,
            refresh: true,
            scopes: vec!["s".into()],
        };
        let short = Request::List { after: None };
        let mut buf = Vec::new();
        encode_frame_into(&long, &mut buf).unwrap();
        assert_eq!(buf, encode_frame(&long).unwrap());
        encode_frame_into(&short, &mut buf).unwrap();
        let mut want = (to_vec(&short).unwrap().len() as u32)
            .to_le_bytes()
            .to_vec();
        want.extend(to_vec(&short).unwrap());
        assert_eq!(buf, want);
        let back: Request = read_frame(&mut &buf[..]).unwrap().unwrap();
        assert_eq!(back, short);

        let huge = Request::Get {
            name: "x".repeat(MAX_FRAME + 1),
            min_valid_secs: None,
            refresh: false,
            scopes: Vec::new(),
        };
        let err = encode_frame_into(&huge, &mut buf).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { .. }), "{err}");
        assert!(buf.is_empty());
    }

    #[test]
    fn a_get_is_read_in_place_as_the_same_request() {
        let gets = [
            Request::Get {
                name: "gke".into(),
                min_valid_secs: None,
                refresh: false,
                scopes: Vec::new(),
            },
            Request::Get {
                name: "é".repeat(200),
                min_valid_secs: Some(u64::MAX),
                refresh: true,
                scopes: vec!["https://a/.default".into(), String::new()],
            },
        ];
        for get in gets {
            let body = to_vec(&get).unwrap();
            let incoming = decode_request(&body).unwrap();
            assert!(matches!(incoming, Incoming::Get(_)), "{incoming:?}");
            assert_eq!(incoming.into_request(), get);
            // Cut anywhere, or with a byte more, it is malformed.
            for cut in 0..body.len() {
                let err = decode_request(&body[..cut]).unwrap_err();
                assert!(matches!(err, CodecError::Malformed(_)), "{cut}: {err}");
            }
            let mut longer = body.clone();
            longer.push(0);
            assert!(decode_request(&longer).is_err());
        }
        for other in [
            Request::Status,
            Request::Watch { name: "gke".into() },
            Request::List { after: None },
        ] {
            let body = to_vec(&other).unwrap();
            assert_eq!(decode_request(&body).unwrap(), Incoming::Other(other));
        }
        // A name that is not UTF-8 is refused, as for an owned `Get`.
        let mut bad = to_vec(&gets_named("ab")).unwrap();
        let at = bad.iter().position(|&b| b == b'a').unwrap();
        bad[at] = 0xff;
        assert!(decode_request(&bad).is_err());
        assert!(from_slice::<Request>(&bad).is_err());
    }

    /// Whatever the bytes, the direct reading of a plain `get` says what
    /// bincode says, or leaves it to bincode.
    #[test]
    fn a_plain_get_is_read_directly_as_bincode_reads_it() {
        let mut direct = 0;
        for len in [0, 1, 7, 250, 251, 300] {
            for refresh in [false, true] {
                let get = GetRef {
                    name: &"n".repeat(len),
                    min_valid_secs: None,
                    refresh,
                    scopes: Vec::new(),
                };
                let request = get.to_request();
                let body = to_vec(&request).unwrap();
                let fields = body.strip_prefix(get_variant()).unwrap();
                assert_eq!(plain_get(fields).is_some(), len <= 250, "{len}");
                assert_eq!(decode_request(&body).unwrap().into_request(), request);
            }
        }
        // Every single-byte change and every cut of a few gets: read
        // directly only if bincode reads the same.
        let samples = [
            gets_named("emu-gke"),
            gets_named(""),
            Request::Get {
                name: "é".into(),
                min_valid_secs: Some(3),
                refresh: true,
                scopes: vec!["s".into()],
            },
        ];
        for sample in samples {
            let body = to_vec(&sample).unwrap();
            let fields = body.strip_prefix(get_variant()).unwrap().to_vec();
            let mut variants: Vec<Vec<u8>> =
                (0..=fields.len()).map(|n| fields[..n].to_vec()).collect();
            for at in 0..fields.len() {
                for byte in [0, 1, 2, 0x7f, 0x80, 0xc3, 0xfa, 0xfb, 0xff] {
                    let mut changed = fields.clone();
                    changed[at] = byte;
                    variants.push(changed);
                }
            }
            for bytes in variants {
                if let Some(get) = plain_get(&bytes) {
                    direct += 1;
                    assert_eq!(
                        borrow_from_slice::<GetRef>(&bytes).unwrap(),
                        get,
                        "{bytes:?}"
                    );
                }
            }
        }
        assert!(direct > 20, "{direct}");
    }

    fn gets_named(name: &str) -> Request {
        Request::Get {
            name: name.into(),
            min_valid_secs: None,
            refresh: false,
            scopes: Vec::new(),
        }
    }

    #[test]
    fn clean_eof_is_none_and_mid_frame_eof_is_truncated() {
        let none: Option<Request> = read_frame(&mut &[][..]).unwrap();
        assert!(none.is_none());
        let frame =
            encode_frame(&Response::Error(WireError::new(ErrorKind::Internal, "x"))).unwrap();
        for cut in 1..frame.len() {
            let err = read_frame::<_, Response>(&mut &frame[..cut]).unwrap_err();
            assert!(matches!(err, CodecError::Truncated), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn oversized_header_is_refused_before_allocating() {
        let header = (u32::MAX).to_le_bytes();
        let err = read_frame::<_, Request>(&mut &header[..]).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { .. }));
    }

    /// A small frame that declares a huge string inside must fail on the
    /// decode limit, not abort on allocation.
    #[test]
    fn huge_inner_length_is_malformed_not_an_abort() {
        // Variant 1 (Get), then a varint string length of 2^40.
        let mut body = vec![1u8, 0xFD];
        body.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        let err = read_frame::<_, Request>(&mut &frame[..]).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)), "{err}");
    }

    #[test]
    fn garbage_is_malformed() {
        let body = [0xFFu8; 16];
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        let err = read_frame::<_, Request>(&mut &frame[..]).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut body = to_vec(&Request::List { after: None }).unwrap();
        body.push(0);
        assert!(matches!(
            from_slice::<Request>(&body),
            Err(CodecError::Malformed(_))
        ));
    }
}
