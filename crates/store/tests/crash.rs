//! A real crash test: a child process appends numbered records (snapshotting every 17) and
//! reports each one once `append` has returned; the parent SIGKILLs it at a random moment, then
//! checks that the store holds exactly records 0..n with every acknowledged one among them.
//!
//! The child is this test binary itself, re-executed with `CHILD_DIR_VAR` set so that
//! `crash_writer_child` runs the writer loop instead of returning at once.
//! `OVERLINK_STORE_CRASH_SEED=<n>` replays a run.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use store::Store;

const CHILD_DIR_VAR: &str = "OVERLINK_STORE_CRASH_CHILD_DIR";
const SNAPSHOT_EVERY: u64 = 17;
const ROUNDS: usize = 100;

fn record(n: u64) -> Vec<u8> {
    format!("{{\"n\":{n}}}").into_bytes()
}

fn state(upto: u64) -> Vec<u8> {
    format!("{{\"upto\":{upto}}}").into_bytes()
}

/// Checks the recovered contents are exactly records 0..n, folded into a snapshot up to some
/// point; returns n.
fn verify(dir: &Path) -> (Store, u64) {
    let (store, got) = Store::open(dir).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    let base = match &got.snapshot {
        None => 0,
        Some(s) => {
            let text = std::str::from_utf8(s).expect("snapshot is the UTF-8 the writer wrote");
            let upto = text.strip_prefix("{\"upto\":").and_then(|t| t.strip_suffix('}'));
            upto.and_then(|u| u.parse::<u64>().ok()).unwrap_or_else(|| panic!("torn snapshot {text:?}"))
        }
    };
    for (i, r) in got.records.iter().enumerate() {
        let want = record(base + i as u64);
        assert_eq!(
            r,
            &want,
            "record {i} after the snapshot (up to {base}) is {:?}, expected {:?}",
            String::from_utf8_lossy(r),
            String::from_utf8_lossy(&want)
        );
    }
    let n = base + got.records.len() as u64;
    assert_eq!(store.next_seq(), n, "sequence numbers match record numbers");
    assert_eq!(store.records_since_snapshot(), got.records.len() as u64);
    (store, n)
}

/// The child: append until killed.
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else { return };
    let (mut store, mut n) = verify(Path::new(&dir));
    let stdout = std::io::stdout();
    let deadline = Instant::now() + Duration::from_secs(20); // in case the parent is gone
    while Instant::now() < deadline {
        let seq = store.append(&record(n)).expect("append");
        assert_eq!(seq, n);
        // Acknowledge: only now may the record be counted on.
        let mut out = stdout.lock();
        writeln!(out, "ACK:{n}").expect("stdout");
        out.flush().expect("stdout");
        drop(out);
        n += 1;
        if store.records_since_snapshot() >= SNAPSHOT_EVERY {
            store.snapshot(&state(n)).expect("snapshot");
        }
    }
}

/// xorshift64*: enough randomness for kill timing, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Half the time log-uniform between 2 µs and ~4 ms (inside one append: an fdatasync takes
    /// a few ms on a disk); otherwise uniform up to 60 ms, so that the writer gets through
    /// several appends and snapshots before it dies.
    fn delay(&mut self) -> Duration {
        if self.next().is_multiple_of(2) {
            let exp = self.next() % 11; // 2^1 .. 2^12 µs
            Duration::from_micros((1u64 << (exp + 1)) + self.next() % (1u64 << (exp + 1)))
        } else {
            Duration::from_micros(self.next() % 60_000)
        }
    }
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_record() {
    let seed = match std::env::var("OVERLINK_STORE_CRASH_SEED") {
        Ok(s) => s.parse().expect("OVERLINK_STORE_CRASH_SEED is a number"),
        Err(_) => {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            (t.as_secs().wrapping_mul(1_000_000_007)
                ^ u64::from(t.subsec_nanos())
                ^ u64::from(std::process::id()).rotate_left(32))
                | 1
        }
    };
    eprintln!("crash test seed: {seed} (replay with OVERLINK_STORE_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();

    let mut durable = 0u64; // records known to be in the store
    let mut acked_total = 0u64;
    let mut killed_mid_run = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash_writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_VAR, &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the writer");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                // Only whole lines count; the harness may print its own text too.
                if let Some(n) = line.strip_suffix('\n').and_then(|l| l.split("ACK:").nth(1)) {
                    let n: u64 = n.trim().parse().expect("ACK line");
                    acked.push(n);
                    let _ = tx.send(n);
                }
                line.clear();
            }
            acked
        });

        // Usually kill while it is writing; sometimes while it starts up and recovers.
        if !rng.next().is_multiple_of(6) && rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            panic!("round {round}: the writer acknowledged nothing; its stderr:\n{err}");
        }
        std::thread::sleep(rng.delay());
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().unwrap();
        let acked = reader.join().unwrap();
        if status.signal() != Some(libc_sigkill()) {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            panic!("round {round}: the writer ended by itself ({status}) instead of being killed:\n{err}");
        }
        if !acked.is_empty() {
            killed_mid_run += 1;
        }

        let (store, n) = verify(&dir);
        drop(store);
        for (i, &a) in acked.iter().enumerate() {
            assert_eq!(a, durable + i as u64, "round {round}: acknowledgements are consecutive (seed {seed})");
            assert!(a < n, "round {round}: record {a} was acknowledged but only 0..{n} survived (seed {seed})");
        }
        assert!(n >= durable, "round {round}: records {n}..{durable} were durable before and are gone (seed {seed})");
        durable = n;
        acked_total += acked.len() as u64;
    }
    eprintln!(
        "{ROUNDS} kills ({killed_mid_run} while writing), {acked_total} acknowledged, {durable} records, {:?}",
        started.elapsed()
    );
    assert!(killed_mid_run >= ROUNDS / 2, "most kills should hit a writing child");
    assert!(durable > 3 * SNAPSHOT_EVERY, "the test should have crossed several snapshots: {durable}");
}

/// SIGKILL's number (9 on every Unix the gateway runs on), without a libc dependency.
fn libc_sigkill() -> i32 {
    9
}
