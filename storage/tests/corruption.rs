//! Damaged files: every flipped byte of a chunk file, and sampled bytes of the catalog's SST
//! files, give an error (at open or at scan), a quarantined chunk (at open) or the correct
//! rows; never a panic or wrong rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isobar_storage::{Storage, WriteBatch};

use crate::common::{Fields, Key, config, point, read_all};

fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list").map(|e| e.expect("entry").path()) {
        if entry.is_dir() {
            out.extend(files_under(&entry, keep));
        } else if keep(&entry) {
            out.push(entry);
        }
    }
    out.sort();
    out
}

fn setup(dir: &Path) -> BTreeMap<Key, Fields> {
    let storage = Storage::open(config(dir)).expect("open");
    let mut batch = WriteBatch::new();
    for t in 0..40 {
        batch.push("m", point(&format!("s{}", t % 3), t * 10_000, Some(t as f64 * 0.5), (t % 4 == 0).then_some(t)));
    }
    storage.write(&batch).expect("write");
    storage.persist().expect("persist");
    let expected = read_all(&storage, "m").expect("scan");
    storage.close(false).expect("close");
    expected
}

/// Flips bit `bit` of byte `at` in `file`, opens and scans, and restores the byte.
fn check_flip(dir: &Path, file: &Path, at: usize, bit: u8, expected: &BTreeMap<Key, Fields>) {
    let original = std::fs::read(file).expect("read");
    let mut damaged = original.clone();
    damaged[at] ^= 1 << bit;
    std::fs::write(file, &damaged).expect("write");
    let outcome = Storage::open(config(dir)).and_then(|s| {
        let rows = read_all(&s, "m");
        let quarantined = s.quarantined();
        s.close(false)?;
        Ok((rows?, quarantined))
    });
    std::fs::write(file, &original).expect("restore");
    let _ = std::fs::remove_dir_all(dir.join("quarantine"));
    match outcome {
        // A chunk set aside at open: the rows left are right, the damaged chunk's are missing.
        Ok((rows, quarantined)) if !quarantined.is_empty() => {
            assert!(rows.iter().all(|(k, v)| expected.get(k) == Some(v)), "{} byte {at} bit {bit} gave wrong rows", file.display());
        }
        Ok((rows, _)) => assert_eq!(&rows, expected, "{} byte {at} bit {bit} gave wrong rows", file.display()),
        Err(_) => {}
    }
}

#[test]
fn every_flipped_chunk_byte_is_an_error_or_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = setup(dir.path());
    let chunks = files_under(&dir.path().join("chunks"), &|_| true);
    assert!(!chunks.is_empty());
    let mut errors = 0;
    for file in &chunks {
        let len = std::fs::metadata(file).expect("stat").len() as usize;
        for at in 0..len {
            check_flip(dir.path(), file, at, (at % 8) as u8, &expected);
            errors += 1;
        }
    }
    assert!(errors > 0);
    // Every byte restored: the data reads back whole.
    let storage = Storage::open(config(dir.path())).expect("open");
    assert_eq!(read_all(&storage, "m").expect("scan"), expected);
}

#[test]
fn a_damaged_chunk_is_named_with_its_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    let chunk = &files_under(&dir.path().join("chunks"), &|_| true)[0];
    let mut bytes = std::fs::read(chunk).expect("read");
    bytes[20] ^= 0xff;
    std::fs::write(chunk, &bytes).expect("write");
    let storage = Storage::open(config(dir.path())).expect("open reads only footers");
    let err = read_all(&storage, "m").expect_err("the damaged block is found");
    let msg = err.to_string();
    assert!(msg.contains(&chunk.display().to_string()) && msg.contains("at offset 12"), "{msg}");
    assert!(storage.verify().is_err());
}

#[test]
fn a_chunk_that_fails_its_checks_at_open_is_quarantined_and_the_rest_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected_m = setup(dir.path());
    let storage = Storage::open(config(dir.path())).expect("open");
    let mut batch = WriteBatch::new();
    batch.push("n", point("s", 5, Some(1.0), None));
    storage.write(&batch).expect("write");
    storage.persist().expect("persist");
    let expected_n = read_all(&storage, "n").expect("scan");
    storage.close(false).expect("close");
    // Damage m's chunk where open looks: its trailer.
    let chunks = files_under(&dir.path().join("chunks"), &|_| true);
    let m_chunk = chunks.iter().find(|p| read_chunk_table(p) == "m").expect("m's chunk").clone();
    let mut bytes = std::fs::read(&m_chunk).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&m_chunk, &bytes).expect("damage");

    let storage = Storage::open(config(dir.path())).expect("the engine opens with the rest");
    let quarantined = storage.quarantined();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(quarantined[0].contains("quarantine") && quarantined[0].contains("trailer"), "{quarantined:?}");
    assert_eq!(read_all(&storage, "n").expect("scan"), expected_n, "other tables are whole");
    assert!(read_all(&storage, "m").expect("scan").is_empty(), "the damaged chunk's rows are left out");
    storage.close(false).expect("close");
    let aside = dir.path().join("quarantine").join(m_chunk.strip_prefix(dir.path().join("chunks")).expect("under chunks"));
    assert!(aside.exists() && aside.with_extension("reason").exists() && !m_chunk.exists(), "moved aside with a note");
    let report = isobar_storage::verify_data_dir(dir.path()).expect("verify");
    assert!(!report.is_clean(), "verify reports it");

    // Reopened, it stays out; moved back repaired, its rows return.
    let storage = Storage::open(config(dir.path())).expect("open again");
    assert!(storage.quarantined()[0].contains("earlier start"), "{:?}", storage.quarantined());
    storage.close(false).expect("close");
    bytes[last] ^= 0xff;
    std::fs::write(&m_chunk, &bytes).expect("restore");
    std::fs::remove_file(&aside).expect("remove the quarantined copy");
    let storage = Storage::open(config(dir.path())).expect("open repaired");
    assert!(storage.quarantined().is_empty());
    assert_eq!(read_all(&storage, "m").expect("scan"), expected_m);
}

/// Which table a chunk file belongs to, by its directory (named by table id; `m` was first).
fn read_chunk_table(path: &Path) -> &'static str {
    match path.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()) {
        Some("0") => "m",
        _ => "other",
    }
}

#[test]
fn flipped_bytes_in_catalog_tables_are_errors_or_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = setup(dir.path());
    let ssts = files_under(&dir.path().join("catalog"), &|p| p.extension().is_some_and(|e| e == "sst"));
    assert!(!ssts.is_empty(), "a clean close flushes the catalog into SST files");
    for file in &ssts {
        let len = std::fs::metadata(file).expect("stat").len() as usize;
        for at in (0..len).step_by((len / 40).max(1)) {
            check_flip(dir.path(), file, at, 3, &expected);
        }
    }
}

/// Rewrites the WAL record with sequence `seq` through RocksDB itself, as bit rot that
/// RocksDB's own checksums cannot see (the damage is in the value it was given).
fn damage_wal_record(dir: &Path, seq: u64, damage: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join("catalog");
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).expect("list column families");
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, names).expect("open catalog");
    let cf = db.cf_handle("wal").expect("wal column family");
    let mut record = db.get_cf(cf, seq.to_be_bytes()).expect("get").expect("record exists");
    damage(&mut record);
    db.put_cf(cf, seq.to_be_bytes(), record).expect("put");
}

#[test]
fn a_damaged_wal_record_stops_open_naming_its_sequence() {
    let damages: [fn(&mut Vec<u8>); 3] = [|r| r[20] ^= 0x10, |r| r.truncate(r.len() - 3), |r| r[0] = 0];
    for damage in damages {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(config(dir.path())).expect("open");
        for t in 0..3 {
            let mut batch = WriteBatch::new();
            batch.push("m", point("x", t, Some(1.0), None));
            storage.write(&batch).expect("write");
        }
        storage.close(false).expect("close");
        damage_wal_record(dir.path(), 2, damage);
        let err = Storage::open(config(dir.path())).expect_err("a damaged record stops open");
        let msg = err.to_string();
        let wal = dir.path().join("catalog").join("wal");
        assert!(msg.starts_with(&format!("corrupt data in {} at offset 2: WAL record 2", wal.display())), "{msg}");
    }
}

/// Dropping a table deletes the catalog entries of its quarantined chunks too: they are not
/// reported again, and nothing of them comes back with a new table of the name.
#[test]
fn a_dropped_tables_quarantined_chunk_is_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    let chunk = files_under(&dir.path().join("chunks"), &|_| true).into_iter().next().expect("m's chunk");
    let mut bytes = std::fs::read(&chunk).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&chunk, &bytes).expect("damage");
    let storage = Storage::open(config(dir.path())).expect("open");
    assert_eq!(storage.quarantined().len(), 1);
    storage.drop_tables(&["m".to_owned()], false).expect("drop");
    storage.close(false).expect("close");
    let storage = Storage::open(config(dir.path())).expect("reopen");
    assert!(storage.quarantined().is_empty(), "{:?}", storage.quarantined());
    assert!(isobar_storage::verify_data_dir(dir.path()).expect("verify").is_clean(), "no entry names the quarantined file");
}
