//! joblib compression: detect the compressor from the magic bytes and inflate.

use std::borrow::Cow;
use std::io::{Read, Write};

use crate::error::Error;

/// Largest decompressed model accepted (guards against decompression bombs).
pub const MAX_DECOMPRESSED: u64 = 4 << 30;

/// Returns the decompressed stream, or `bytes` itself when it is not compressed.
pub fn maybe_decompress(bytes: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    maybe_decompress_limit(bytes, MAX_DECOMPRESSED)
}

pub(crate) fn maybe_decompress_limit(bytes: &[u8], limit: u64) -> Result<Cow<'_, [u8]>, Error> {
    let fail = |format: &'static str| {
        move |e: std::io::Error| Error::Decompress {
            format,
            message: e.to_string(),
        }
    };
    match bytes {
        [0x78, ..] => {
            let r = flate2::read::ZlibDecoder::new(bytes);
            read_capped(r, limit).map_err(fail("zlib")).map(Cow::Owned)
        }
        [0x1f, 0x8b, ..] => {
            let r = flate2::read::MultiGzDecoder::new(bytes);
            read_capped(r, limit).map_err(fail("gzip")).map(Cow::Owned)
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => {
            let mut out = CappedWriter::new(limit);
            let mut input = bytes;
            lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| Error::Decompress {
                format: "xz",
                message: e.to_string(),
            })?;
            Ok(Cow::Owned(out.buf))
        }
        [0x5d, 0x00, ..] => {
            let mut out = CappedWriter::new(limit);
            let mut input = bytes;
            lzma_rs::lzma_decompress(&mut input, &mut out).map_err(|e| Error::Decompress {
                format: "lzma",
                message: e.to_string(),
            })?;
            Ok(Cow::Owned(out.buf))
        }
        [0x04, 0x22, 0x4d, 0x18, ..] => {
            let r = lz4_flex::frame::FrameDecoder::new(bytes);
            read_capped(r, limit).map_err(fail("lz4")).map(Cow::Owned)
        }
        [b'B', b'Z', b'h', ..] => Err(Error::Decompress {
            format: "bz2",
            message: "bz2-compressed joblib files are not supported; re-save with compress=('zlib'|'gzip'|'xz'|'lz4', n)".into(),
        }),
        [b'Z', b'F', ..] => Err(Error::Decompress {
            format: "zfile",
            message: "the pre-0.10 joblib 'ZF' format is not supported".into(),
        }),
        _ => Ok(Cow::Borrowed(bytes)),
    }
}

fn read_capped(r: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "decompressed size exceeds {limit} bytes"
        )));
    }
    Ok(out)
}

struct CappedWriter {
    buf: Vec<u8>,
    limit: u64,
}

impl CappedWriter {
    fn new(limit: u64) -> Self {
        CappedWriter {
            buf: Vec::new(),
            limit,
        }
    }
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if (self.buf.len() + data.len()) as u64 > self.limit {
            return Err(std::io::Error::other(format!(
                "decompressed size exceeds {} bytes",
                self.limit
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bomb_is_capped() {
        let zeros = vec![0u8; 1 << 20];
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&zeros).unwrap();
        let z = enc.finish().unwrap();
        let e = maybe_decompress_limit(&z, 1000).unwrap_err().to_string();
        assert!(e.contains("exceeds"), "{e}");
        assert_eq!(maybe_decompress(&z).unwrap().len(), 1 << 20);
    }

    #[test]
    fn plain_pickle_is_borrowed() {
        assert!(matches!(
            maybe_decompress(&[0x80, 4]).unwrap(),
            Cow::Borrowed(_)
        ));
    }
}
