//! Exporting one element of a snapshot as a standard file that anyone can use without
//! envsnap: a mount as a tar archive, a service as its dump.
//!
//! The format follows from the file name asked for:
//!
//! | element | names that fit |
//! |---|---|
//! | a mount | `.tar`, `.tar.gz`, `.tar.zst` |
//! | a service with one dump stream, `dump.<ext>` | `.<ext>`, `.<ext>.gz`, `.<ext>.zst` (`.sql.gz` that `psql` or `mysql` load, `.rdb`, `.sqlite`, …) |
//! | a service dumped as several `.sql` streams (one per table) | `.sql`, `.sql.gz`, `.sql.zst`: the streams concatenated in name order (a MySQL dump's rows merged into extended inserts, [`Rebatch`]) |
//! | any service | `.tar`, `.tar.gz`, `.tar.zst`: its streams as files |
//!
//! A tar archive holds the element's tree under a folder named after the element,
//! with modes, owners, modification times (to the nanosecond, in PAX records), symlinks
//! and hard links, so `tar -xpf` gives back what was captured.
//!
//! [`Export::to_file`] writes a file: to `<path>.partial` first, synced, then renamed,
//! so a failed export never leaves a file at the path asked for.
//! [`Export::to_writer`] writes to any [`Write`] (a pipe, a socket, an HTTP response).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::element::service::mysql::{self, Rebatch};
use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::{Element, ElementKind, Snapshot};
use crate::tree::{Node, NodeKind, Tree};

/// How an export is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`.gz`), which every system can open.
    Gzip,
    /// zstd (`.zst`): faster and smaller.
    Zstd,
}

impl Compression {
    fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }

    const ALL: [Compression; 3] = [Compression::None, Compression::Gzip, Compression::Zstd];
}

/// What an export writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// A tar archive of the element's files.
    Tar(Compression),
    /// A service's dump: its one stream, or its streams one after the other.
    Dump {
        /// The streams' file extension, e.g. `sql`.
        extension: String,
        /// How it is compressed.
        compression: Compression,
    },
}

impl Format {
    /// The file-name ending this format is chosen by, with its dot: `.tar.gz`, `.sql`.
    pub fn ending(&self) -> String {
        match self {
            Format::Tar(compression) => format!(".tar{}", compression.suffix()),
            Format::Dump { extension, compression } => format!(".{extension}{}", compression.suffix()),
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// The format, chosen by the file name.
    pub format: Format,
    /// Bytes of element content read from the snapshot.
    pub content_bytes: u64,
    /// Bytes written (after compression).
    pub written_bytes: u64,
}

/// One element of one snapshot, ready to export.
#[derive(Debug, Clone, Copy)]
pub struct Export<'a> {
    repository: &'a Repository,
    snapshot: &'a Snapshot,
    element: &'a Element,
}

impl<'a> Export<'a> {
    /// The element `name` of `snapshot`.
    pub fn new(repository: &'a Repository, snapshot: &'a Snapshot, name: &str) -> Result<Self> {
        let element = snapshot.manifest.element(name).ok_or_else(|| Error::UnknownElement {
            name: name.to_owned(),
            context: format!(" in snapshot {}", snapshot.id.short(12)),
            known: snapshot.manifest.elements.iter().map(|element| element.name.clone()).collect(),
        })?;
        Ok(Export { repository, snapshot, element })
    }

    /// The element.
    pub fn element(&self) -> &Element {
        self.element
    }

    /// The formats the element can be exported as, the most specific first.
    pub fn formats(&self) -> Result<Vec<Format>> {
        let mut formats = Vec::new();
        if self.element.kind == ElementKind::Service {
            let tree = self.repository.read_tree(&self.element.tree)?;
            let extensions: Vec<Option<&[u8]>> = tree
                .nodes
                .iter()
                .map(|node| {
                    let name = node.name.as_slice();
                    let dot = name.iter().rposition(|byte| *byte == b'.')?;
                    Some(&name[dot + 1..]).filter(|extension| !extension.is_empty() && node.kind == NodeKind::File)
                })
                .collect();
            let common =
                extensions.first().copied().flatten().filter(|first| extensions.iter().all(|e| e == &Some(*first)));
            // One stream is the dump; several are one dump only when they are SQL,
            // which runs the same whether it comes in one file or several.
            if let Some(extension) = common.filter(|extension| extensions.len() == 1 || *extension == b"sql") {
                let extension = String::from_utf8_lossy(extension).to_ascii_lowercase();
                formats.extend(
                    Compression::ALL.map(|compression| Format::Dump { extension: extension.clone(), compression }),
                );
            }
        }
        formats.extend(Compression::ALL.map(Format::Tar));
        Ok(formats)
    }

    /// The format that the file name of `path` asks for.
    pub fn format_for(&self, path: &Path) -> Result<Format> {
        let name = path.file_name().map(|name| name.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let formats = self.formats()?;
        let mut by_length = formats.clone();
        // The longest ending that matches: `.tar.gz` over `.gz`.
        by_length.sort_by_key(|format| std::cmp::Reverse(format.ending().len()));
        match by_length
            .into_iter()
            .find(|format| name.ends_with(&format.ending()) && name.len() > format.ending().len())
        {
            Some(format) => Ok(format),
            None => Err(Error::ExportFormat {
                element: self.element.name.clone(),
                path: path.to_owned(),
                fits: formats.iter().map(Format::ending).collect(),
            }),
        }
    }

    /// Writes the element to the file `path`, in the format its name asks for.
    /// Refuses to overwrite a file; leaves nothing at `path` unless the whole export
    /// succeeds.
    pub fn to_file(&self, path: &Path, progress: &dyn Progress) -> Result<ExportReport> {
        let format = self.format_for(path)?;
        if fs::symlink_metadata(path).is_ok() {
            return Err(Error::ExportExists { path: path.to_owned() });
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file =
            OpenOptions::new().write(true).create(true).truncate(true).open(&partial).context("creating", &partial)?;
        let written = (|| {
            let mut out = Counter { inner: BufWriter::with_capacity(1 << 20, &file), count: 0 };
            let content_bytes = self.to_writer(&format, &mut out, progress)?;
            out.flush().context("writing", &partial)?;
            let written_bytes = out.count;
            drop(out);
            file.sync_all().context("syncing", &partial)?;
            Ok(ExportReport { format, content_bytes, written_bytes })
        })();
        let report = match written {
            Ok(report) => report,
            Err(error) => {
                let _ = fs::remove_file(&partial);
                return Err(error);
            }
        };
        // Checked again: a file may have appeared while the export ran.
        if fs::symlink_metadata(path).is_ok() {
            let _ = fs::remove_file(&partial);
            return Err(Error::ExportExists { path: path.to_owned() });
        }
        fs::rename(&partial, path).context("renaming", &partial)?;
        let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        crate::store::backend::sync_dir(directory).context("syncing", directory)?;
        Ok(report)
    }

    /// Writes the element in `format` to `out`; returns the bytes of content read.
    pub fn to_writer(&self, format: &Format, out: &mut dyn Write, progress: &dyn Progress) -> Result<u64> {
        progress.begin(&format!("exporting {}", self.element.name), Some(self.element.size));
        let mut exporter =
            Exporter { repository: self.repository, progress, element: &self.element.name, content_bytes: 0 };
        let compression = match format {
            Format::Tar(compression) | Format::Dump { compression, .. } => *compression,
        };
        let mut compressed = compress(out, compression)?;
        match format {
            Format::Tar(_) => {
                crate::restore::check_bounds(self.repository, self.element.tree)?;
                exporter.tar(self.element, self.snapshot.manifest.created, &mut compressed)?
            }
            Format::Dump { .. } => exporter.dump(self.element, &mut compressed)?,
        }
        compressed.finish()?;
        progress.finish();
        Ok(exporter.content_bytes)
    }
}

/// A compressing writer that must be finished explicitly, so its errors are seen.
enum Compressor<'a> {
    None(&'a mut dyn Write),
    Gzip(flate2::write::GzEncoder<&'a mut dyn Write>),
    Zstd(zstd::Encoder<'static, &'a mut dyn Write>),
}

fn compress(out: &mut dyn Write, compression: Compression) -> Result<Compressor<'_>> {
    Ok(match compression {
        Compression::None => Compressor::None(out),
        Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(out, flate2::Compression::default())),
        Compression::Zstd => Compressor::Zstd(zstd::Encoder::new(out, 3).map_err(output_error)?),
    })
}

impl Compressor<'_> {
    fn finish(self) -> Result<()> {
        match self {
            Compressor::None(out) => out.flush(),
            Compressor::Gzip(encoder) => encoder.finish().and_then(|out| out.flush()),
            Compressor::Zstd(encoder) => encoder.finish().and_then(|out| out.flush()),
        }
        .map_err(output_error)
    }
}

impl Write for Compressor<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(out) => out.write(buffer),
            Compressor::Gzip(encoder) => encoder.write(buffer),
            Compressor::Zstd(encoder) => encoder.write(buffer),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(out) => out.flush(),
            Compressor::Gzip(encoder) => encoder.flush(),
            Compressor::Zstd(encoder) => encoder.flush(),
        }
    }
}

/// An error writing the export; an error reading the snapshot inside it is unwrapped.
fn output_error(error: io::Error) -> Error {
    if error.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(Ok(inner)) = error.into_inner().map(|inner| inner.downcast::<Error>()) {
            return *inner;
        }
        return Error::Corrupt { what: "an export".to_owned(), detail: "lost error".to_owned() };
    }
    Error::io("writing", "the export", error)
}

struct Exporter<'a> {
    repository: &'a Repository,
    progress: &'a dyn Progress,
    element: &'a str,
    content_bytes: u64,
}

impl Exporter<'_> {
    fn content(&self, node: &Node) -> Content<'_> {
        Content {
            repository: self.repository,
            progress: self.progress,
            chunks: node.content.clone(),
            next: 0,
            buffer: Vec::new(),
            position: 0,
            expected: node.size,
            read: 0,
        }
    }

    /// A service's streams, in name order, one after the other.
    fn dump(&mut self, element: &Element, out: &mut dyn Write) -> Result<()> {
        let tree = self.repository.read_tree(&element.tree)?;
        let files: Vec<&Node> = tree.nodes.iter().filter(|node| node.kind == NodeKind::File).collect();
        if self.is_mysql_dump(&files)? {
            // Stored one row per line (see `element::service::mysql`), a dump loads one
            // statement per row: ten times slower than the extended inserts that
            // `mariadb-dump` writes by default (187 s against 17.6 s). The export
            // merges the rows as a restore does, so whoever loads it gets that speed.
            let mut joined: Box<dyn Read + '_> = Box::new(io::empty());
            for node in &files {
                joined = Box::new(joined.chain(self.content(node)));
            }
            io::copy(&mut Rebatch::new(joined), out).map_err(output_error)?;
            self.content_bytes += files.iter().map(|node| node.size).sum::<u64>();
            return Ok(());
        }
        for node in files {
            let mut content = self.content(node);
            io::copy(&mut content, out).map_err(output_error)?;
            self.content_bytes += node.size;
        }
        Ok(())
    }

    /// Whether `files` are the streams of envsnap's mysql adapter, by its header.
    fn is_mysql_dump(&self, files: &[&Node]) -> Result<bool> {
        let Some(header) = files.iter().find(|node| node.name == mysql::HEADER_STREAM.as_bytes()) else {
            return Ok(false);
        };
        let mut text = Vec::new();
        self.content(header).take(64 << 10).read_to_end(&mut text).map_err(output_error)?;
        Ok(mysql::is_header(&String::from_utf8_lossy(&text)))
    }

    fn tar(&mut self, element: &Element, created: chrono::DateTime<chrono::Utc>, out: &mut dyn Write) -> Result<()> {
        let mut builder = tar::Builder::new(out);
        let root = PathBuf::from(&element.name);
        // The snapshot keeps no metadata for the element's own folder.
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(u64::try_from(created.timestamp()).unwrap_or(0));
        header.set_size(0);
        builder.append_data(&mut header, &root, io::empty()).map_err(output_error)?;
        let mut first_links = HashMap::new();
        self.tar_tree(&mut builder, &element.tree, &root, &mut first_links)?;
        builder.into_inner().map_err(output_error)?;
        Ok(())
    }

    fn tar_tree(
        &mut self,
        builder: &mut tar::Builder<&mut dyn Write>,
        tree: &ObjectId,
        folder: &Path,
        first_links: &mut HashMap<u64, PathBuf>,
    ) -> Result<()> {
        let tree: Tree = self.repository.read_tree(tree)?;
        for node in &tree.nodes {
            let name = &node.name;
            if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
                return Err(Error::Corrupt {
                    what: format!("element `{}`", self.element),
                    detail: format!("an entry of {} is named {:?}", folder.display(), String::from_utf8_lossy(name)),
                });
            }
            let path = folder.join(OsStr::from_bytes(name));
            let mut header = Header::new_gnu();
            header.set_mode(node.mode);
            header.set_uid(u64::from(node.uid));
            header.set_gid(u64::from(node.gid));
            header.set_mtime(u64::try_from(node.mtime).unwrap_or(0));
            header.set_size(0);
            if node.mtime_nsec != 0 && node.mtime >= 0 {
                append_pax(builder, &[("mtime", format!("{}.{:09}", node.mtime, node.mtime_nsec).as_bytes())])?;
            }
            match node.kind {
                NodeKind::Dir => {
                    header.set_entry_type(EntryType::Directory);
                    builder.append_data(&mut header, &path, io::empty()).map_err(output_error)?;
                    if let Some(subtree) = &node.subtree {
                        self.tar_tree(builder, subtree, &path, first_links)?;
                    }
                }
                NodeKind::Symlink => {
                    header.set_entry_type(EntryType::Symlink);
                    let target = node.target.as_deref().unwrap_or_default();
                    builder.append_link(&mut header, &path, OsStr::from_bytes(target)).map_err(output_error)?;
                }
                NodeKind::File => match first_links.get(&node.inode).filter(|_| node.links > 1) {
                    Some(first) => {
                        header.set_entry_type(EntryType::Link);
                        builder.append_link(&mut header, &path, first).map_err(output_error)?;
                    }
                    None => {
                        if node.links > 1 {
                            first_links.insert(node.inode, path.clone());
                        }
                        header.set_entry_type(EntryType::Regular);
                        header.set_size(node.size);
                        let content = self.content(node);
                        builder.append_data(&mut header, &path, content).map_err(output_error)?;
                        self.content_bytes += node.size;
                    }
                },
            }
        }
        Ok(())
    }
}

/// Writes a PAX extended header that applies to the next entry.
fn append_pax(builder: &mut tar::Builder<&mut dyn Write>, records: &[(&str, &[u8])]) -> Result<()> {
    let data: Vec<u8> = records.iter().flat_map(|(key, value)| pax_record(key, value)).collect();
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    builder.append_data(&mut header, "././@PaxHeader", data.as_slice()).map_err(output_error)
}

/// One PAX record: `<length> <key>=<value>\n`, where the length counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut length = rest;
    while length != rest + length.to_string().len() {
        length = rest + length.to_string().len();
    }
    let mut record = format!("{length} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// Reads a file's chunks in order, each verified against its id, and fails if they do
/// not add up to the size the tree records (a tar entry must be exactly that long).
struct Content<'a> {
    repository: &'a Repository,
    progress: &'a dyn Progress,
    chunks: Vec<ObjectId>,
    next: usize,
    buffer: Vec<u8>,
    position: usize,
    expected: u64,
    read: u64,
}

impl Read for Content<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.position == self.buffer.len() {
            let Some(id) = self.chunks.get(self.next) else {
                if self.read != self.expected {
                    let detail =
                        format!("its chunks hold {} bytes, not the {} it should have", self.read, self.expected);
                    return Err(io::Error::other(Error::Corrupt { what: "a file of the snapshot".to_owned(), detail }));
                }
                return Ok(0);
            };
            self.buffer = self.repository.read_blob(id).map_err(io::Error::other)?;
            self.position = 0;
            self.next += 1;
            self.progress.add_bytes(self.buffer.len() as u64);
        }
        let count = out.len().min(self.buffer.len() - self.position);
        let count = count.min(usize::try_from(self.expected - self.read.min(self.expected)).unwrap_or(usize::MAX));
        if count == 0 {
            let detail = format!("its chunks hold more than the {} bytes it should have", self.expected);
            return Err(io::Error::other(Error::Corrupt { what: "a file of the snapshot".to_owned(), detail }));
        }
        out[..count].copy_from_slice(&self.buffer[self.position..self.position + count]);
        self.position += count;
        self.read += count as u64;
        Ok(count)
    }
}

/// Counts the bytes written through it.
struct Counter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.count += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record("mtime", b"1.5"), b"13 mtime=1.5\n");
        let record = pax_record("mtime", b"1700000000.123456789");
        assert_eq!(record, b"30 mtime=1700000000.123456789\n");
        // Where adding the length's own digits carries it to one more digit.
        let long = pax_record("path", &[b'a'; 91]);
        assert_eq!(long.len().to_string().as_bytes(), &long[..3]);
    }

    #[test]
    fn format_endings() {
        assert_eq!(Format::Tar(Compression::Zstd).ending(), ".tar.zst");
        let sql = Format::Dump { extension: "sql".to_owned(), compression: Compression::Gzip };
        assert_eq!(sql.ending(), ".sql.gz");
    }
}
