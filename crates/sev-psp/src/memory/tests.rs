use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

const P: u64 = PAGE_SIZE;

/// Two contiguous regions (0..3 pages, 3..4 pages), a gap, and one more page.
fn layout() -> Vec<Region> {
    vec![
        Region { gpa: 0, len: 3 * P },
        Region { gpa: 3 * P, len: P },
        Region {
            gpa: 16 * P,
            len: P,
        },
    ]
}

fn setup(key: u8) -> (VecBacking, MemoryState) {
    let regions = layout();
    let backing = VecBacking::new(&regions).unwrap();
    let state = MemoryState::new(&Vek::from_bytes([key; 16]), &regions).unwrap();
    (backing, state)
}

fn random_bytes(rng: &mut impl RngCore, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

fn plain(backing: &VecBacking, gpa: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    backing.read_plain(gpa, &mut v).unwrap();
    v
}

fn view(backing: &VecBacking, state: &MemoryState, gpa: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    host_read(backing, state, gpa, &mut v).unwrap();
    v
}

/// Fills the first four pages with random plaintext; pages 1 and 2 private.
fn populated(rng: &mut impl RngCore) -> (VecBacking, MemoryState, Vec<u8>) {
    let (backing, state) = setup(7);
    let data = random_bytes(rng, 4 * P as usize);
    backing.write_plain(0, &data).unwrap();
    state.mark_private(P, 2 * P).unwrap();
    (backing, state, data)
}

#[test]
fn private_view_is_ciphertext_and_shared_view_is_plaintext() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (backing, state, data) = populated(&mut rng);
    let v = view(&backing, &state, 0, 4 * P as usize);
    let (p, v_page) = (P as usize, |i: usize| {
        &v[i * P as usize..(i + 1) * P as usize]
    });
    assert_eq!(v_page(0), &data[..p], "shared page passes through");
    assert_eq!(v_page(3), &data[3 * p..], "shared page passes through");
    for i in [1, 2] {
        let page = &data[i * p..(i + 1) * p];
        assert_ne!(v_page(i), page);
        // The view is exactly the XTS encryption at that address.
        let mut expected = page.to_vec();
        state.encrypt_at(i as u64 * P, &mut expected).unwrap();
        assert_eq!(v_page(i), &expected[..]);
        // No 16-byte block of the ciphertext equals its plaintext.
        for (c, m) in v_page(i).chunks(16).zip(page.chunks(16)) {
            assert_ne!(c, m);
        }
    }
}

#[test]
fn equal_plaintext_differs_between_pages_blocks_and_keys() {
    let (backing, state) = setup(1);
    let (_, other_key) = setup(2);
    backing.write_plain(0, &vec![0x5a; 2 * P as usize]).unwrap();
    state.mark_private(0, 2 * P).unwrap();
    other_key.mark_private(0, 2 * P).unwrap();
    let v = view(&backing, &state, 0, 2 * P as usize);
    let (page0, page1) = v.split_at(P as usize);
    assert_ne!(page0, page1, "same plaintext, two addresses");
    assert_ne!(
        &page0[..16],
        &page0[16..32],
        "same plaintext, two blocks of one page"
    );
    assert_ne!(v, view(&backing, &other_key, 0, 2 * P as usize), "two keys");
    // Deterministic per key/address/plaintext.
    let (_, same_key) = setup(1);
    same_key.mark_all_private();
    assert_eq!(v, view(&backing, &same_key, 0, 2 * P as usize));
}

#[test]
fn round_trip_host_write_of_host_read_keeps_plaintext() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (backing, state, data) = populated(&mut rng);
    for _ in 0..200 {
        let gpa = rng.gen_range(0..4 * P);
        let len = rng.gen_range(0..=(4 * P - gpa) as usize);
        let mut buf = vec![0u8; len];
        host_read(&backing, &state, gpa, &mut buf).unwrap();
        host_write(&backing, &state, gpa, &buf).unwrap();
        assert_eq!(
            plain(&backing, 0, data.len()),
            data,
            "gpa {gpa:#x} len {len}"
        );
    }
}

#[test]
fn unaligned_reads_are_slices_of_the_page_view() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (backing, state, _) = populated(&mut rng);
    let full = view(&backing, &state, 0, 4 * P as usize);
    let cases = [
        (P + 1, 1),
        (P + 5, 7),
        (P + 15, 2),
        (P + 17, 40),
        (P - 3, 10),
        (2 * P + 4090, 20),
    ];
    for (gpa, len) in cases {
        let start = gpa as usize;
        assert_eq!(
            view(&backing, &state, gpa, len),
            &full[start..start + len],
            "{gpa:#x}+{len}"
        );
    }
    for _ in 0..200 {
        let gpa = rng.gen_range(0..4 * P);
        let len = rng.gen_range(0..=(4 * P - gpa).min(9000) as usize);
        let start = gpa as usize;
        assert_eq!(view(&backing, &state, gpa, len), &full[start..start + len]);
    }
}

/// Model check of unaligned writes: the hypervisor's picture of memory is the
/// host view with the written bytes replaced; the guest's plaintext must be
/// that picture decrypted page by page (shared pages: the picture itself).
#[test]
fn unaligned_writes_match_the_ciphertext_model() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let (backing, state, _) = populated(&mut rng);
    let mut picture = view(&backing, &state, 0, 4 * P as usize);
    for _ in 0..200 {
        let gpa = rng.gen_range(0..4 * P);
        let len = rng.gen_range(0..=(4 * P - gpa).min(5000) as usize);
        let bytes = random_bytes(&mut rng, len);
        host_write(&backing, &state, gpa, &bytes).unwrap();
        picture[gpa as usize..gpa as usize + len].copy_from_slice(&bytes);

        assert_eq!(view(&backing, &state, 0, picture.len()), picture);
        let mut expected = picture.clone();
        for (i, page) in expected.chunks_mut(P as usize).enumerate() {
            if state.is_private(i as u64 * P) {
                state.decrypt_at(i as u64 * P, page).unwrap();
            }
        }
        assert_eq!(plain(&backing, 0, expected.len()), expected);
    }
}

#[test]
fn partial_block_write_changes_only_that_block() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (backing, state, data) = populated(&mut rng);
    let gpa = P + 0x105; // inside block 0x10 of page 1
    let mut c = view(&backing, &state, gpa, 3);
    c[1] ^= 1;
    host_write(&backing, &state, gpa, &c).unwrap();
    let now = plain(&backing, 0, data.len());
    let block = (P + 0x100) as usize..(P + 0x110) as usize;
    assert_ne!(
        now[block.clone()],
        data[block.clone()],
        "garbage in the written block"
    );
    assert_eq!(now[..block.start], data[..block.start]);
    assert_eq!(now[block.end..], data[block.end..]);
}

#[test]
fn ciphertext_moved_to_another_page_or_block_is_garbage() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (backing, state, data) = populated(&mut rng);
    let p = P as usize;
    let c1 = view(&backing, &state, P, p);
    // Replay page 1's ciphertext into page 2.
    host_write(&backing, &state, 2 * P, &c1).unwrap();
    let page2 = plain(&backing, 2 * P, p);
    assert_ne!(page2, data[p..2 * p]);
    for (a, b) in page2.chunks(16).zip(data[p..2 * p].chunks(16)) {
        assert_ne!(a, b, "every block is garbage");
    }
    // Swap two blocks inside page 1.
    let mut swapped = c1.clone();
    swapped[..16].copy_from_slice(&c1[16..32]);
    swapped[16..32].copy_from_slice(&c1[..16]);
    host_write(&backing, &state, P, &swapped).unwrap();
    let page1 = plain(&backing, P, p);
    assert_ne!(page1[..16], data[p + 16..p + 32]);
    assert_ne!(page1[16..32], data[p..p + 16]);
    assert_eq!(page1[32..], data[p + 32..2 * p]);
}

#[test]
fn shared_pages_pass_through_writes() {
    let (backing, state) = setup(3);
    state.mark_private(P, P).unwrap();
    host_write(&backing, &state, 100, b"hello").unwrap();
    assert_eq!(plain(&backing, 100, 5), b"hello");
    // A write spanning shared page 0 and private page 1.
    host_write(&backing, &state, P - 2, b"abcd").unwrap();
    assert_eq!(plain(&backing, P - 2, 2), b"ab");
    assert_ne!(plain(&backing, P, 2), b"cd");
    assert_eq!(view(&backing, &state, P - 2, 4), b"abcd");
}

#[test]
fn accesses_span_contiguous_regions_only() {
    let (backing, state) = setup(4);
    state.mark_all_private();
    let data: Vec<u8> = (0..64).collect();
    // Region 0 ends at 3 pages, region 1 starts there: contiguous.
    host_write(&backing, &state, 3 * P - 32, &data).unwrap();
    assert_eq!(view(&backing, &state, 3 * P - 32, 64), data);
    // Region 1 ends at 4 pages, region 2 starts at 16: a gap.
    let err = host_read(&backing, &state, 4 * P - 8, &mut [0u8; 16]).unwrap_err();
    assert_eq!(
        err,
        MemoryError::OutOfRange(OutOfRange {
            gpa: 4 * P - 8,
            len: 16
        })
    );
}

#[test]
fn out_of_range_accesses_fail_without_side_effects() {
    let (backing, state) = setup(5);
    state.mark_all_private();
    let before = plain(&backing, 0, 4 * P as usize);
    let cases: [(u64, usize); 5] = [
        (4 * P, 1),
        (4 * P - 1, 2),
        (17 * P - 1, 2),
        (u64::MAX - 3, 8),
        (8 * P, 0x10),
    ];
    for (gpa, len) in cases {
        let want = MemoryError::OutOfRange(OutOfRange {
            gpa,
            len: len as u64,
        });
        assert_eq!(
            host_read(&backing, &state, gpa, &mut vec![0; len]),
            Err(want.clone())
        );
        assert_eq!(
            host_write(&backing, &state, gpa, &vec![1; len]),
            Err(want.clone())
        );
        assert_eq!(
            firmware_read(&backing, gpa, &mut vec![0; len]),
            Err(want.clone())
        );
        assert_eq!(
            firmware_write(&backing, gpa, &vec![1; len]),
            Err(want.clone())
        );
    }
    // Starts inside, runs out: nothing written.
    assert!(host_write(&backing, &state, 4 * P - 10, &[9; 20]).is_err());
    assert!(firmware_write(&backing, 4 * P - 10, &[9; 20]).is_err());
    assert_eq!(plain(&backing, 0, 4 * P as usize), before);
    assert!(state.mark_private(4 * P, 1).is_err());
    // Zero-length accesses touch nothing and succeed.
    host_read(&backing, &state, u64::MAX, &mut []).unwrap();
}

#[test]
fn firmware_access_is_plaintext() {
    let (backing, state) = setup(6);
    state.mark_all_private();
    firmware_write(&backing, 0x1234, b"secret").unwrap();
    let mut buf = [0u8; 6];
    firmware_read(&backing, 0x1234, &mut buf).unwrap();
    assert_eq!(&buf, b"secret");
    assert_ne!(view(&backing, &state, 0x1234, 6), b"secret");
}

#[test]
fn dbg_encrypt_and_decrypt() {
    let (backing, state) = setup(8);
    encrypt_for_guest(&backing, &state, P + 0x20, &[0xcc; 32]).unwrap();
    assert!(state.is_private(P));
    assert_eq!(state.private_pages(), 1);
    assert_eq!(plain(&backing, P + 0x20, 32), vec![0xcc; 32]);
    let mut out = [0u8; 32];
    decrypt_from_guest(&backing, &state, P + 0x20, &mut out).unwrap();
    assert_eq!(out, [0xcc; 32]);
    // A shared page holds clear bytes: decrypting them yields garbage.
    backing.write_plain(0x40, &[0xdd; 16]).unwrap();
    let mut shared = [0u8; 16];
    decrypt_from_guest(&backing, &state, 0x40, &mut shared).unwrap();
    let mut expected = [0xdd; 16];
    state.decrypt_at(0x40, &mut expected).unwrap();
    assert_eq!(shared, expected);
    assert_ne!(shared, [0xdd; 16]);
    // 16-byte granularity.
    assert_eq!(
        decrypt_from_guest(&backing, &state, 0x41, &mut [0; 16]),
        Err(MemoryError::Misaligned { gpa: 0x41, len: 16 })
    );
    assert_eq!(
        encrypt_for_guest(&backing, &state, 0x40, &[0; 15]),
        Err(MemoryError::Misaligned { gpa: 0x40, len: 15 })
    );
    assert!(encrypt_for_guest(&backing, &state, 4 * P - 16, &[0; 32]).is_err());
    assert_eq!(state.private_pages(), 1);
}

#[test]
fn encrypt_at_round_trips_across_pages() {
    let (_, state) = setup(9);
    let original: Vec<u8> = (0..3 * P as usize).map(|i| (i * 7) as u8).collect();
    let mut data = original.clone();
    state.encrypt_at(P - 0x30, &mut data).unwrap();
    assert_ne!(data, original);
    state.decrypt_at(P - 0x30, &mut data).unwrap();
    assert_eq!(data, original);
}

#[test]
fn region_validation() {
    let bad = [
        (
            vec![Region { gpa: 0, len: 0 }],
            MemoryError::InvalidRegion { gpa: 0, len: 0 },
        ),
        (
            vec![Region { gpa: 1, len: P }],
            MemoryError::InvalidRegion { gpa: 1, len: P },
        ),
        (
            vec![Region { gpa: 0, len: P + 1 }],
            MemoryError::InvalidRegion { gpa: 0, len: P + 1 },
        ),
        (
            vec![Region {
                gpa: u64::MAX - P + 1,
                len: 2 * P,
            }],
            MemoryError::InvalidRegion {
                gpa: u64::MAX - P + 1,
                len: 2 * P,
            },
        ),
        (
            vec![Region { gpa: 0, len: 2 * P }, Region { gpa: P, len: P }],
            MemoryError::OverlappingRegions {
                first: 0,
                second: P,
            },
        ),
        (
            vec![Region { gpa: 2 * P, len: P }, Region { gpa: 0, len: P }],
            MemoryError::OverlappingRegions {
                first: 2 * P,
                second: 0,
            },
        ),
    ];
    for (regions, want) in bad {
        assert_eq!(VecBacking::new(&regions).unwrap_err(), want);
        assert_eq!(
            MemoryState::new(&Vek::from_bytes([0; 16]), &regions).unwrap_err(),
            want
        );
    }
    // A region must end inside the address space: the last page is refused
    // (its end is not representable), the one below it is fine.
    let last = [Region {
        gpa: u64::MAX - P + 1,
        len: P,
    }];
    assert!(validate_regions(&last).is_err());
    let top = [Region {
        gpa: u64::MAX - 2 * P + 1,
        len: P,
    }];
    validate_regions(&top).unwrap();
    let state = MemoryState::new(&Vek::from_bytes([0; 16]), &top).unwrap();
    state.mark_private(u64::MAX - P - 15, 16).unwrap();
    assert!(state.is_private(u64::MAX - P));
    assert!(top[0].contains(u64::MAX - P) && !top[0].contains(u64::MAX - P + 1));
}

#[test]
fn pieces_split_accesses() {
    let regions = layout();
    let got: Vec<Piece> = pieces(&regions, 3 * P - 4, 8).unwrap().collect();
    assert_eq!(
        got,
        vec![
            Piece {
                index: 0,
                offset: 3 * P - 4,
                len: 4,
                buf_offset: 0
            },
            Piece {
                index: 1,
                offset: 0,
                len: 4,
                buf_offset: 4
            },
        ]
    );
    assert_eq!(pieces(&regions, 16 * P, P).unwrap().count(), 1);
    assert!(pieces(&regions, 16 * P, P + 1).is_err());
    assert!(pieces(&regions, 5 * P, 1).is_err());
    assert_eq!(pieces(&regions, 5 * P, 0).unwrap().count(), 0);
}

#[test]
fn debug_output_is_redacted() {
    let (backing, state) = setup(0xab);
    let shown = format!("{state:?} {backing:?}");
    assert!(shown.contains("<redacted>"));
    assert!(!shown.contains("171"), "{shown}");
}
