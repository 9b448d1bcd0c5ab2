//! The private-page map: one bit per 4 KiB page of each guest-memory region.
//!
//! Bits are atomics so the firmware can mark pages private while VMM threads
//! read the host view concurrently, without a lock on the read path.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{pieces, validate_regions, MemoryError, OutOfRange, Region, PAGE_SHIFT, PAGE_SIZE};

#[derive(Debug)]
struct TrackedRegion {
    region: Region,
    /// Bit `i % 64` of word `i / 64` is page `i` of the region.
    bits: Box<[AtomicU64]>,
    pages: u64,
}

/// Which pages of guest memory are private (encrypted with the guest's key).
#[derive(Debug)]
pub(crate) struct PageMap {
    regions: Vec<Region>,
    tracked: Vec<TrackedRegion>,
}

/// The mask of the valid bits of word `word` of a region with `pages` pages.
fn word_mask(word: u64, pages: u64) -> u64 {
    let first = word.saturating_mul(64);
    let valid = pages.saturating_sub(first).min(64);
    if valid == 64 {
        u64::MAX
    } else {
        (1u64 << valid) - 1
    }
}

impl PageMap {
    /// An all-shared map over `regions` (validated as for
    /// [`super::VecBacking::new`]).
    pub(crate) fn new(regions: &[Region]) -> Result<Self, MemoryError> {
        validate_regions(regions)?;
        let mut tracked = Vec::with_capacity(regions.len());
        for region in regions {
            let pages = region.len >> PAGE_SHIFT;
            let words =
                usize::try_from(pages.div_ceil(64)).map_err(|_| MemoryError::RegionTooLarge {
                    gpa: region.gpa,
                    len: region.len,
                })?;
            tracked.push(TrackedRegion {
                region: *region,
                bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
                pages,
            });
        }
        Ok(Self {
            regions: regions.to_vec(),
            tracked,
        })
    }

    pub(crate) fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The word and bit of the page containing `gpa`, if tracked.
    fn locate(&self, gpa: u64) -> Option<(&AtomicU64, u64)> {
        let idx = self
            .tracked
            .partition_point(|t| t.region.gpa <= gpa)
            .checked_sub(1)?;
        let t = self.tracked.get(idx)?;
        let page = (gpa - t.region.gpa) >> PAGE_SHIFT;
        if page >= t.pages {
            return None;
        }
        let word = t.bits.get(usize::try_from(page / 64).ok()?)?;
        Some((word, 1u64 << (page % 64)))
    }

    /// Whether the page containing `gpa` is private. Untracked addresses are
    /// shared.
    #[inline]
    pub(crate) fn is_private(&self, gpa: u64) -> bool {
        self.locate(gpa)
            .is_some_and(|(word, bit)| word.load(Ordering::Acquire) & bit != 0)
    }

    /// Sets every page overlapping `[gpa, gpa + len)` to `private`. The whole
    /// range must be tracked (checked before anything changes).
    pub(crate) fn set_range(&self, gpa: u64, len: u64, private: bool) -> Result<(), MemoryError> {
        let pieces = pieces(&self.regions, gpa, len)?;
        for piece in pieces {
            let Some(t) = self.tracked.get(piece.index) else {
                return Err(OutOfRange { gpa, len }.into());
            };
            let first = piece.offset >> PAGE_SHIFT;
            // piece.len >= 1 and offset + len <= region.len, so this is in range.
            let last = (piece.offset + piece.len - 1) >> PAGE_SHIFT;
            for page in first..=last {
                let Some(word) = usize::try_from(page / 64).ok().and_then(|w| t.bits.get(w)) else {
                    return Err(OutOfRange { gpa, len }.into());
                };
                let bit = 1u64 << (page % 64);
                if private {
                    word.fetch_or(bit, Ordering::AcqRel);
                } else {
                    word.fetch_and(!bit, Ordering::AcqRel);
                }
            }
        }
        Ok(())
    }

    /// Sets every tracked page to `private`.
    pub(crate) fn set_all(&self, private: bool) {
        for t in &self.tracked {
            for (w, word) in (0u64..).zip(t.bits.iter()) {
                let value = if private { word_mask(w, t.pages) } else { 0 };
                word.store(value, Ordering::Release);
            }
        }
    }

    /// Number of private pages.
    pub(crate) fn count_private(&self) -> u64 {
        self.tracked
            .iter()
            .flat_map(|t| t.bits.iter())
            .map(|w| u64::from(w.load(Ordering::Acquire).count_ones()))
            .sum()
    }
}

/// Pages are 4 KiB; checked here so a change of `PAGE_SIZE` cannot silently
/// desynchronise it from `PAGE_SHIFT`.
const _: () = assert!(PAGE_SIZE == 1 << PAGE_SHIFT);

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> PageMap {
        PageMap::new(&[
            Region {
                gpa: 0,
                len: 65 * PAGE_SIZE,
            },
            Region {
                gpa: 0x10_0000,
                len: 2 * PAGE_SIZE,
            },
        ])
        .unwrap()
    }

    #[test]
    fn set_range_marks_every_overlapping_page() {
        let m = map();
        m.set_range(PAGE_SIZE - 1, 2, true).unwrap();
        assert!(m.is_private(0) && m.is_private(PAGE_SIZE));
        assert!(!m.is_private(2 * PAGE_SIZE));
        assert_eq!(m.count_private(), 2);
        m.set_range(64 * PAGE_SIZE, 1, true).unwrap();
        assert!(m.is_private(64 * PAGE_SIZE + 4095));
        m.set_range(0, 1, false).unwrap();
        assert!(!m.is_private(0));
        assert_eq!(m.count_private(), 2);
    }

    #[test]
    fn set_all_counts_exactly_the_tracked_pages() {
        let m = map();
        m.set_all(true);
        assert_eq!(m.count_private(), 67);
        assert!(
            !m.is_private(65 * PAGE_SIZE),
            "gap is untracked, hence shared"
        );
        m.set_all(false);
        assert_eq!(m.count_private(), 0);
    }

    #[test]
    fn out_of_range_changes_nothing() {
        let m = map();
        // Runs from the end of region 0 into the gap.
        let err = m
            .set_range(64 * PAGE_SIZE, 2 * PAGE_SIZE, true)
            .unwrap_err();
        assert_eq!(
            err,
            MemoryError::OutOfRange(OutOfRange {
                gpa: 64 * PAGE_SIZE,
                len: 2 * PAGE_SIZE
            })
        );
        assert_eq!(m.count_private(), 0);
        assert!(m.set_range(u64::MAX, 2, true).is_err());
    }

    #[test]
    fn word_masks() {
        assert_eq!(word_mask(0, 65), u64::MAX);
        assert_eq!(word_mask(1, 65), 1);
        assert_eq!(word_mask(0, 3), 0b111);
        assert_eq!(word_mask(2, 65), 0);
    }
}
