//! The RDB format: Redis's own snapshot file, and the encoding of `DUMP` payloads.
//!
//! envsnap stores a Redis capture as an RDB file, so a dump is a standard file that
//! `redis-server`, `redis-check-rdb` and the RDB tools read as is. This module reads an
//! RDB stream item by item without loading values: it knows every value encoding well
//! enough to find where a value ends, and copies the bytes it consumes to a writer of
//! the caller's choice, so a multi-GB snapshot passes through in constant memory. A
//! value's bytes, prefixed by its type, are exactly the body of a `DUMP` payload, which
//! is how a restore hands each key back to a running server with `RESTORE`.
//!
//! Covered: RDB versions 1 to 12 (Redis 7.4), all value types up to hashes with field
//! expiries, module values (type 2, which annotate their own structure), function
//! libraries and module auxiliary data.
//!
//! A stored RDB file is hostile input. No length it declares is trusted: strings are
//! copied or gathered as their bytes arrive, never allocated up front, and every loop
//! over a declared count reads at least one byte per turn, so a file that claims a
//! 4 GiB string or four billion members in a few bytes fails at its end, having cost
//! no more than its real size. Nothing here recurses.

use std::fmt;
use std::io::{self, BufRead, Write};

use crc::{CRC_64_REDIS, Crc, Digest, Table};

/// The CRC-64 (Jones polynomial) that RDB files and `DUMP` payloads carry.
static REDIS_CRC: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// Opcodes that precede something other than a key.
pub(crate) mod opcode {
    /// Cluster slot sizes (ignored outside a cluster).
    pub const SLOT_INFO: u8 = 244;
    /// A function library's source code.
    pub const FUNCTION2: u8 = 245;
    /// Functions as Redis 7.0 release candidates wrote them (unsupported by Redis too).
    pub const FUNCTION_PRE_GA: u8 = 246;
    /// A module's data that belongs to no key.
    pub const MODULE_AUX: u8 = 247;
    /// The next key's LRU idle time, in seconds.
    pub const IDLE: u8 = 248;
    /// The next key's LFU frequency.
    pub const FREQ: u8 = 249;
    /// A name and a value about the file.
    pub const AUX: u8 = 250;
    /// Size hints for the current database.
    pub const RESIZEDB: u8 = 251;
    /// The next key's expiry, in milliseconds since the epoch.
    pub const EXPIRETIME_MS: u8 = 252;
    /// The next key's expiry, in seconds since the epoch (old files).
    pub const EXPIRETIME: u8 = 253;
    /// The keys that follow belong to this database.
    pub const SELECTDB: u8 = 254;
    /// The end, followed by the checksum.
    pub const EOF: u8 = 255;
}

/// The largest string decoded into memory (a key, an AUX field, a function library):
/// Redis's own limit on a string.
const MAX_STRING: u64 = 512 << 20;

/// What is wrong with an RDB stream.
#[derive(Debug)]
pub(crate) enum RdbError {
    /// Reading the stream, or writing what was read, failed.
    Io(io::Error),
    /// The stream is not valid RDB.
    Format(String),
}

impl fmt::Display for RdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RdbError::Io(error) => error.fmt(f),
            RdbError::Format(detail) => write!(f, "not a valid RDB stream: {detail}"),
        }
    }
}

impl From<io::Error> for RdbError {
    fn from(error: io::Error) -> Self {
        RdbError::Io(error)
    }
}

type Result<T, E = RdbError> = std::result::Result<T, E>;

fn format<T>(detail: impl Into<String>) -> Result<T> {
    Err(RdbError::Format(detail.into()))
}

/// One top-level item of an RDB stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A name and a value about the file (`redis-ver`, `ctime`, …).
    Aux {
        /// The name.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// The keys that follow belong to this database.
    SelectDb(u64),
    /// Size hints.
    ResizeDb,
    /// Cluster slot sizes.
    SlotInfo,
    /// The next key expires at this time, in milliseconds since the epoch.
    ExpireAt(i64),
    /// The next key's LRU idle time, in seconds.
    Idle(u64),
    /// The next key's LFU frequency.
    Freq(u8),
    /// A module's data that belongs to no key.
    ModuleAux,
    /// A function library's source code, as `FUNCTION LOAD` takes it.
    Function(Vec<u8>),
    /// A key; its value, of RDB type `kind`, follows and must be read with
    /// [`RdbReader::value`] before the next item.
    Key {
        /// The value's RDB type.
        kind: u8,
        /// The key.
        key: Vec<u8>,
    },
    /// The end of the data; [`RdbReader::checksum`] reads the checksum that follows.
    Eof,
}

/// A length, or the marker of a specially encoded string.
enum Length {
    Plain(u64),
    Special(u8),
}

/// Reads an RDB stream item by item, copying the bytes of each to a writer.
pub(crate) struct RdbReader<R> {
    input: R,
    crc: Digest<'static, u64, Table<16>>,
    version: u32,
    /// The raw bytes of the last item read by [`next`](Self::next), value excluded.
    head: Vec<u8>,
}

impl<R: BufRead> RdbReader<R> {
    /// Reads the header (`REDIS` and a four-digit version).
    pub fn new(input: R) -> Result<Self> {
        let mut reader = RdbReader { input, crc: REDIS_CRC.digest(), version: 0, head: Vec::new() };
        let mut header = [0u8; 9];
        reader.exact(&mut header, &mut io::sink()).map_err(|error| match error {
            RdbError::Io(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                RdbError::Format("it ends before its header".to_owned())
            }
            other => other,
        })?;
        let version = std::str::from_utf8(&header[5..]).ok().and_then(|digits| digits.parse().ok());
        match (&header[..5], version) {
            (b"REDIS", Some(version)) if version >= 1 => reader.version = version,
            _ => return format("it does not start with `REDIS` and a version number"),
        }
        reader.head = header.to_vec();
        Ok(reader)
    }

    /// The raw bytes of the last item [`next`](Self::next) returned (the header right
    /// after [`new`](Self::new)); for a key, its type and name, without the value.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Reads the next item. After [`Item::Key`], the value must be read with
    /// [`value`](Self::value) before calling this again.
    pub fn next(&mut self) -> Result<Item> {
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        let item = self.item(&mut head);
        self.head = head;
        item
    }

    fn item(&mut self, head: &mut Vec<u8>) -> Result<Item> {
        let code = self.byte(head)?;
        Ok(match code {
            opcode::EOF => Item::Eof,
            opcode::SELECTDB => Item::SelectDb(self.length(head)?),
            opcode::EXPIRETIME => {
                let mut seconds = [0; 4];
                self.exact(&mut seconds, head)?;
                Item::ExpireAt(i64::from(u32::from_le_bytes(seconds)) * 1000)
            }
            opcode::EXPIRETIME_MS => {
                let mut millis = [0; 8];
                self.exact(&mut millis, head)?;
                Item::ExpireAt(i64::from_le_bytes(millis))
            }
            opcode::RESIZEDB => {
                self.length(head)?;
                self.length(head)?;
                Item::ResizeDb
            }
            opcode::SLOT_INFO => {
                for _ in 0..3 {
                    self.length(head)?;
                }
                Item::SlotInfo
            }
            opcode::AUX => Item::Aux { key: self.string(head)?, value: self.string(head)? },
            opcode::FREQ => Item::Freq(self.byte(head)?),
            opcode::IDLE => Item::Idle(self.length(head)?),
            opcode::MODULE_AUX => {
                // Module id, the "when" opcode and its value, then annotated data.
                for _ in 0..3 {
                    self.length(head)?;
                }
                self.module_data(head)?;
                Item::ModuleAux
            }
            opcode::FUNCTION_PRE_GA => {
                return format("it holds functions in the format of Redis 7.0 release candidates");
            }
            opcode::FUNCTION2 => Item::Function(self.string(head)?),
            kind if is_value_type(kind) => Item::Key { kind, key: self.string(head)? },
            other => return format(format!("unknown type or opcode {other} (written by a newer Redis?)")),
        })
    }

    /// Reads the value of a key of type `kind`, copying its bytes to `out`.
    pub fn value(&mut self, kind: u8, out: &mut dyn Write) -> Result<()> {
        match kind {
            // A string, or one string holding an encoded collection (ziplist,
            // listpack, intset, zipmap).
            0 | 9..=13 | 16 | 17 | 20 | 23 => self.skip_string(out),
            // Lists and sets of strings; quicklists of ziplists.
            1 | 2 | 14 => {
                for _ in 0..self.length(out)? {
                    self.skip_string(out)?;
                }
                Ok(())
            }
            // Sorted set, scores as text.
            3 => {
                for _ in 0..self.length(out)? {
                    self.skip_string(out)?;
                    let size = self.byte(out)?;
                    // 253, 254, 255: NaN, +inf, -inf, with no digits.
                    if size < 253 {
                        self.copy(u64::from(size), out)?;
                    }
                }
                Ok(())
            }
            // Hash of field and value strings.
            4 => {
                for _ in 0..self.length(out)? {
                    self.skip_string(out)?;
                    self.skip_string(out)?;
                }
                Ok(())
            }
            // Sorted set, scores as binary doubles.
            5 => {
                for _ in 0..self.length(out)? {
                    self.skip_string(out)?;
                    self.copy(8, out)?;
                }
                Ok(())
            }
            6 => format("it holds a module value in the format of Redis 4.0 release candidates"),
            7 => {
                self.length(out)?;
                self.module_data(out)
            }
            15 | 19 | 21 => self.stream(kind, out),
            // Quicklist of listpacks or plain nodes: a container kind before each.
            18 => {
                for _ in 0..self.length(out)? {
                    self.length(out)?;
                    self.skip_string(out)?;
                }
                Ok(())
            }
            // Hash with field expiries: [minimum expiry,] then TTL, field, value.
            22 | 24 => {
                if kind == 24 {
                    self.copy(8, out)?;
                }
                for _ in 0..self.length(out)? {
                    self.length(out)?;
                    self.skip_string(out)?;
                    self.skip_string(out)?;
                }
                Ok(())
            }
            // Listpack hash with field expiries, after its minimum expiry.
            25 => {
                self.copy(8, out)?;
                self.skip_string(out)
            }
            other => format(format!("unknown value type {other}")),
        }
    }

    /// A stream: its listpacks, metadata, consumer groups with their pending entries
    /// and consumers.
    fn stream(&mut self, kind: u8, out: &mut dyn Write) -> Result<()> {
        for _ in 0..self.length(out)? {
            self.skip_string(out)?; // the node's master ID
            self.skip_string(out)?; // its listpack
        }
        // Length and last ID; from version 2 also the first ID, the largest deleted ID
        // and the count of entries ever added.
        let fields = if kind >= 19 { 8 } else { 3 };
        for _ in 0..fields {
            self.length(out)?;
        }
        for _ in 0..self.length(out)? {
            self.skip_string(out)?; // group name
            self.length(out)?; // last delivered ID
            self.length(out)?;
            if kind >= 19 {
                self.length(out)?; // entries read
            }
            for _ in 0..self.length(out)? {
                self.copy(16 + 8, out)?; // pending ID, delivery time
                self.length(out)?; // delivery count
            }
            for _ in 0..self.length(out)? {
                self.skip_string(out)?; // consumer name
                self.copy(if kind >= 21 { 16 } else { 8 }, out)?; // seen [and active] time
                for _ in 0..self.length(out)? {
                    self.copy(16, out)?; // pending ID
                }
            }
        }
        Ok(())
    }

    /// Module data saved with type annotations, up to its end marker.
    fn module_data(&mut self, out: &mut dyn Write) -> Result<()> {
        loop {
            match self.length(out)? {
                0 => return Ok(()),
                1 | 2 => {
                    self.length(out)?;
                }
                3 => self.copy(4, out)?,
                4 => self.copy(8, out)?,
                5 => self.skip_string(out)?,
                other => return format(format!("module data with unknown annotation {other}")),
            }
        }
    }

    /// Reads the checksum after [`Item::Eof`]: `(stored, computed)`. A stored checksum
    /// of 0 means the writer did not compute one; versions before 5 have none.
    pub fn checksum(&mut self) -> Result<(u64, u64)> {
        let computed = self.crc.clone().finalize();
        if self.version < 5 {
            return Ok((0, computed));
        }
        let mut stored = [0; 8];
        self.input.read_exact(&mut stored)?;
        Ok((u64::from_le_bytes(stored), computed))
    }

    fn exact(&mut self, buffer: &mut [u8], out: &mut dyn Write) -> Result<()> {
        self.input.read_exact(buffer)?;
        self.crc.update(buffer);
        out.write_all(buffer)?;
        Ok(())
    }

    fn byte(&mut self, out: &mut dyn Write) -> Result<u8> {
        let mut byte = [0];
        self.exact(&mut byte, out)?;
        Ok(byte[0])
    }

    /// Copies `count` bytes to `out`, a buffer at a time.
    fn copy(&mut self, mut count: u64, out: &mut dyn Write) -> Result<()> {
        while count > 0 {
            let available = self.input.fill_buf()?;
            if available.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the RDB stream ends in the middle").into());
            }
            let take = available.len().min(usize::try_from(count).unwrap_or(usize::MAX));
            self.crc.update(&available[..take]);
            out.write_all(&available[..take])?;
            self.input.consume(take);
            count -= take as u64;
        }
        Ok(())
    }

    fn encoded_length(&mut self, out: &mut dyn Write) -> Result<Length> {
        let first = self.byte(out)?;
        Ok(match first >> 6 {
            0 => Length::Plain(u64::from(first & 0x3f)),
            1 => Length::Plain(u64::from(first & 0x3f) << 8 | u64::from(self.byte(out)?)),
            3 => Length::Special(first & 0x3f),
            _ => match first {
                0x80 => {
                    let mut bytes = [0; 4];
                    self.exact(&mut bytes, out)?;
                    Length::Plain(u64::from(u32::from_be_bytes(bytes)))
                }
                0x81 => {
                    let mut bytes = [0; 8];
                    self.exact(&mut bytes, out)?;
                    Length::Plain(u64::from_be_bytes(bytes))
                }
                other => return format(format!("unknown length encoding {other:#x}")),
            },
        })
    }

    fn length(&mut self, out: &mut dyn Write) -> Result<u64> {
        match self.encoded_length(out)? {
            Length::Plain(length) => Ok(length),
            Length::Special(_) => format("an encoded string where a length belongs"),
        }
    }

    /// Copies a string of any encoding without decoding it.
    fn skip_string(&mut self, out: &mut dyn Write) -> Result<()> {
        match self.encoded_length(out)? {
            Length::Plain(length) => self.copy(length, out),
            Length::Special(0) => self.copy(1, out),
            Length::Special(1) => self.copy(2, out),
            Length::Special(2) => self.copy(4, out),
            Length::Special(3) => {
                let compressed = self.length(out)?;
                self.length(out)?;
                self.copy(compressed, out)
            }
            Length::Special(other) => format(format!("unknown string encoding {other}")),
        }
    }

    /// Reads and decodes a string: integers become their decimal text, LZF is inflated.
    fn string(&mut self, out: &mut dyn Write) -> Result<Vec<u8>> {
        // Read as the bytes arrive rather than allocated up front, so a damaged length
        // costs no more memory than the data that is really there.
        let read = |reader: &mut Self, length: u64, out: &mut dyn Write| -> Result<Vec<u8>> {
            if length > MAX_STRING {
                return format(format!("a key or field of {length} bytes"));
            }
            let mut tee = Tee { out, bytes: Vec::new() };
            reader.copy(length, &mut tee)?;
            Ok(tee.bytes)
        };
        match self.encoded_length(out)? {
            Length::Plain(length) => read(self, length, out),
            Length::Special(size @ 0..=2) => {
                let mut bytes = [0; 4];
                self.exact(&mut bytes[..1 << size], out)?;
                let number = match size {
                    0 => i64::from(bytes[0] as i8),
                    1 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
                    _ => i64::from(i32::from_le_bytes(bytes)),
                };
                Ok(number.to_string().into_bytes())
            }
            Length::Special(3) => {
                let compressed = self.length(out)?;
                let plain = self.length(out)?;
                if plain > MAX_STRING {
                    return format(format!("a key or field of {plain} bytes"));
                }
                let data = read(self, compressed, out)?;
                lzf_decompress(&data, plain as usize)
                    .ok_or_else(|| RdbError::Format("a compressed string does not inflate to its length".to_owned()))
            }
            Length::Special(other) => format(format!("unknown string encoding {other}")),
        }
    }
}

/// Writes to `out` and keeps a copy.
struct Tee<'a> {
    out: &'a mut dyn Write,
    bytes: Vec<u8>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.out.write_all(buffer)?;
        self.bytes.extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Whether `kind` is an RDB value type this module can read.
fn is_value_type(kind: u8) -> bool {
    kind <= 7 || (9..=25).contains(&kind)
}

/// Inflates LZF data (the compression RDB applies to long strings).
fn lzf_decompress(input: &[u8], length: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(length.min(input.len().saturating_mul(8)));
    let mut at = 0;
    while at < input.len() {
        let control = usize::from(input[at]);
        at += 1;
        if control < 32 {
            // A literal run of control + 1 bytes.
            let run = input.get(at..at + control + 1)?;
            out.extend_from_slice(run);
            at += control + 1;
        } else {
            // A back reference: length in the top 3 bits (7 = extended), offset in 13.
            let mut count = control >> 5;
            if count == 7 {
                count += usize::from(*input.get(at)?);
                at += 1;
            }
            let offset = ((control & 0x1f) << 8) + usize::from(*input.get(at)?) + 1;
            at += 1;
            let start = out.len().checked_sub(offset)?;
            for index in start..start + count + 2 {
                let byte = out[index];
                out.push(byte);
            }
        }
        if out.len() > length {
            return None;
        }
    }
    (out.len() == length).then_some(out)
}

/// The oldest RDB version that knows value type `kind`: what a `DUMP` payload of that
/// type claims, so that a snapshot taken on a newer Redis restores into an older one
/// whenever the older one knows the encoding (a server refuses payloads newer than
/// itself, whatever their content).
fn payload_version(kind: u8) -> u16 {
    match kind {
        0..=4 | 9..=13 => 6,
        14 => 7,
        5..=7 => 8,
        15 => 9,
        16..=19 => 10,
        20 | 21 => 11,
        _ => 12,
    }
}

/// Turns a value as an RDB file holds it (its type byte, then its encoding) into a
/// `DUMP` payload: appends the version and the CRC-64 that `RESTORE` checks.
pub(crate) fn dump_payload(mut value: Vec<u8>) -> Vec<u8> {
    let version = value.first().map_or(6, |kind| payload_version(*kind));
    value.extend_from_slice(&version.to_le_bytes());
    let crc = REDIS_CRC.checksum(&value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

/// Splits a `DUMP` payload into its RDB version and its value (type byte first),
/// checking its CRC-64.
pub(crate) fn split_payload(payload: &[u8]) -> Option<(u16, &[u8])> {
    let body_length = payload.len().checked_sub(10)?;
    let (body, trailer) = payload.split_at(body_length);
    let version = u16::from_le_bytes([trailer[0], trailer[1]]);
    let crc = u64::from_le_bytes(trailer[2..].try_into().ok()?);
    (!body.is_empty() && REDIS_CRC.checksum(&payload[..body_length + 2]) == crc).then_some((version, body))
}

/// Writes an RDB stream, keeping the checksum of everything written.
pub(crate) struct RdbWriter<W> {
    inner: W,
    crc: Digest<'static, u64, Table<16>>,
}

impl<W: Write> RdbWriter<W> {
    /// A writer that has written nothing yet.
    pub fn new(inner: W) -> Self {
        RdbWriter { inner, crc: REDIS_CRC.digest() }
    }

    /// The header of a file of format `version`.
    pub fn header(&mut self, version: u32) -> io::Result<()> {
        write!(self, "REDIS{version:04}")
    }

    /// An AUX field.
    pub fn aux(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.write_all(&[opcode::AUX])?;
        self.string(key)?;
        self.string(value)
    }

    /// A length in RDB's variable-size encoding.
    pub fn length(&mut self, length: u64) -> io::Result<()> {
        if length < 1 << 6 {
            self.write_all(&[length as u8])
        } else if length < 1 << 14 {
            self.write_all(&[0x40 | (length >> 8) as u8, length as u8])
        } else if let Ok(length) = u32::try_from(length) {
            self.write_all(&[0x80])?;
            self.write_all(&length.to_be_bytes())
        } else {
            self.write_all(&[0x81])?;
            self.write_all(&length.to_be_bytes())
        }
    }

    /// A plain string.
    pub fn string(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.length(bytes.len() as u64)?;
        self.write_all(bytes)
    }

    /// The end marker and the checksum of everything before it; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_all(&[opcode::EOF])?;
        let crc = self.crc.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for RdbWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.crc.update(&buffer[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Records the largest single allocation a piece of work makes on its thread, so that
/// tests can tell a declared length that drove an allocation from one that did not.
#[cfg(test)]
#[allow(unsafe_code)] // A global allocator can only be written with `unsafe`.
pub(crate) mod allocation {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Recording;

    thread_local! {
        /// The largest request seen while recording; `None` when not recording.
        static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
    }

    fn note(size: usize) {
        let _ = LARGEST.try_with(|largest| {
            if let Some(seen) = largest.get() {
                largest.set(Some(seen.max(size)));
            }
        });
    }

    // SAFETY: every call is passed unchanged to the system allocator; recording touches
    // only a thread-local `Cell` that needs no allocation.
    unsafe impl GlobalAlloc for Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: the caller's guarantees for `layout` are passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            // SAFETY: the caller's guarantees for `pointer`, `layout` and `new_size` are passed on.
            unsafe { System.realloc(pointer, layout, new_size) }
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            // SAFETY: `pointer` came from `System` with this `layout`.
            unsafe { System.dealloc(pointer, layout) }
        }
    }

    #[global_allocator]
    static RECORDING: Recording = Recording;

    /// Runs `work`; returns its result and the largest allocation it made.
    pub(crate) fn largest<T>(work: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|largest| largest.set(Some(0)));
        let result = work();
        let seen = LARGEST.with(|largest| largest.replace(None)).unwrap_or(0);
        (result, seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a whole stream, every value to `io::sink()`.
    fn read_all(bytes: &[u8]) -> Result<()> {
        let mut reader = RdbReader::new(bytes)?;
        loop {
            match reader.next()? {
                Item::Key { kind, .. } => reader.value(kind, &mut io::sink())?,
                Item::Eof => return Ok(()),
                _ => {}
            }
        }
    }

    #[test]
    fn the_allocation_record_sees_what_is_allocated() {
        let (buffer, largest) = allocation::largest(|| vec![1u8; 3 << 20]);
        assert!(largest >= buffer.len());
        let ((), largest) = allocation::largest(|| ());
        assert_eq!(largest, 0);
    }

    #[test]
    fn a_claimed_4_gib_string_in_a_few_bytes_fails_fast_without_allocating() {
        // A string key "k" whose value claims 2^32 - 1 bytes (a 32-bit length), then
        // one of 2^40 (a 64-bit length), and a key of 500 MiB (Redis's limit allows it).
        let mut value_32 = b"REDIS0011\x00\x01k\x80".to_vec();
        value_32.extend_from_slice(&u32::MAX.to_be_bytes());
        value_32.extend_from_slice(b"abcd");
        let mut value_64 = b"REDIS0011\x00\x01k\x81".to_vec();
        value_64.extend_from_slice(&(1u64 << 40).to_be_bytes());
        let mut key = b"REDIS0011\x00\x80".to_vec();
        key.extend_from_slice(&(500u32 << 20).to_be_bytes());
        key.extend_from_slice(b"abcdef");
        for stream in [value_32, value_64, key] {
            assert!(stream.len() <= 24);
            let started = std::time::Instant::now();
            let (result, largest) = allocation::largest(|| read_all(&stream));
            assert!(result.is_err(), "a truncated stream was accepted");
            assert!(largest < 64 << 10, "a claimed length drove an allocation of {largest} bytes");
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    #[test]
    fn a_compressed_string_claiming_a_huge_inflated_size_allocates_by_what_is_there() {
        // An AUX field whose LZF value claims to inflate to 500 MiB from 3 bytes.
        let mut stream = b"REDIS0011\xfa\x01a\xc3\x03\x80".to_vec();
        stream.extend_from_slice(&(500u32 << 20).to_be_bytes());
        stream.extend_from_slice(&[0, b'x', 0]);
        let (result, largest) = allocation::largest(|| read_all(&stream));
        assert!(result.is_err(), "a compressed string that does not inflate to its length was accepted");
        assert!(largest < 64 << 10, "a claimed length drove an allocation of {largest} bytes");
    }

    #[test]
    fn four_billion_claimed_members_end_with_the_data() {
        // A set (type 2) claiming 2^32 - 1 members, of which two are there.
        let mut stream = b"REDIS0011\x02\x01k\x80".to_vec();
        stream.extend_from_slice(&u32::MAX.to_be_bytes());
        stream.extend_from_slice(b"\x01a\x01b");
        let started = std::time::Instant::now();
        let (result, largest) = allocation::largest(|| read_all(&stream));
        assert!(result.is_err());
        assert!(largest < 64 << 10, "a claimed count drove an allocation of {largest} bytes");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn the_crc_is_the_one_redis_uses() {
        // The check value of Redis's crc64.c self-test.
        assert_eq!(REDIS_CRC.checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn lzf_literals_and_back_references_inflate() {
        // "abcabcabc": a literal run of 3, then a back reference of 6 bytes at offset 3.
        let compressed = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(lzf_decompress(&compressed, 9).as_deref(), Some(&b"abcabcabc"[..]));
        assert_eq!(lzf_decompress(&compressed, 8), None, "a wrong length is refused");
        assert_eq!(lzf_decompress(&[0xe0, 0xff, 0xff], 300), None, "a reference before the start is refused");
    }

    fn sample() -> io::Result<Vec<u8>> {
        let mut writer = RdbWriter::new(Vec::new());
        writer.header(10)?;
        writer.aux(b"redis-ver", b"7.0.15")?;
        writer.write_all(&[opcode::SELECTDB])?;
        writer.length(3)?;
        writer.write_all(&[opcode::EXPIRETIME_MS])?;
        writer.write_all(&1_700_000_000_000i64.to_le_bytes())?;
        writer.write_all(&[0])?;
        writer.string(b"greeting")?;
        writer.string(&vec![b'x'; 20_000])?;
        writer.write_all(&[2])?; // a set of two members
        writer.write_all(&[0xc0, 42])?; // an int8-encoded key: "42"
        writer.length(2)?;
        writer.string(b"a")?;
        writer.string(b"b")?;
        writer.finish()
    }

    #[test]
    fn a_written_stream_reads_back_item_by_item() -> Result<()> {
        let bytes = sample()?;
        let mut reader = RdbReader::new(bytes.as_slice())?;
        assert_eq!(reader.version, 10);
        assert!(matches!(reader.next()?, Item::Aux { key, value } if key == b"redis-ver" && value == b"7.0.15"));
        assert_eq!(reader.next()?, Item::SelectDb(3));
        assert_eq!(reader.next()?, Item::ExpireAt(1_700_000_000_000));
        assert_eq!(reader.next()?, Item::Key { kind: 0, key: b"greeting".to_vec() });
        let mut value = Vec::new();
        reader.value(0, &mut value)?;
        assert_eq!(value.len(), 5 + 20_000, "a 32-bit length and the bytes");
        assert_eq!(reader.next()?, Item::Key { kind: 2, key: b"42".to_vec() });
        assert_eq!(reader.head(), &[2, 0xc0, 42]);
        reader.value(2, &mut io::sink())?;
        assert_eq!(reader.next()?, Item::Eof);
        let (stored, computed) = reader.checksum()?;
        assert_eq!(stored, computed);
        Ok(())
    }

    #[test]
    fn payloads_carry_a_version_and_a_checksum() {
        let payload = dump_payload(vec![0, 2, b'h', b'i']);
        assert_eq!(split_payload(&payload), Some((6, &[0, 2, b'h', b'i'][..])));
        let mut damaged = payload.clone();
        damaged[2] ^= 1;
        assert_eq!(split_payload(&damaged), None);
        assert_eq!(split_payload(&payload[..5]), None);
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() -> io::Result<()> {
        let bytes = sample()?;
        for end in 0..bytes.len() - 8 {
            let result = (|| -> Result<()> {
                let mut reader = RdbReader::new(&bytes[..end])?;
                loop {
                    match reader.next()? {
                        Item::Key { kind, .. } => reader.value(kind, &mut io::sink())?,
                        Item::Eof => return Ok(()),
                        _ => {}
                    }
                }
            })();
            assert!(result.is_err(), "a stream cut at {end} bytes was accepted");
        }
        let mut state = 7u32;
        for _ in 0..200 {
            let mut garbage = b"REDIS0010".to_vec();
            garbage.extend((0..64).map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            }));
            let _ = (|| -> Result<()> {
                let mut reader = RdbReader::new(garbage.as_slice())?;
                loop {
                    if let Item::Key { kind, .. } = reader.next()? {
                        reader.value(kind, &mut io::sink())?;
                    }
                }
            })();
        }
        Ok(())
    }
}
