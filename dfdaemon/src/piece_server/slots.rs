//! Upload slots with a short waiting line, neediest child first.
//!
//! A parent serves at most `slots` pieces at once. A request that finds
//! them full waits (at most [`MAX_WAIT`], at most `4 x slots` waiting) and
//! the next free slot goes to the waiting child that holds the fewest
//! pieces of the task (it says so in [`HAVE_HEADER`]), equal ones in
//! arrival order; the line's length is the `upload_waiting_requests`
//! gauge. With an instant 503 instead, the slot went to whichever child
//! asked again first: usually the one whose piece had just finished, while
//! the refused ones retried after a pause. Serving the one furthest behind
//! is meant to keep a swarm's progress even, which is what finishing
//! together takes (on the swarm benchmark the makespan change was within
//! the machine's noise; see docs/benchmarks.md).
//!
//! The count is the child's own word: a child that lies only reorders the
//! line among the children of this parent, and bytes are still verified
//! against the scheduler's digests. Requests without it wait behind every
//! child that sent one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use darter_common::sync::MutexExt as _;
use prometheus::IntGauge;
use tokio::sync::oneshot;

/// Request header with the number of pieces of the task the child holds.
pub const HAVE_HEADER: &str = "x-darter-have";
/// Longest a request waits for a slot before it is answered 503.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// Requests that may wait, per slot.
pub const WAITING_PER_SLOT: usize = 4;

/// The slots of one piece server.
#[derive(Debug)]
pub struct UploadSlots {
    state: Mutex<State>,
    max_waiting: usize,
    /// Mirrors the line's length.
    waiting_gauge: IntGauge,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    next_seq: u64,
    waiting: Vec<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    /// Pieces the child holds (`u64::MAX` when it did not say).
    have: u64,
    seq: u64,
    grant: oneshot::Sender<()>,
}

/// A slot held; freed (or handed to the next in line) when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<UploadSlots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl UploadSlots {
    /// `slots` uploads at once; `waiting_gauge` follows the line's length.
    pub fn new(slots: usize, waiting_gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { free: slots, ..Default::default() }),
            max_waiting: slots * WAITING_PER_SLOT,
            waiting_gauge,
        })
    }

    /// A slot for a child holding `have` pieces (`None`: unknown), waiting
    /// at most `wait`; `None` when none came free in time or the line is full.
    pub async fn acquire(self: &Arc<Self>, have: Option<u32>, wait: Duration) -> Option<Slot> {
        let (seq, rx) = {
            let mut st = self.state.locked();
            if st.free > 0 && st.waiting.is_empty() {
                st.free -= 1;
                return Some(Slot { slots: self.clone() });
            }
            if st.waiting.len() >= self.max_waiting {
                return None;
            }
            let (grant, rx) = oneshot::channel();
            let seq = st.next_seq;
            st.next_seq += 1;
            st.waiting.push(Waiting { have: have.map_or(u64::MAX, u64::from), seq, grant });
            self.waiting_gauge.set(st.waiting.len() as i64);
            (seq, rx)
        };
        // Leaves the line when this future is dropped or times out; a slot
        // granted meanwhile is passed on, never lost.
        let mut ticket = Ticket { slots: self, seq: Some(seq), rx };
        match tokio::time::timeout(wait, &mut ticket.rx).await {
            Ok(Ok(())) => {
                ticket.seq = None;
                Some(Slot { slots: self.clone() })
            }
            _ => None,
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.state.locked().waiting.len()
    }

    /// Hands the slot to the neediest waiting child still there, or frees it.
    fn release(&self) {
        let mut st = self.state.locked();
        let mut handed = false;
        while let Some(i) = (0..st.waiting.len()).min_by_key(|&i| (st.waiting[i].have, st.waiting[i].seq)) {
            if st.waiting.swap_remove(i).grant.send(()).is_ok() {
                handed = true;
                break;
            }
        }
        if !handed {
            st.free += 1;
        }
        self.waiting_gauge.set(st.waiting.len() as i64);
    }
}

/// A place in the line; dropping it leaves the line.
struct Ticket<'a> {
    slots: &'a Arc<UploadSlots>,
    /// The place, until the slot is owned by a [`Slot`].
    seq: Option<u64>,
    rx: oneshot::Receiver<()>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let Some(seq) = self.seq else { return };
        {
            let mut st = self.slots.state.locked();
            st.waiting.retain(|w| w.seq != seq);
            self.slots.waiting_gauge.set(st.waiting.len() as i64);
        }
        // Granted just as we gave up: pass the slot on.
        if self.rx.try_recv().is_ok() {
            self.slots.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    fn with_slots(n: usize) -> Arc<UploadSlots> {
        UploadSlots::new(n, IntGauge::new("waiting", "test").unwrap())
    }

    #[tokio::test]
    async fn free_slots_are_taken_at_once_and_come_back() {
        let slots = with_slots(2);
        let a = slots.acquire(None, Duration::ZERO).await.unwrap();
        let _b = slots.acquire(Some(3), Duration::ZERO).await.unwrap();
        assert!(slots.acquire(None, Duration::from_millis(20)).await.is_none(), "both are held");
        assert_eq!(slots.waiting(), 0, "a request that gave up left the line");
        assert_eq!(slots.waiting_gauge.get(), 0, "and the gauge says so");
        drop(a);
        assert!(slots.acquire(None, Duration::ZERO).await.is_some());
    }

    #[tokio::test]
    async fn the_child_with_fewest_pieces_is_served_first_then_arrival_order() {
        let slots = with_slots(1);
        let held = slots.acquire(None, Duration::ZERO).await.unwrap();
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (name, have) in [("unknown", None), ("ten", Some(10)), ("two-a", Some(2)), ("two-b", Some(2))] {
            let (s, tx) = (slots.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let slot = s.acquire(have, LONG).await.expect("served in time");
                tx.send(name).unwrap();
                drop(slot);
            }));
            // Arrival order is the spawn order.
            while slots.waiting() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        let served: Vec<_> = std::iter::from_fn(|| order.try_recv().ok()).collect();
        assert_eq!(served, ["two-a", "two-b", "ten", "unknown"]);
    }

    #[tokio::test]
    async fn a_full_line_is_refused_at_once() {
        let slots = with_slots(1);
        let _held = slots.acquire(None, Duration::ZERO).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..WAITING_PER_SLOT {
            let s = slots.clone();
            waiting.push(tokio::spawn(async move { s.acquire(Some(1), LONG).await.is_some() }));
        }
        while slots.waiting() < WAITING_PER_SLOT {
            tokio::task::yield_now().await;
        }
        assert_eq!(slots.waiting_gauge.get(), WAITING_PER_SLOT as i64);
        let started = std::time::Instant::now();
        assert!(slots.acquire(Some(0), LONG).await.is_none());
        // Refused at once, not after its wait of LONG (a bound relative to
        // the wait under test, not to the machine's speed).
        assert!(started.elapsed() < LONG / 2, "refused without waiting");
        for w in &waiting {
            w.abort();
        }
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_does_not_take_the_slot_with_it() {
        let slots = with_slots(1);
        let held = slots.acquire(None, Duration::ZERO).await.unwrap();
        let s = slots.clone();
        let gone = tokio::spawn(async move { s.acquire(Some(0), LONG).await.map(drop) });
        while slots.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        assert_eq!(slots.waiting(), 0);
        drop(held);
        let back = slots.acquire(None, Duration::ZERO).await;
        assert!(back.is_some(), "the slot came back");
        assert!(slots.acquire(None, Duration::ZERO).await.is_none(), "and there is only one");
    }
}
