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

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
) -> Result<Option<T>, CodecError> {
    read_frame_with(reader, &mut Vec::new()).await
}

/// [`read_frame`] reading the body into `body`, a buffer the caller keeps
/// from one frame to the next.
pub async fn read_frame_with<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
    body: &mut Vec<u8>,
) -> Result<Option<T>, CodecError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(CodecError::Truncated),
            n => got += n,
        }
    }
    // Checked before allocating: a hostile length costs nothing.
    let len = codec::body_len(header)?;
    body.clear();
    body.resize(len, 0);
    reader.read_exact(body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CodecError::Truncated,
        _ => CodecError::Io(e),
    })?;
    let decoded = codec::from_slice(body).map(Some);
    if body.capacity() > KEEP_BUFFER {
        *body = Vec::new();
    }
    decoded
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
