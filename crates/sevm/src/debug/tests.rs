use std::collections::HashMap;

use super::*;

#[test]
fn ranges_split_at_page_boundaries() {
    let v: Vec<_> = page_pieces(0xFF0, 0x1020).collect();
    assert_eq!(
        v,
        vec![
            (0xFF0, 0, 0x10),
            (0x1000, 0x10, 0x1000),
            (0x2000, 0x1010, 0x10)
        ]
    );
    assert_eq!(page_pieces(0x1000, 0).count(), 0);
    let v: Vec<_> = page_pieces(0x1003, 5).collect();
    assert_eq!(v, vec![(0x1003, 0, 5)]);
}

/// Page-table memory as a map of 8-byte little-endian words.
struct Tables(HashMap<u64, u64>);

impl Tables {
    fn read(&self, gpa: u64, size: usize) -> Result<u64, DebugError> {
        let v = self.0.get(&gpa).copied().unwrap_or(0);
        Ok(if size == 4 { v & 0xFFFF_FFFF } else { v })
    }
}

fn paging(cr3: u64, pae: bool, long_mode: bool) -> Paging {
    Paging {
        enabled: true,
        cr3,
        pae,
        pse: true,
        long_mode,
        la57: false,
        addr_mask: 0x000F_FFFF_FFFF_F000 & !(1 << 47),
    }
}

#[test]
fn paging_off_is_identity() {
    let p = Paging {
        enabled: false,
        ..paging(0, false, false)
    };
    let t = Tables(HashMap::new());
    assert_eq!(
        translate(&p, 0x1234_5678, |a, s| t.read(a, s)).unwrap(),
        0x1234_5678
    );
}

#[test]
fn walks_32bit_pae_and_4_level_tables() {
    // 32-bit: PDE[1] -> PT at 0x3000, PTE[2] -> 0x7000; PDE[2] is a 4 MiB page.
    let t = Tables(HashMap::from([
        (0x2000 + 4, 0x3000 | 1),
        (0x3000 + 2 * 4, 0x7000 | 1),
        (0x2000 + 2 * 4, 0x0140_0000 | 0x81),
    ]));
    let p = paging(0x2000, false, false);
    let r = |a, s| t.read(a, s);
    assert_eq!(translate(&p, 0x0040_2abc, r).unwrap(), 0x7abc);
    assert_eq!(translate(&p, 0x0081_2345, r).unwrap(), 0x0141_2345);
    assert!(matches!(
        translate(&p, 0x00C0_0000, r),
        Err(DebugError::NotMapped { .. })
    ));

    // 4-level, entries carrying the C-bit (47), a 2 MiB page at PD[1].
    let c = 1u64 << 47;
    let t = Tables(HashMap::from([
        (0x1000, 0x2000 | c | 1),
        (0x2000, 0x3000 | c | 1),
        (0x3000, 0x4000 | c | 1),
        (0x4000 + 5 * 8, 0x9000 | c | 1),
        (0x3000 + 8, 0x0060_0000 | c | 0x81),
    ]));
    let p = paging(0x1000 | c, true, true);
    let r = |a, s| t.read(a, s);
    assert_eq!(translate(&p, 0x5123, r).unwrap(), 0x9123);
    assert_eq!(translate(&p, 0x0020_1234, r).unwrap(), 0x0060_1234);

    // PAE: PDPTE[0] -> PD at 0x2000, PD[0] -> PT 0x3000, PT[1] -> 0x8000.
    let t = Tables(HashMap::from([
        (0x1000, 0x2000 | 1),
        (0x2000, 0x3000 | 1),
        (0x3000 + 8, 0x8000 | 1),
    ]));
    let p = paging(0x1000, true, false);
    assert_eq!(translate(&p, 0x1fed, |a, s| t.read(a, s)).unwrap(), 0x8fed);
}

#[test]
fn page_walk_errors_name_the_virtual_address() {
    let p = paging(0x1000, true, true);
    let e = translate(&p, 0xdead_0000, |gpa, _| {
        Err(DebugError::OutOfRange { gpa, len: 8 })
    })
    .unwrap_err();
    assert!(matches!(
        e,
        DebugError::PageWalk {
            vaddr: 0xdead_0000,
            ..
        }
    ));
    assert_eq!(
        hmp::error_text(&e),
        "cannot walk the page tables for virtual address 0xdead0000: \
         guest physical range 0x1000+0x8 is not inside guest memory"
    );
}
