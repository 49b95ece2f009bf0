//! Text input shared by the CSV and JSON Lines readers: file → [`CountingReader`] (progress) →
//! decoder to UTF-8 → [`LineGuard`] (memory cap). The encoding is sniffed from the first 64 KiB
//! when the options do not fix it.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;

use chardetng::EncodingDetector;
use encoding_rs::{Encoding, UTF_8};
use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};

use super::checks::cannot_open;
use super::{CountingReader, Progress, ReadError, ReadOptions};
use crate::problem::Rule;

/// How many leading bytes are sniffed for the encoding (and, by the CSV reader, the delimiter).
pub(super) const SAMPLE_BYTES: u64 = 64 * 1024;

/// A decoded, guarded text stream over a file.
pub(super) type TextReader = LineGuard<DecodeReaderBytes<CountingReader<File>, Vec<u8>>>;

/// An opened text file.
#[derive(Debug)]
pub(super) struct TextInput {
    /// The decoded (UTF-8) stream, from the start of the file.
    pub reader: TextReader,
    pub encoding: &'static Encoding,
    /// The first 64 KiB or less, decoded, BOM removed (the last character may be cut).
    pub sample: String,
}

/// Opens a text file: picks its encoding (options, then BOM, then sniffing) and builds the stream.
/// `record_limit` also caps a record spanning several lines (see [`LineGuard::start_record`]).
pub(super) fn open_text(
    path: &Path,
    options: &ReadOptions,
    progress: Progress,
    record_limit: bool,
) -> Result<TextInput, ReadError> {
    let mut file = File::open(path).map_err(|err| cannot_open(&err))?;
    let mut sample = Vec::new();
    file.by_ref()
        .take(SAMPLE_BYTES)
        .read_to_end(&mut sample)
        .and_then(|_| file.rewind())
        .map_err(|err| io_failure(&err, 1))?;
    let complete = (sample.len() as u64) < SAMPLE_BYTES;
    let encoding = options
        .encoding
        .unwrap_or_else(|| detect_encoding(&sample, complete));
    let decoder = DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .build(CountingReader::new(file, progress));
    let mut reader = LineGuard::new(decoder, options.limits.max_line_bytes);
    reader.record_limit = record_limit;
    Ok(TextInput {
        reader,
        encoding,
        sample: encoding.decode_with_bom_removal(&sample).0.into_owned(),
    })
}

/// The encoding of a file starting with `sample` (`complete` when it is the whole file).
pub(super) fn detect_encoding(sample: &[u8], complete: bool) -> &'static Encoding {
    if let Some((encoding, _)) = Encoding::for_bom(sample) {
        return encoding;
    }
    match std::str::from_utf8(sample) {
        Ok(_) => UTF_8,
        // A character cut by the end of the sample.
        Err(err) if err.error_len().is_none() && !complete => UTF_8,
        Err(_) => {
            let mut detector = EncodingDetector::new();
            detector.feed(sample, complete);
            // No TLD hint: a `ru` hint turns Polish windows-1250 into windows-1251, while the
            // generic guess still gets Cyrillic windows-1251 right.
            detector.guess(None, false)
        }
    }
}

/// Converts an I/O error from a text stream; `record_line` is where the current record started.
pub(super) fn io_failure(err: &io::Error, record_line: u64) -> ReadError {
    let overflow = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Overflow>());
    let Some(overflow) = overflow else {
        return ReadError::fatal(
            Rule::ReadError,
            format!("the file could not be read: {err}"),
        );
    };
    let row = match overflow {
        Overflow::Line { line, .. } => *line,
        Overflow::Record { .. } => record_line,
    };
    let mut error = ReadError::fatal(Rule::LineTooLong, overflow.to_string());
    error.problem.row = Some(row);
    error
}

/// Why a [`LineGuard`] stopped the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overflow {
    /// Line `line` (from 1) is longer than `max` bytes.
    Line { line: u64, max: usize },
    /// A record spanning several lines is longer than `max` bytes.
    Record { max: usize },
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Overflow::Line { max, .. } => write!(
                f,
                "a line is longer than {max} bytes; the file may not be a text file of this format, \
                 or it needs a larger line limit"
            ),
            Overflow::Record { max } => write!(
                f,
                "a record is longer than {max} bytes; a quote is probably not closed (a quoted cell \
                 runs to the end of the file)"
            ),
        }
    }
}

impl std::error::Error for Overflow {}

/// A reader that stops with [`Overflow`] instead of handing out a line (or, with `record_limit`,
/// a record) longer than `max` bytes, so a parser above it never buffers more than that. The
/// bytes before the overflow are handed out first; every read after it fails.
#[derive(Debug)]
pub(super) struct LineGuard<R> {
    inner: R,
    max: usize,
    /// Bytes since the last line end.
    line_len: usize,
    /// `\n` seen so far.
    lines: u64,
    /// Bytes since the last [`LineGuard::start_record`].
    record_len: usize,
    record_limit: bool,
    overflow: Option<Overflow>,
    /// The last byte handed out was a `\r` (now `\n`): a `\n` right after it is dropped.
    after_cr: bool,
}

impl<R> LineGuard<R> {
    pub(super) fn new(inner: R, max: usize) -> Self {
        LineGuard {
            inner,
            max,
            line_len: 0,
            lines: 0,
            record_len: 0,
            record_limit: false,
            overflow: None,
            after_cr: false,
        }
    }

    /// Marks the start of a record. Approximate: a parser's read-ahead is counted towards the
    /// record being read when it is fetched.
    pub(super) fn start_record(&mut self) {
        self.record_len = 0;
    }

    /// Rewrites `chunk` in place so that CRLF and a lone CR both become LF; returns the new
    /// length. The parser above counts lines by `\n`, so without this a row of a CRLF file (what
    /// Excel on Windows writes) would be numbered from the line before it, and every row of a
    /// CR-only file (Excel for Mac's "CSV (Macintosh)") would be line 1.
    fn fold_line_ends(&mut self, chunk: &mut [u8]) -> usize {
        // The usual chunk has no CR at all (and `contains` on bytes is a memchr).
        if !self.after_cr && !chunk.contains(&b'\r') {
            return chunk.len();
        }
        let mut kept = 0;
        for index in 0..chunk.len() {
            let byte = chunk[index];
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            if byte == b'\r' {
                self.after_cr = true;
                chunk[kept] = b'\n';
            } else {
                chunk[kept] = byte;
            }
            kept += 1;
        }
        kept
    }

    /// How many leading bytes of `chunk` stay within the limits; records the overflow if any.
    fn accept(&mut self, chunk: &[u8]) -> usize {
        // A chunk that cannot reach either limit (the usual case: chunks are a few KiB, the
        // limits MiB) only moves the counters; the byte loop below finds where one is reached.
        let mut room = self.max.saturating_sub(self.line_len);
        if self.record_limit {
            room = room.min(self.max.saturating_sub(self.record_len));
        }
        if chunk.len() <= room {
            self.record_len += chunk.len();
            match chunk.iter().rposition(|&b| b == b'\n') {
                Some(last) => {
                    self.lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                    self.line_len = chunk.len() - last - 1;
                }
                None => self.line_len += chunk.len(),
            }
            return chunk.len();
        }
        for (index, &byte) in chunk.iter().enumerate() {
            self.record_len += 1;
            if self.record_limit && self.record_len > self.max {
                self.overflow = Some(Overflow::Record { max: self.max });
                return index;
            }
            match byte {
                b'\n' => {
                    self.lines += 1;
                    self.line_len = 0;
                }
                _ => self.line_len += 1,
            }
            if self.line_len > self.max {
                let line = self.lines + 1;
                self.overflow = Some(Overflow::Line {
                    line,
                    max: self.max,
                });
                return index;
            }
        }
        chunk.len()
    }
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(overflow) = self.overflow {
            return Err(io::Error::other(overflow));
        }
        let n = loop {
            let read = self.inner.read(buf)?;
            if read == 0 {
                break 0;
            }
            // A chunk holding only the `\n` of a CRLF split across reads shrinks to nothing, which
            // must not be handed out as the end of the stream.
            let kept = self.fold_line_ends(&mut buf[..read]);
            if kept > 0 {
                break kept;
            }
        };
        let accepted = self.accept(&buf[..n]);
        match self.overflow {
            Some(overflow) if accepted == 0 => Err(io::Error::other(overflow)),
            _ => Ok(accepted),
        }
    }
}
