//! The content-addressed store: chunking, blob encoding, packs and locking.
//!
//! Data is cut into content-defined chunks, each named by the BLAKE3 hash of its
//! plain bytes and stored once, however many files, snapshots or environments hold
//! it. Blobs (chunks and trees) are gathered into packs of tens of MiB; a pack is
//! written and synced before the index or any snapshot refers to it.

pub mod backend;
pub mod chunker;
pub mod lock;
pub mod pack;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::mem;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};

use crate::catalog::Catalog;
use crate::crypto::Crypto;
use crate::error::{Error, Result};
use crate::id::{IdKey, ObjectId};
use backend::Backend;
use pack::{BlobKind, Compression, PackBuilder, PackEntry};

/// A pack is written out once it holds this many bytes. Large enough that a
/// repository of a few hundred GB has some ten thousand packs, small enough that
/// a pack in memory costs little and a damaged one loses little.
pub const PACK_TARGET: usize = 32 << 20;

/// Room beyond [`PACK_TARGET`] for the blob that crosses it and the footer: the
/// largest chunk, stored plain, and then some.
const PACK_SLACK: usize = 5 << 20;

/// zstd level: 3 is zstd's default, and within a few percent of the size of level 9
/// at several times the speed on the dumps and trees measured (see docs/FORMAT.md).
const ZSTD_LEVEL: i32 = 3;

/// The object name of a pack.
pub fn pack_name(id: &ObjectId) -> String {
    let hex = id.to_hex();
    format!("packs/{}/{hex}.pack", &hex[..2])
}

/// The zstd level for data the sample check finds little repetition in (e.g. hex or
/// base64 of random bytes, common in database dumps): there, zstd gains by entropy
/// coding alone, which every level does alike, and level 3's match finder only costs
/// time. Measured on a `pg_dump` of random rows: level 1 gave a 2% smaller result
/// than level 3, in 55% of the time.
const ZSTD_LEVEL_FAST: i32 = 1;

/// Compresses a blob when that pays: it must shrink by at least 1/32, else it is
/// stored as is and costs no decompression when read.
pub fn encode_blob(data: &[u8]) -> (Compression, Cow<'_, [u8]>) {
    if data.len() < 64 {
        return (Compression::None, Cow::Borrowed(data));
    }
    let compressor = match sample(data) {
        Sample::Incompressible => return (Compression::None, Cow::Borrowed(data)),
        Sample::LittleRepetition => &COMPRESSOR_FAST,
        Sample::Compressible => &COMPRESSOR,
    };
    let compressed = compressor.with_borrow_mut(|compressor| match compressor {
        Some(compressor) => compressor.compress(data).ok(),
        None => None,
    });
    match compressed.filter(|c| c.len() < data.len() - data.len() / 32) {
        Some(compressed) => (Compression::Zstd, Cow::Owned(compressed)),
        None => (Compression::None, Cow::Borrowed(data)),
    }
}

thread_local! {
    // A zstd context costs a few hundred KiB to set up: one per thread, reused for
    // every blob, instead of one per blob. `None` only if zstd cannot allocate one.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok());
    static COMPRESSOR_FAST: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(ZSTD_LEVEL_FAST).ok());
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// What a sample of a blob says about compressing it.
#[derive(Debug, PartialEq, Eq)]
enum Sample {
    /// Already compressed (media, archives, encrypted files): not worth trying.
    Incompressible,
    /// Shrinks by entropy coding, hardly by matches: [`ZSTD_LEVEL_FAST`] does as well.
    LittleRepetition,
    /// Worth [`ZSTD_LEVEL`].
    Compressible,
}

/// A fast compression of a small sample from the middle of a large blob tells apart
/// the kinds of [`Sample`] for a fraction of the cost of compressing the whole blob
/// in vain, or slowly in vain. Blobs under 128 KiB are not sampled.
fn sample(data: &[u8]) -> Sample {
    const SAMPLE: usize = 16 << 10;
    if data.len() < 8 * SAMPLE {
        return Sample::Compressible;
    }
    let sample = &data[data.len() / 2..][..SAMPLE];
    match zstd::bulk::compress(sample, ZSTD_LEVEL_FAST) {
        Ok(compressed) if compressed.len() >= SAMPLE - SAMPLE / 32 => Sample::Incompressible,
        Ok(compressed) if compressed.len() >= SAMPLE / 2 => Sample::LittleRepetition,
        _ => Sample::Compressible,
    }
}

/// Turns stored bytes (opened, if they were sealed: see [`Crypto::decode_blob`], the
/// way every reader goes) back into the blob, verifying it against its id.
pub fn decode_blob(ids: &IdKey, entry: &PackEntry, stored: Vec<u8>) -> Result<Vec<u8>, String> {
    // The claimed length sizes the output buffer: bound it before allocating, as the
    // entry may come from a crafted footer or catalog row.
    if entry.raw_length > entry.kind.max_raw_length() {
        return Err(format!(
            "blob {} claims {} bytes, more than a blob of its kind can hold",
            entry.id, entry.raw_length
        ));
    }
    if entry.compression == Compression::Zstd
        && let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(&stored)
        && size != u64::from(entry.raw_length)
    {
        return Err(format!("blob {}: its frame holds {size} bytes, not the {} claimed", entry.id, entry.raw_length));
    }
    let plain = match entry.compression {
        Compression::None => stored,
        Compression::Zstd => DECOMPRESSOR
            .with_borrow_mut(|decompressor| match decompressor {
                Some(decompressor) => decompressor.decompress(&stored, entry.raw_length as usize),
                None => zstd::bulk::decompress(&stored, entry.raw_length as usize),
            })
            .map_err(|error| format!("cannot decompress: {error}"))?,
    };
    if plain.len() != entry.raw_length as usize || ids.id_of(&plain) != entry.id {
        return Err(format!("blob {}: its bytes do not match its hash", entry.id));
    }
    Ok(plain)
}

/// Reads a pack's footer without reading the whole pack (and, when sealed, its header).
pub fn read_pack_entries(crypto: &Crypto, backend: &dyn Backend, name: &str, size: u64) -> Result<Vec<PackEntry>> {
    let corrupt =
        |detail: String| Error::Corrupt { what: format!("pack {}", backend.describe(name).display()), detail };
    let io = |error| Error::io("reading", backend.describe(name), error);
    let layout = if crypto.is_encrypted() { pack::SEALED } else { pack::PLAIN };
    let trailer_offset = size.checked_sub(pack::TRAILER_SIZE as u64).ok_or_else(|| corrupt("too short".into()))?;
    let trailer = backend.get_range(name, trailer_offset, pack::TRAILER_SIZE).map_err(io)?;
    let (data_end, footer_length, count) =
        pack::footer_location_in(&trailer, size, layout).map_err(|e| corrupt(e.to_string()))?;
    let mut footer = backend.get_range(name, data_end, footer_length).map_err(io)?;
    if crypto.is_encrypted() {
        let header = backend.get_range(name, 0, layout.header).map_err(io)?;
        footer = crypto
            .open_footer(&header, count, footer)
            .map_err(|error| corrupt(pack::PackError::Sealed(error).to_string()))?;
    }
    pack::parse_footer_in(&footer, data_end, layout).map_err(|e| corrupt(e.to_string()))
}

/// The id a pack's object name gives it, if the name is one envsnap writes.
pub fn pack_id_of_name(name: &str) -> Option<ObjectId> {
    name.rsplit('/').next().and_then(|file| file.strip_suffix(".pack")).and_then(ObjectId::from_hex)
}

/// Reads a whole pack and returns its entries, only if its bytes hash to its name: a
/// pack torn by a crash, or damaged anywhere (its footer included), is refused, so
/// that nothing is ever indexed from it.
pub fn read_verified_pack(crypto: &Crypto, backend: &dyn Backend, name: &str) -> Result<Vec<PackEntry>> {
    let corrupt =
        |detail: String| Error::Corrupt { what: format!("pack {}", backend.describe(name).display()), detail };
    let bytes =
        backend.get(name, pack::MAX_PACK_SIZE).map_err(|error| Error::io("reading", backend.describe(name), error))?;
    if pack_id_of_name(name) != Some(ObjectId::of(&bytes)) {
        return Err(corrupt("its bytes do not match its name".to_owned()));
    }
    pack::parse_any_pack(crypto, &bytes).map_err(|error| corrupt(error.to_string()))
}

/// Counters of what a writer stored.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Blobs newly stored.
    pub blobs: AtomicU64,
    /// Their stored bytes (after compression), pack headers and footers included.
    pub stored_bytes: AtomicU64,
    /// Packs written.
    pub packs: AtomicU64,
}

/// Stores blobs, deduplicating against the repository and itself, from many threads.
///
/// A full pack is written either by the thread that filled it ([`BlobWriter::new`]),
/// or, in [`BlobWriter::pipelined`], by a writer thread of its own, so that reading
/// and compressing go on while a pack is written and synced.
pub struct BlobWriter<'a> {
    backend: &'a dyn Backend,
    /// Names blobs and seals packs: the repository's keys, or plain.
    crypto: &'a Crypto,
    catalog: &'a Mutex<Catalog>,
    known: Mutex<HashSet<ObjectId>>,
    open_pack: Mutex<PackBuilder>,
    stats: WriteStats,
    /// Where full packs go in pipelined mode; `None` writes them inline.
    background: Mutex<Option<SyncSender<PackBuilder>>>,
}

/// Packs waiting for the writer thread: none; a full pack is handed over when the
/// writer is free, which bounds memory to two packs and still overlaps the writes.
const PACKS_QUEUED: usize = 0;

impl<'a> BlobWriter<'a> {
    /// A writer that knows every blob the catalog indexes and writes packs inline.
    pub fn new(backend: &'a dyn Backend, catalog: &'a Mutex<Catalog>, crypto: &'a Crypto) -> Result<Self> {
        let known = lock(catalog).blob_ids()?;
        Ok(BlobWriter {
            backend,
            crypto,
            catalog,
            known: Mutex::new(known),
            open_pack: Mutex::new(PackBuilder::sealed(crypto.pack_sealer())),
            stats: WriteStats::default(),
            background: Mutex::new(None),
        })
    }

    /// Runs `work` with a writer whose packs are written by a thread of their own.
    /// When this returns `Ok`, every blob added is stored, synced and indexed.
    pub fn pipelined<T>(
        backend: &'a dyn Backend,
        catalog: &'a Mutex<Catalog>,
        crypto: &'a Crypto,
        work: impl FnOnce(&BlobWriter<'a>) -> Result<T>,
    ) -> Result<(T, WriteTotals)> {
        let writer = BlobWriter::new(backend, catalog, crypto)?;
        let (sender, receiver) = sync_channel::<PackBuilder>(PACKS_QUEUED);
        *lock(&writer.background) = Some(sender);
        let outcome = std::thread::scope(|scope| {
            let thread = scope.spawn(|| -> Result<()> {
                for pack in receiver {
                    writer.write_pack(pack)?;
                }
                Ok(())
            });
            let outcome = work(&writer).and_then(|value| writer.flush().map(|()| value));
            // Closing the channel ends the thread once it has written what was sent.
            lock(&writer.background).take();
            let written = thread.join().unwrap_or(Err(Error::PackWriterStopped));
            // A failed write (a full disk, say) is the cause of whatever `work` met.
            written.and(outcome)
        })?;
        Ok((outcome, writer.totals()))
    }

    /// Stores `data` unless a blob with its id is already stored; returns the id.
    pub fn add(&self, kind: BlobKind, data: &[u8]) -> Result<ObjectId> {
        let id = self.crypto.id_of(data);
        self.add_hashed(id, kind, data)?;
        Ok(id)
    }

    /// Like [`BlobWriter::add`], for a caller that hashed `data` already. Returns
    /// whether it was new.
    pub fn add_hashed(&self, id: ObjectId, kind: BlobKind, data: &[u8]) -> Result<bool> {
        // A blob past its kind's bound would make its whole pack unreadable.
        if data.len() > kind.max_raw_length() as usize {
            return Err(Error::Corrupt {
                what: format!("a blob of {} bytes", data.len()),
                detail: format!("a blob of its kind holds at most {} bytes; it was not stored", kind.max_raw_length()),
            });
        }
        if !lock(&self.known).insert(id) {
            return Ok(false);
        }
        let (compression, stored) = encode_blob(data);
        let raw_length = u32::try_from(data.len()).expect("chunks and trees are far below 4 GiB");
        let full = {
            let mut pack = lock(&self.open_pack);
            pack.add(id, kind, compression, &stored, raw_length);
            if pack.len() >= PACK_TARGET { Some(mem::replace(&mut *pack, self.new_pack())) } else { None }
        };
        self.stats.blobs.fetch_add(1, Ordering::Relaxed);
        self.stats.stored_bytes.fetch_add(stored.len() as u64, Ordering::Relaxed);
        if let Some(pack) = full {
            // Handed on outside the lock, so other threads go on filling the next pack.
            self.dispatch(pack)?;
        }
        Ok(true)
    }

    /// Sends the partly filled pack on its way. In inline mode every blob added is
    /// stored and indexed once this returns; in pipelined mode, once
    /// [`BlobWriter::pipelined`] returns.
    pub fn flush(&self) -> Result<()> {
        let pack = mem::replace(&mut *lock(&self.open_pack), self.new_pack());
        if pack.is_empty() { Ok(()) } else { self.dispatch(pack) }
    }

    /// An empty pack, with a key of its own when encrypted.
    fn new_pack(&self) -> PackBuilder {
        PackBuilder::sealed(self.crypto.pack_sealer())
    }

    /// What was stored so far.
    pub fn totals(&self) -> WriteTotals {
        WriteTotals {
            blobs: self.stats.blobs.load(Ordering::Relaxed),
            stored_bytes: self.stats.stored_bytes.load(Ordering::Relaxed),
            packs: self.stats.packs.load(Ordering::Relaxed),
        }
    }

    fn dispatch(&self, pack: PackBuilder) -> Result<()> {
        let sender = lock(&self.background).clone();
        match sender {
            Some(sender) => sender.send(pack).map_err(|_| Error::PackWriterStopped),
            None => self.write_pack(pack),
        }
    }

    fn write_pack(&self, pack: PackBuilder) -> Result<()> {
        let (id, bytes, entries) = pack.finish();
        let name = pack_name(&id);
        self.backend.put(&name, &bytes).map_err(|error| Error::io("writing", self.backend.describe(&name), error))?;
        let payload: usize = entries.iter().map(|entry| entry.length as usize).sum();
        self.stats.packs.fetch_add(1, Ordering::Relaxed);
        self.stats.stored_bytes.fetch_add((bytes.len() - payload) as u64, Ordering::Relaxed);
        lock(self.catalog).add_pack(&name, bytes.len() as u64, &entries)
    }
}

/// What a writer stored, read once it is done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteTotals {
    /// Blobs newly stored.
    pub blobs: u64,
    /// Their stored bytes, pack headers and footers included.
    pub stored_bytes: u64,
    /// Packs written.
    pub packs: u64,
}

/// Locks a mutex; a panic elsewhere while it was held leaves data that is still
/// consistent here (every critical section is a single insert or swap).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend::MemoryBackend;

    #[test]
    fn samples_tell_random_bytes_hex_and_text_apart() {
        // A deterministic stand-in for random bytes: BLAKE3 in counter mode.
        let random: Vec<u8> = (0u64..8192).flat_map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes()).collect();
        let hex = hex::encode(&random);
        let text = b"INSERT INTO t VALUES (1, 'alpha bravo');\n".repeat(8192);
        assert_eq!(sample(&random), Sample::Incompressible);
        assert_eq!(sample(hex.as_bytes()), Sample::LittleRepetition);
        assert_eq!(sample(&text), Sample::Compressible);
        for data in [&random[..], hex.as_bytes(), &text[..]] {
            let (compression, stored) = encode_blob(data);
            let entry = PackEntry {
                id: ObjectId::of(data),
                kind: BlobKind::Data,
                compression,
                offset: 0,
                length: stored.len() as u32,
                raw_length: data.len() as u32,
            };
            assert_eq!(decode_blob(&IdKey::Plain, &entry, stored.into_owned()).as_deref(), Ok(data));
        }
    }

    #[test]
    fn a_blob_past_its_kinds_bound_is_refused_and_its_pack_stays_readable() -> Result<()> {
        let backend = MemoryBackend::default();
        let catalog = Mutex::new(Catalog::in_memory()?);
        let crypto = Crypto::plain();
        let writer = BlobWriter::new(&backend, &catalog, &crypto)?;
        let small = writer.add(BlobKind::Tree, b"a small tree")?;
        let huge = vec![7u8; pack::MAX_TREE_BLOB as usize + 1];
        let refused = writer.add(BlobKind::Tree, &huge).expect_err("a tree past 64 MiB");
        assert!(refused.to_string().contains("it was not stored"), "{refused}");
        writer.flush()?;
        let (name, _) = backend.list("packs").map_err(|e| Error::io("listing", "memory", e))?.remove(0);
        let entries = read_verified_pack(&crypto, &backend, &name)?;
        assert_eq!(entries.iter().map(|entry| entry.id).collect::<Vec<_>>(), [small]);
        Ok(())
    }

    #[test]
    fn blobs_round_trip_through_packs_and_dedup() -> Result<()> {
        let crypto = Crypto::plain();
        let backend = MemoryBackend::default();
        let catalog = Mutex::new(Catalog::in_memory()?);
        let writer = BlobWriter::new(&backend, &catalog, &crypto)?;
        let text = b"compressible ".repeat(1000);
        let a = writer.add(BlobKind::Data, &text)?;
        let again = writer.add(BlobKind::Data, &text)?;
        assert_eq!(a, again);
        let b = writer.add(BlobKind::Tree, b"tiny")?;
        writer.flush()?;
        assert_eq!(writer.totals().blobs, 2, "the duplicate is stored once");
        let catalog = lock(&catalog);
        for (id, expected) in [(a, text.as_slice()), (b, b"tiny".as_slice())] {
            let location = catalog.locate(&id)?.expect("indexed");
            let stored = backend
                .get_range(&location.pack, location.entry.offset, location.entry.length as usize)
                .map_err(|e| Error::io("reading", "memory", e))?;
            assert_eq!(decode_blob(&IdKey::Plain, &location.entry, stored).as_deref(), Ok(expected));
        }
        let location = catalog.locate(&a)?.expect("indexed");
        assert_eq!(location.entry.compression, Compression::Zstd);
        let (name, size) = backend.list("packs").map_err(|e| Error::io("listing", "memory", e))?.remove(0);
        assert_eq!(read_pack_entries(&crypto, &backend, &name, size)?.len(), 2);
        Ok(())
    }

    #[test]
    fn a_flipped_byte_fails_verification() {
        let data = b"some data that compresses, some data that compresses".repeat(10);
        let (compression, stored) = encode_blob(&data);
        let mut stored = stored.into_owned();
        let entry = PackEntry {
            id: ObjectId::of(&data),
            kind: BlobKind::Data,
            compression,
            offset: 8,
            length: stored.len() as u32,
            raw_length: data.len() as u32,
        };
        let middle = stored.len() / 2;
        stored[middle] ^= 0x10;
        assert!(decode_blob(&IdKey::Plain, &entry, stored).is_err());
    }

    #[test]
    fn incompressible_data_is_stored_plain() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let (compression, stored) = encode_blob(&data);
        assert_eq!(compression, Compression::None);
        assert_eq!(stored.as_ref(), data.as_slice());
    }

    #[test]
    fn a_small_blob_claiming_a_gibibyte_is_refused_before_allocating() {
        let data = vec![0u8; 33 << 10];
        let stored = zstd::bulk::compress(&data, 3).expect("compresses");
        let claim = |raw_length| PackEntry {
            id: ObjectId::of(&data),
            kind: BlobKind::Data,
            compression: Compression::Zstd,
            offset: 8,
            length: stored.len() as u32,
            raw_length,
        };
        let refused = decode_blob(&IdKey::Plain, &claim(1 << 30), stored.clone()).expect_err("over the ceiling");
        assert!(refused.contains(&ObjectId::of(&data).to_string()), "{refused}");
        // Under the ceiling but more than its frame holds: refused from the frame header.
        let refused = decode_blob(&IdKey::Plain, &claim(8 << 20), stored.clone()).expect_err("frame says less");
        assert!(refused.contains("frame holds"), "{refused}");
        assert_eq!(decode_blob(&IdKey::Plain, &claim(33 << 10), stored).as_deref(), Ok(data.as_slice()));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]

        /// Chunking, storing and reading back gives the input, whatever it is.
        #[test]
        fn chunk_store_read_back(seed in proptest::prelude::any::<u64>(), repeats in 0usize..4, length in 0usize..(600 << 10)) {
            let mut state = seed | 1;
            let mut input: Vec<u8> = (0..length).map(|_| { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state as u8 }).collect();
            // Repeated stretches give compressible and deduplicated chunks too.
            for _ in 0..repeats { input.extend_from_within(..input.len().min(100 << 10)); }
            // Plain (format 1) and sealed (format 2) alike.
            for crypto in [Crypto::plain(), Crypto::encrypted(crate::crypto::MasterKeys::generate())] {
                let params = chunker::ChunkerParams { min: 64 << 10, avg: 128 << 10, max: 256 << 10, seed: crypto.chunker_seed() };
                let backend = MemoryBackend::default();
                let catalog = Mutex::new(Catalog::in_memory().expect("catalog"));
                let writer = BlobWriter::new(&backend, &catalog, &crypto).expect("writer");
                let ids: Vec<ObjectId> = params.cut(&input).map(|chunk| writer.add(BlobKind::Data, chunk).expect("stored")).collect();
                writer.flush().expect("flushed");
                let catalog = lock(&catalog);
                let mut back = Vec::new();
                for id in ids {
                    let location = catalog.locate(&id).expect("catalog").expect("indexed");
                    let stored = backend.get_range(&location.pack, location.entry.offset, location.entry.length as usize).expect("read");
                    back.extend(crypto.decode_blob(&backend, &location.pack, &location.entry, stored).expect("decoded"));
                }
                for (name, size) in backend.list("packs").expect("listed") {
                    let entries = read_pack_entries(&crypto, &backend, &name, size).expect("footer");
                    proptest::prop_assert_eq!(read_verified_pack(&crypto, &backend, &name).expect("verified"), entries);
                }
                proptest::prop_assert_eq!(&back, &input);
            }
        }
    }
}
