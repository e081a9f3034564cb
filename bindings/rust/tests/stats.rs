//! Statistics of the process heap (the C stats API) while ShardAlloc is the
//! #[global_allocator]: live blocks rise and fall with Rust's allocations,
//! remote frees are counted. The tests take a lock: each measures a size
//! class nothing else in this program uses while it runs.
#![cfg(feature = "hosted")]

use shardalloc::{ShardAlloc, Stats};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

static SERIAL: Mutex<()> = Mutex::new(());

/// An allocation of a size (and class) the harness does not use.
const ODD_SIZE: usize = 2600;

fn live(size: usize) -> u64 {
    Stats::process().class_of(size).live_blocks
}

/// Polls for up to 3 s, keeping the allocator's periodic work going (a huge
/// block freed releases a segment, which runs the due purge and sweep ticks),
/// as tests/api/stats_api_test.cpp does.
fn keep_ticking_until(done: impl Fn() -> bool) -> bool {
    for _ in 0..60 {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
        drop(vec![0u8; 2 << 20]);
    }
    done()
}

#[test]
fn live_blocks_rise_and_fall() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = Stats::process();
    let class = Stats::class_index(ODD_SIZE);
    assert!(class > 0 && before.classes[class].block_size >= ODD_SIZE as u64);

    let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; ODD_SIZE]).collect();
    let during = Stats::process();
    assert_eq!(
        during.classes[class].live_blocks,
        before.classes[class].live_blocks + 1000,
        "1000 Vec<u8> of {ODD_SIZE} bytes are 1000 live blocks of class {class}"
    );
    assert!(during.live_bytes >= before.live_bytes + 1000 * ODD_SIZE as u64);
    assert!(during.pages > 0 && during.segments > 0 && during.reserved_bytes > 0);
    assert!(blocks.iter().enumerate().all(|(i, b)| b.len() == ODD_SIZE && b[ODD_SIZE - 1] == i as u8));

    drop(blocks); // freed by the thread that allocated them: counted at once
    assert_eq!(live(ODD_SIZE), before.classes[class].live_blocks);

    let mut buf = vec![0u8; 16 << 10];
    let json = Stats::process().to_json(&mut buf).unwrap().to_string();
    assert!(json.starts_with('{') && json.contains("\"remote_frees\":"), "{json}");
}

#[test]
fn remote_frees_are_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const BLOCKS: usize = 1000;
    let before = Stats::process();
    let (to_main, from_owner) = mpsc::channel::<Vec<Box<[u8; ODD_SIZE]>>>();
    let (to_owner, from_main) = mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        to_main.send((0..BLOCKS).map(|i| Box::new([i as u8; ODD_SIZE])).collect()).unwrap();
        // Stay alive until they are freed; exiting collects the heap's pages.
        from_main.recv().unwrap();
    });
    let blocks = from_owner.recv().unwrap();
    assert!(live(ODD_SIZE) >= before.classes[Stats::class_index(ODD_SIZE)].live_blocks + BLOCKS as u64);
    assert!(blocks.iter().enumerate().all(|(i, b)| b[0] == i as u8));
    drop(blocks); // remote frees: this thread does not own them
    to_owner.send(()).unwrap();
    owner.join().unwrap();
    assert!(
        keep_ticking_until(|| Stats::process().remote_frees >= before.remote_frees + BLOCKS as u64),
        "remote frees counted: {}",
        Stats::process().remote_frees - before.remote_frees
    );
    assert!(keep_ticking_until(|| live(ODD_SIZE) <= before.classes[Stats::class_index(ODD_SIZE)].live_blocks));
}
