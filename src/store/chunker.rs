//! Content-defined chunking (FastCDC).
//!
//! Cut points depend on the content, not on offsets, so an insertion early in a file
//! changes only the chunks around it and the rest deduplicate. The sizes are recorded
//! in the repository's config so that every writer cuts the same way.

use serde::{Deserialize, Serialize};

/// FastCDC's normalization level: level 1 is what `FastCDC::new` uses, so format-1
/// repositories cut as they always did.
const LEVEL: fastcdc::v2020::Normalization = fastcdc::v2020::Normalization::Level1;

/// The chunk sizes of a repository, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is smaller, except a file's last.
    pub min: u32,
    /// The size chunks average on random data.
    pub avg: u32,
    /// No chunk is larger.
    pub max: u32,
    /// Keys the cut points (FastCDC's gear table is XOR'ed with it): derived from an
    /// encrypted repository's keys, so chunk sizes do not fingerprint known files.
    /// 0, FastCDC's own table, when unencrypted. Never written to `config.json`.
    #[serde(skip)]
    pub seed: u64,
}

impl Default for ChunkerParams {
    /// 256 KiB / 1 MiB / 4 MiB: see docs/FORMAT.md for the measurements behind them.
    fn default() -> Self {
        ChunkerParams { min: 256 << 10, avg: 1 << 20, max: 4 << 20, seed: 0 }
    }
}

impl ChunkerParams {
    /// True when FastCDC accepts these sizes.
    pub fn is_valid(&self) -> bool {
        (fastcdc::v2020::MINIMUM_MIN..=fastcdc::v2020::MINIMUM_MAX).contains(&self.min)
            && (fastcdc::v2020::AVERAGE_MIN..=fastcdc::v2020::AVERAGE_MAX).contains(&self.avg)
            && (fastcdc::v2020::MAXIMUM_MIN..=fastcdc::v2020::MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max
    }

    /// The chunks of `data`, in order, as slices of it.
    pub fn cut<'a>(&self, data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        fastcdc::v2020::FastCDC::with_level_and_seed(data, self.min, self.avg, self.max, LEVEL, self.seed)
            .map(move |chunk| &data[chunk.offset..chunk.offset + chunk.length])
    }

    /// A chunker over `source`.
    pub fn stream<R: std::io::Read>(&self, source: R) -> fastcdc::v2020::StreamCDC<R> {
        fastcdc::v2020::StreamCDC::with_level_and_seed(source, self.min, self.avg, self.max, LEVEL, self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insertion_changes_only_nearby_chunks() -> Result<(), fastcdc::v2020::Error> {
        let params = ChunkerParams { min: 4096, avg: 16384, max: 65536, seed: 0 };
        assert!(params.is_valid());
        assert!(ChunkerParams::default().is_valid());
        let mut state = 7u64;
        let data: Vec<u8> = (0..2_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut changed = data[..1000].to_vec();
        changed.extend_from_slice(b"inserted");
        changed.extend_from_slice(&data[1000..]);
        let hashes = |bytes: &[u8]| -> Result<Vec<_>, fastcdc::v2020::Error> {
            params.stream(bytes).map(|chunk| chunk.map(|c| blake3::hash(&c.data))).collect()
        };
        let before = hashes(&data)?;
        let sliced: Vec<_> = params.cut(&data).map(blake3::hash).collect();
        assert_eq!(sliced, before, "slice and stream chunkers cut alike");
        assert_eq!(params.cut(&[]).count(), 0);
        let after = hashes(&changed)?;
        let shared = after.iter().filter(|hash| before.contains(hash)).count();
        assert!(shared + 2 >= before.len(), "{shared} of {} chunks shared", before.len());
        // Seed 0 is FastCDC's unkeyed chunker: format-1 repositories cut as before.
        let unkeyed: Vec<_> =
            fastcdc::v2020::FastCDC::new(&data, 4096, 16384, 65536).map(|c| c.offset + c.length).collect();
        let ends: Vec<_> =
            params.cut(&data).scan(0, |end, chunk| Some(*end + chunk.len()).inspect(|e| *end = *e)).collect();
        assert_eq!(ends, unkeyed);
        Ok(())
    }

    #[test]
    fn a_seed_moves_the_cut_points_alike_in_both_chunkers() -> Result<(), fastcdc::v2020::Error> {
        let mut state = 11u64;
        let data: Vec<u8> = (0..3_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let unkeyed = ChunkerParams { min: 4096, avg: 16384, max: 65536, seed: 0 };
        let keyed = ChunkerParams { seed: 0x5eed_cafe_f00d_0001, ..unkeyed };
        let lengths = |params: &ChunkerParams| -> Vec<usize> { params.cut(&data).map(<[u8]>::len).collect() };
        let streamed: Vec<usize> =
            keyed.stream(data.as_slice()).map(|c| c.map(|c| c.length)).collect::<Result<_, _>>()?;
        assert_eq!(lengths(&keyed), streamed, "slice and stream chunkers cut alike with a seed");
        assert_ne!(lengths(&keyed), lengths(&unkeyed), "the seed changes the cut points");
        Ok(())
    }
}
