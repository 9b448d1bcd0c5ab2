use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};

use super::record::tests::sample_identity;
use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn temp_dir() -> (tempfile::TempDir, StateDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::open(tmp.path().join("platform"), true).unwrap();
    (tmp, dir)
}

#[test]
fn open_creates_a_0700_directory_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a/b");
    assert!(matches!(
        StateDir::open(&path, false),
        Err(StoreError::Missing { .. })
    ));
    let dir = StateDir::open(&path, true).unwrap();
    assert_eq!(dir.path(), path);
    assert_eq!(mode(&path), 0o700);
    StateDir::open(&path, false).unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        StateDir::open(&file, true),
        Err(StoreError::NotADirectory { .. })
    ));
}

/// An existing directory that others may write to, or that belongs to
/// another user, is refused (with or without `create`); its mode is never
/// changed silently. Read/execute bits for others are fine.
#[test]
fn open_refuses_a_directory_that_is_not_private() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("p");
    fs::create_dir(&path).unwrap();
    for (m, who) in [
        (0o777, "other users"),
        (0o1777, "other users"),
        (0o722, "other users"),
        (0o770, "its group"),
        (0o730, "its group"),
    ] {
        fs::set_permissions(&path, Permissions::from_mode(m)).unwrap();
        for create in [false, true] {
            let e = StateDir::open(&path, create).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, StoreError::Insecure { .. }), "{text}");
            assert!(text.contains(&format!("mode {m:o}")), "{text}");
            assert!(text.contains(who), "{text}");
            assert!(text.contains("chmod 700"), "{text}");
            assert!(text.contains(path.to_str().unwrap()), "{text}");
        }
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            m
        );
    }
    for m in [0o700, 0o755, 0o750, 0o500] {
        fs::set_permissions(&path, Permissions::from_mode(m)).unwrap();
        StateDir::open(&path, false).unwrap();
    }
    fs::set_permissions(&path, Permissions::from_mode(0o700)).unwrap();
    let meta = fs::metadata(&path).unwrap();
    let other = effective_uid().wrapping_add(1);
    let text = check_private(&path, &meta, other).unwrap_err().to_string();
    assert!(text.contains("owned by uid"), "{text}");
    assert!(
        text.contains(&format!("not by this user (uid {other})")),
        "{text}"
    );
    assert!(text.contains("chown"), "{text}");
}

#[test]
fn atomic_write_and_read() {
    let (_tmp, dir) = temp_dir();
    assert_eq!(dir.read("identity").unwrap(), None);
    dir.write_atomic("identity", b"first").unwrap();
    dir.write_atomic("identity", b"second").unwrap();
    assert_eq!(
        dir.read("identity").unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(mode(&dir.path().join("identity")), 0o600);
    // No temp files left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["identity".to_string()]);
    assert!(dir.remove("identity").unwrap());
    assert!(!dir.remove("identity").unwrap());
}

#[test]
fn state_and_lock_files_are_0600() {
    let (_tmp, dir) = temp_dir();
    dir.write_sealed("state", b"x").unwrap();
    let _lock = dir.lock().unwrap();
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&dir.path().join("state")), 0o600);
    assert_eq!(mode(&dir.path().join(LOCK_FILE)), 0o600);
}

#[test]
fn names_are_checked() {
    let (_tmp, dir) = temp_dir();
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "",
        ".lock",
        "../x",
        "a/b",
        "-x",
        "é",
        long.as_str(),
        ".identity.tmp-1-1",
    ] {
        assert!(
            matches!(
                dir.write_atomic(bad, b"x"),
                Err(StoreError::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(matches!(dir.read(bad), Err(StoreError::InvalidName { .. })));
    }
    dir.write_atomic("a.b_c-9", b"x").unwrap();
}

#[test]
fn size_limits() {
    let (_tmp, dir) = temp_dir();
    let big = vec![0u8; MAX_FILE_LEN + 1];
    assert!(matches!(
        dir.write_atomic("big", &big),
        Err(StoreError::TooLarge { .. })
    ));
    assert!(matches!(
        dir.write_sealed("big", &big),
        Err(StoreError::TooLarge { .. })
    ));
    fs::write(dir.path().join("big"), &big).unwrap();
    assert!(matches!(dir.read("big"), Err(StoreError::TooLarge { .. })));
}

#[test]
fn sealed_identity_round_trips_through_the_directory() {
    let (_tmp, dir) = temp_dir();
    let id = sample_identity(10);
    dir.write_sealed("identity", &id.encode().unwrap()).unwrap();
    let payload = dir.read_sealed("identity").unwrap().unwrap();
    assert_eq!(PersistentIdentity::decode(&payload).unwrap(), id);
    assert_eq!(dir.read_sealed("absent").unwrap(), None);
}

#[test]
fn every_truncation_and_byte_flip_is_damage() {
    let id = sample_identity(11);
    let file = sealed::seal(&id.encode().unwrap()).unwrap();
    // Exhaustively on the bytes.
    for len in 0..file.len() {
        assert!(
            sealed::open_sealed(&file[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut copy = file.to_vec();
    for i in 0..copy.len() {
        // Alternate single-bit and whole-byte flips across positions.
        let mask = if i % 2 == 0 { 0xff } else { 1 << (i / 2 % 8) };
        copy[i] ^= mask;
        assert!(sealed::open_sealed(&copy).is_err(), "byte {i} ^ {mask:#x}");
        copy[i] ^= mask;
    }
    // Through the directory, on a spread of positions: reported as damage,
    // and the damaged file is left exactly as it was.
    let (_tmp, dir) = temp_dir();
    let path = dir.path().join("identity");
    for i in (0..file.len()).step_by(487).chain([file.len() - 1]) {
        let mut damaged = file.to_vec();
        damaged[i] ^= 0x10;
        fs::write(&path, &damaged).unwrap();
        let err = dir.read_sealed("identity").unwrap_err();
        assert!(err.is_damaged(), "byte {i}: {err}");
        fs::write(&path, &file[..i]).unwrap();
        assert!(
            dir.read_sealed("identity").unwrap_err().is_damaged(),
            "prefix {i}"
        );
        assert_eq!(fs::read(&path).unwrap(), &file[..i]);
    }
    let mut trailing = file.to_vec();
    trailing.push(0);
    fs::write(&path, &trailing).unwrap();
    assert!(matches!(
        dir.read_sealed("identity"),
        Err(StoreError::Damaged {
            source: SealError::TrailingBytes { extra: 1 },
            ..
        })
    ));
}

#[test]
fn the_lock_is_exclusive_between_descriptors() {
    let (_tmp, dir) = temp_dir();
    let guard = dir.lock().unwrap();
    let other = File::open(dir.path().join(LOCK_FILE)).unwrap();
    assert!(other.try_lock().is_err(), "held by the guard");
    drop(guard);
    other.try_lock().unwrap();
    other.unlock().unwrap();
}

/// Two writers (each with its own handle, as two processes would have) do
/// read-modify-write increments under the lock while a third thread reads
/// without it: no update is lost and no read ever sees a torn file.
#[test]
fn concurrent_writers_serialise() {
    const PER_WRITER: u64 = 40;
    let (_tmp, dir) = temp_dir();
    dir.write_sealed("counter", &0u64.to_le_bytes()).unwrap();
    let start = Arc::new(Barrier::new(3));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let dir = StateDir::open(dir.path(), false).unwrap();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..PER_WRITER {
                    dir.locked(|d| -> Result<(), StoreError> {
                        let payload = d.read_sealed("counter")?.unwrap();
                        let n = u64::from_le_bytes(payload.as_slice().try_into().unwrap());
                        d.write_sealed("counter", &(n + 1).to_le_bytes())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let dir = dir.clone();
        let start = Arc::clone(&start);
        std::thread::spawn(move || {
            start.wait();
            let mut last = 0;
            while last < 2 * PER_WRITER {
                let payload = dir.read_sealed("counter").unwrap().unwrap();
                let n = u64::from_le_bytes(payload.as_slice().try_into().unwrap());
                assert!(n >= last, "counter went backwards: {n} < {last}");
                last = n;
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
    let payload = dir.read_sealed("counter").unwrap().unwrap();
    assert_eq!(payload.as_slice(), (2 * PER_WRITER).to_le_bytes());
}
