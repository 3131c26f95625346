//! Async frame reading and writing over the daemon's socket, on top of the
//! length check and codec in `credcache_shared::codec`.

use credcache_shared::codec::{self, CodecError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A kept buffer grown past this by a large frame is given back after it:
/// requests and most replies are a few hundred bytes, and a connection
/// holds its buffers for its life (a `list` page may be a megabyte).
pub const KEEP_BUFFER: usize = 4096;

/// What a connection's reader holds to begin with: requests are a few
/// dozen bytes.
const READ_BUFFER: usize = 1024;

/// Room a read is always given, however little of a frame is missing, so
/// that one read takes whatever the client sent.
const MIN_READ: usize = 512;

/// Reads frames through a buffer it keeps from one frame to the next.
///
/// A request costs one read of the socket. Each read is offered more room
/// than the client's request takes, and a read that does not fill its room
/// tells tokio the socket is drained (`PollEvented::poll_read`), so the
/// next frame is awaited without first trying a read bound to fail. That
/// holds for the owned stream's `AsyncRead` only: interprocess's `&Stream`
/// tries a read each time and costs a `recvfrom` finding nothing after
/// every request (BENCHMARKS.md, issue 15).
///
/// [`FrameReader::next`] and [`FrameReader::next_body`] are cancel-safe:
/// what was read stays buffered for the next call.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Where the bytes not yet taken begin.
    at: usize,
    /// A frame handed out by `next_body`, taken at the next call.
    lent: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(READ_BUFFER),
            at: 0,
            lent: 0,
        }
    }

    /// Reads the next frame. `Ok(None)` is a clean end of stream between
    /// frames.
    pub async fn next<R: AsyncRead + Unpin, T: DeserializeOwned>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<T>, CodecError> {
        let decoded = match self.next_body(reader).await? {
            Some(body) => codec::from_slice(body).map(Some),
            None => Ok(None),
        };
        self.take_lent();
        decoded
    }

    /// The body of the next frame, left in the buffer for the caller to
    /// decode in place (`codec::decode_request`). `Ok(None)` is a clean end
    /// of stream between frames.
    pub async fn next_body<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<&[u8]>, CodecError> {
        self.take_lent();
        loop {
            let pending = &self.buf[self.at..];
            let missing = match pending.first_chunk::<4>() {
                Some(&header) => {
                    // Checked before anything is reserved: a hostile
                    // length costs nothing.
                    let end = 4 + codec::body_len(header)?;
                    if end <= pending.len() {
                        self.lent = end;
                        return Ok(Some(&self.buf[self.at + 4..self.at + end]));
                    }
                    end - pending.len()
                }
                None => 4 - pending.len(),
            };
            self.make_room(missing);
            if reader.read_buf(&mut self.buf).await? == 0 {
                return if self.at == self.buf.len() {
                    Ok(None)
                } else {
                    Err(CodecError::Truncated)
                };
            }
        }
    }

    /// Takes the frame `next_body` lent: an emptied buffer starts over at
    /// its front (and is given back if a large frame grew it).
    fn take_lent(&mut self) {
        self.at += std::mem::take(&mut self.lent);
        if self.at == self.buf.len() {
            self.at = 0;
            self.buf.clear();
            if self.buf.capacity() > KEEP_BUFFER {
                self.buf = Vec::with_capacity(READ_BUFFER);
            }
        }
    }

    /// Moves the bytes not yet taken to the front and makes room for at
    /// least `missing` more.
    fn make_room(&mut self, missing: usize) {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.reserve(missing.max(MIN_READ));
    }

    /// Bytes held, taken or not: for tests.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.capacity()
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    msg: &T,
) -> Result<(), CodecError> {
    let frame = codec::encode_frame(msg)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use credcache_shared::codec::MAX_FRAME;
    use credcache_shared::protocol::Request;
    use tokio::io::ReadBuf;

    use super::*;

    /// Hands out its chunks one read at a time, each cut to the room the
    /// read offers; counts the reads.
    struct Chunks {
        chunks: VecDeque<Vec<u8>>,
        reads: usize,
        offered: Vec<usize>,
    }

    impl Chunks {
        fn new(chunks: impl IntoIterator<Item = Vec<u8>>) -> Self {
            Self {
                chunks: chunks.into_iter().collect(),
                reads: 0,
                offered: Vec::new(),
            }
        }
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.reads += 1;
            self.offered.push(buf.remaining());
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn get(name: &str) -> Request {
        Request::Get {
            name: name.to_owned(),
            min_valid_secs: None,
            refresh: false,
            scopes: Vec::new(),
        }
    }

    fn frame(request: &Request) -> Vec<u8> {
        codec::encode_frame(request).unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_request_costs_one_read_with_room_to_spare() {
        let mut source = Chunks::new([frame(&get("a"))]);
        let mut reader = FrameReader::new();
        let got: Option<Request> = block_on(reader.next(&mut source)).unwrap();
        assert_eq!(got, Some(get("a")));
        assert_eq!(source.reads, 1);
        // More room than the request took: tokio learns the socket is
        // drained from that read, and does not try another.
        assert!(source.offered[0] > frame(&get("a")).len());
    }

    #[test]
    fn a_lent_body_is_the_frame_and_is_taken_at_the_next_call() {
        let (a, b) = (frame(&get("a")), frame(&get("bb")));
        let mut source = Chunks::new([[a.clone(), b.clone()].concat()]);
        let mut reader = FrameReader::new();
        block_on(async {
            let body = reader.next_body(&mut source).await.unwrap().unwrap();
            assert_eq!(body, &a[4..]);
            let body = reader.next_body(&mut source).await.unwrap().unwrap();
            assert_eq!(body, &b[4..]);
            assert_eq!(source.reads, 1);
            assert!(reader.next_body(&mut source).await.unwrap().is_none());
            // After a lent body, `next` reads the next frame, not it again.
        });
        let mut source = Chunks::new([[a, b].concat()]);
        let mut reader = FrameReader::new();
        block_on(async {
            reader.next_body(&mut source).await.unwrap().unwrap();
            let next: Request = reader.next(&mut source).await.unwrap().unwrap();
            assert_eq!(next, get("bb"));
        });
    }

    #[test]
    fn frames_in_pieces_and_frames_together_are_read_whole() {
        let (a, b, c) = (frame(&get("a")), frame(&get("bb")), frame(&get("ccc")));
        let mut bytes = a.clone();
        bytes.extend_from_slice(&b);
        bytes.extend_from_slice(&c);
        // Byte by byte, then all three frames in one read.
        for chunks in [
            bytes.iter().map(|&byte| vec![byte]).collect::<Vec<_>>(),
            vec![bytes.clone()],
            vec![
                bytes[..2].to_vec(),
                bytes[2..a.len() + 3].to_vec(),
                bytes[a.len() + 3..].to_vec(),
            ],
        ] {
            let mut source = Chunks::new(chunks);
            let mut reader = FrameReader::new();
            block_on(async {
                for name in ["a", "bb", "ccc"] {
                    let got: Option<Request> = reader.next(&mut source).await.unwrap();
                    assert_eq!(got, Some(get(name)));
                }
                let end: Option<Request> = reader.next(&mut source).await.unwrap();
                assert_eq!(end, None);
            });
        }
    }

    #[test]
    fn an_end_inside_a_frame_is_truncation_and_between_frames_is_the_end() {
        let whole = frame(&get("a"));
        for cut in [1, 3, 4, whole.len() - 1] {
            let mut source = Chunks::new([whole[..cut].to_vec()]);
            let got = block_on(FrameReader::new().next::<_, Request>(&mut source));
            assert!(
                matches!(got, Err(CodecError::Truncated)),
                "cut at {cut}: {got:?}"
            );
        }
        let mut source = Chunks::new([]);
        let got = block_on(FrameReader::new().next::<_, Request>(&mut source));
        assert!(matches!(got, Ok(None)), "{got:?}");
    }

    #[test]
    fn a_hostile_length_is_refused_before_anything_is_reserved() {
        let header = u32::try_from(MAX_FRAME + 1).unwrap().to_le_bytes().to_vec();
        let mut source = Chunks::new([header]);
        let mut reader = FrameReader::new();
        let got = block_on(reader.next::<_, Request>(&mut source));
        assert!(matches!(got, Err(CodecError::TooLarge { .. })), "{got:?}");
        assert!(reader.held() <= KEEP_BUFFER);
    }

    #[test]
    fn garbage_in_a_frame_is_malformed() {
        let mut bytes = 3u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let mut source = Chunks::new([bytes]);
        let got = block_on(FrameReader::new().next::<_, Request>(&mut source));
        assert!(matches!(got, Err(CodecError::Malformed(_))), "{got:?}");
    }

    #[test]
    fn a_read_given_up_midway_keeps_what_it_read() {
        let whole = frame(&get("a"));
        block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64);
            let mut reader = FrameReader::new();
            client.write_all(&whole[..3]).await.unwrap();
            tokio::select! {
                biased;
                got = reader.next::<_, Request>(&mut server) => panic!("{got:?}"),
                () = tokio::task::yield_now() => {}
            }
            client.write_all(&whole[3..]).await.unwrap();
            let got: Option<Request> = reader.next(&mut server).await.unwrap();
            assert_eq!(got, Some(get("a")));
        });
    }

    #[test]
    fn a_large_frame_is_read_and_its_buffer_given_back() {
        let large = get(&"x".repeat(100_000));
        let mut source = Chunks::new([frame(&large), frame(&get("a"))]);
        let mut reader = FrameReader::new();
        block_on(async {
            let got: Option<Request> = reader.next(&mut source).await.unwrap();
            assert_eq!(got, Some(large));
            assert!(reader.held() <= KEEP_BUFFER);
            let got: Option<Request> = reader.next(&mut source).await.unwrap();
            assert_eq!(got, Some(get("a")));
        });
    }
}
